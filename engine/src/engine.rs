//! The [`Engine`]: the read-only automata built once from a database.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use giva_signatures::{Database, EXT_ENGINE, Offset};

use crate::compile::{Owner, Program, Source, split_span};
use crate::error::{BuildError, OpenError, StoredError};
use crate::names::Names;
use crate::stored;

/// The compiled, read-only form of a [`Database`]. Cheap to clone (an `Arc`
/// inside) and `Send + Sync`; create one [`Scanner`](crate::Scanner) per
/// worker ([`Engine::scanner`]).
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub db: Database,
    /// Every pattern without an end-of-file offset.
    pub main: Program,
    /// The patterns with an `EOF-n` offset, run over the retained tail once
    /// the size is known.
    pub eof: Program,
    /// How many trailing bytes the `eof` program needs.
    pub eof_tail: u64,
    /// The patterns with an executable offset (`EP+n`, `Sx+n`, ...), run
    /// only over an input whose structure is known.
    pub exe: Program,
    /// Flat counter index of the first subsignature of each logical
    /// signature.
    pub lsig_base: Vec<u32>,
    /// Total number of subsignature counters.
    pub nsubs: usize,
    /// The body signatures' names (scanning never decodes the signatures
    /// themselves).
    pub names: Names,
    /// Each body signature's target type; empty when none is typed.
    pub typed: Arc<[u8]>,
    /// For split scans, built on first use: the `main` patterns that are
    /// not bounded (`PatternInfo::split` is false), run sequentially over
    /// the whole input; `None` if there are none.
    pub sequential: OnceLock<Result<Option<Program>, Arc<BuildError>>>,
    /// Loaded from the database's stored index.
    pub from_blob: bool,
    /// Some logical signature has subsignatures evaluated over the whole
    /// input after the scan ([`Engine::needs_input`]).
    pub checks: bool,
    /// Some is a byte-compare: scans track where subsignatures matched.
    pub starts: bool,
    /// Each logical signature's verdict when none of its subsignatures
    /// matched, which is what most files give most of them: evaluating
    /// every expression for every file was 8% of a scan of many small
    /// files at 100k signatures.
    pub lsig_zero: Box<[bool]>,
}

/// Each logical signature's expression over all-zero counts.
fn zero_verdicts(db: &Database) -> Box<[bool]> {
    db.logical_signatures()
        .iter()
        .map(|l| crate::exec::logical::eval(&l.expr, &vec![0; l.subsigs.len()]))
        .collect()
}

/// True if some logical signature of `db` has checks.
fn has_checks(db: &Database) -> bool {
    db.logical_signatures().iter().any(|l| !l.checks.is_empty())
}

/// True if some logical signature of `db` has a byte-compare.
fn has_byte_compares(db: &Database) -> bool {
    db.logical_signatures()
        .iter()
        .flat_map(|l| &l.checks)
        .any(|(_, c)| matches!(c, giva_signatures::Check::ByteCompare(_)))
}

/// A database's stored engine bytes ([`EXT_ENGINE`]) as the owner of a
/// [`bytes::Bytes`]: the engine's tables point into them (into the file's
/// memory map), and this keeps the database alive for as long as they do.
struct StoredEngine(Database);

impl AsRef<[u8]> for StoredEngine {
    fn as_ref(&self) -> &[u8] {
        self.0.extension(EXT_ENGINE).unwrap_or(&[])
    }
}

/// What [`sources`] finds: the patterns, `lsig_base`, the counter count,
/// the body signatures' names and their targets.
type Sources<'a> = (Vec<Source<'a>>, Vec<u32>, usize, Names, Arc<[u8]>);

/// Every pattern of `db` with its owner, in the order that fixes the
/// body and subsignature indices; with `lsig_base`, the counter count,
/// the body signatures' names and (when any is typed) their targets.
fn sources(db: &Database) -> Result<Sources<'_>, BuildError> {
    let mut all: Vec<Source<'_>> = Vec::new();
    let bodies = db.try_body_signatures().map_err(BuildError::Database)?;
    let mut names = Names::default();
    for sig in bodies {
        names.push(&sig.name).ok_or_else(|| BuildError::Malformed {
            name: sig.name.clone(),
            reason: "the body signature names exceed 4 GiB",
        })?;
    }
    for (i, sig) in bodies.iter().enumerate() {
        all.push(Source {
            owner: Owner::Body(i as u32),
            name: &sig.name,
            offset: sig.offset,
            pattern: &sig.pattern,
        });
    }
    let typed: Arc<[u8]> = if bodies.iter().any(|b| b.target != 0) {
        bodies.iter().map(|b| b.target).collect()
    } else {
        Arc::default()
    };
    let (lsig_base, nsubs) = counters(db);
    for (lsig, &base) in db.logical_signatures().iter().zip(&lsig_base) {
        for (j, sub) in lsig.subsigs.iter().enumerate() {
            for v in &sub.variants {
                all.push(Source {
                    owner: Owner::Sub(base + j as u32),
                    name: &lsig.name,
                    offset: sub.offset,
                    pattern: v,
                });
            }
        }
    }
    Ok((all, lsig_base, nsubs, names, typed))
}

/// The flat counter index of each logical signature's first subsignature,
/// and the number of counters.
fn counters(db: &Database) -> (Vec<u32>, usize) {
    let mut base = Vec::with_capacity(db.logical_signatures().len());
    let mut n = 0usize;
    for lsig in db.logical_signatures() {
        base.push(n as u32);
        n += lsig.subsigs.len();
    }
    (base, n)
}

fn is_eof(s: &Source<'_>) -> bool {
    matches!(s.offset, Offset::FromEnd { .. })
}

fn is_exe(s: &Source<'_>) -> bool {
    matches!(s.offset, Offset::Exe { .. })
}

impl Engine {
    /// Builds the automata for `db`.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a pattern cannot be compiled (no static byte, too
    /// many alternation variants) or the automaton cannot be built.
    pub fn new(db: &Database) -> Result<Engine, BuildError> {
        Self::stored_or_build(db, Self::load_stored(db))
    }

    /// Loads the signatures `paths` name, as [`giva_signatures::load`]
    /// does, and their engine. A compiled database file's stored engine is
    /// decoded while the file's checksum is verified on the other cores
    /// (see [`Database::open_overlapped`]); it is used only if the checksum
    /// matches.
    ///
    /// # Errors
    ///
    /// The signatures cannot be loaded (none at all is an error, see
    /// [`giva_signatures::load`]), or the engine cannot be built.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<(Database, Engine), OpenError> {
        Self::load_with_options(paths, giva_signatures::LoadOptions::default())
    }

    /// [`load`](Self::load) with [`giva_signatures::LoadOptions`].
    ///
    /// # Errors
    ///
    /// As for [`load`](Self::load).
    pub fn load_with_options(
        paths: &[impl AsRef<Path>],
        options: giva_signatures::LoadOptions,
    ) -> Result<(Database, Engine), OpenError> {
        let (db, stored) = giva_signatures::load_with_options(paths, options, Self::load_stored)?;
        let engine = Self::stored_or_build(&db, stored.flatten())?;
        Ok((db, engine))
    }

    /// The stored engine if it is usable, else one built from `db`.
    fn stored_or_build(
        db: &Database,
        stored: Option<Result<Engine, StoredError>>,
    ) -> Result<Engine, BuildError> {
        match stored {
            Some(Ok(engine)) => return Ok(engine),
            Some(Err(e)) => tracing::warn!(
                error = %e,
                "the database's stored engine index is unusable; rebuilding it"
            ),
            None => {}
        }
        Self::build(db)
    }

    /// The engine stored in `db` ([`EXT_ENGINE`]), if it has one; `Err`
    /// says why it cannot be used (for `giva db verify`; [`new`](Self::new)
    /// then rebuilds).
    pub fn load_stored(db: &Database) -> Option<Result<Engine, StoredError>> {
        db.extension(EXT_ENGINE)?;
        let (lsig_base, nsubs) = counters(db);
        let blob = bytes::Bytes::from_owner(StoredEngine(db.clone()));
        Some(stored::read(&blob, db.body_count(), nsubs).map(|s| Engine {
            inner: Arc::new(Inner {
                db: db.clone(),
                main: s.main,
                eof: s.eof,
                eof_tail: s.eof_tail,
                exe: s.exe,
                lsig_base,
                nsubs,
                names: s.names,
                typed: s.typed,
                sequential: OnceLock::from(Ok(s.sequential)),
                from_blob: true,
                checks: has_checks(db),
                starts: has_byte_compares(db),
                lsig_zero: zero_verdicts(db),
            }),
        }))
    }

    /// Builds the automata from the signatures, ignoring a stored index.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn build(db: &Database) -> Result<Engine, BuildError> {
        let (all, lsig_base, nsubs, names, typed) = sources(db)?;
        // An `EOF-n` offset counts from the body, so a left anchor's byte
        // (and the assertion before it) may lie further back.
        let eof_tail = all
            .iter()
            .filter_map(|s| match s.offset {
                Offset::FromEnd { back, .. } => {
                    Some(back + s.pattern.left_anchor.map_or(0, |a| u64::from(a.max) + 1))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let (eof, main): (Vec<Source<'_>>, Vec<Source<'_>>) = all.into_iter().partition(is_eof);
        let (exe, main): (Vec<Source<'_>>, Vec<Source<'_>>) = main.into_iter().partition(is_exe);
        let main = Program::build(&main)?;
        let eof_prog = Program::build(&eof)?;
        let exe_prog = Program::build(&exe)?;
        tracing::debug!(
            main_patterns = main.patterns.len(),
            main_entries = main.entries.len(),
            eof_patterns = eof_prog.patterns.len(),
            exe_patterns = exe_prog.patterns.len(),
            "engine built"
        );
        Ok(Engine {
            inner: Arc::new(Inner {
                db: db.clone(),
                main,
                eof: eof_prog,
                eof_tail: eof_tail + 2,
                exe: exe_prog,
                lsig_base,
                nsubs,
                names,
                typed,
                sequential: OnceLock::new(),
                from_blob: false,
                checks: has_checks(db),
                starts: has_byte_compares(db),
                lsig_zero: zero_verdicts(db),
            }),
        })
    }

    /// The built engine as bytes, for [`EXT_ENGINE`]: a database file that
    /// carries them is ready to scan without rebuilding (see
    /// [`Database::with_extension`]). Builds the sequential program first.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new), if the sequential program cannot be built.
    pub fn to_blob(&self) -> Result<Vec<u8>, BuildError> {
        let seq = self
            .sequential_program()
            .map_err(|e| BuildError::Sequential(e.clone()))?;
        let i = &self.inner;
        Ok(stored::write(
            i.nsubs, i.eof_tail, &i.names, &i.typed, &i.main, &i.eof, &i.exe, seq,
        ))
    }

    /// True if this engine was loaded from the database's stored index
    /// rather than built.
    pub fn is_from_blob(&self) -> bool {
        self.inner.from_blob
    }

    /// True if `other` is a clone of this engine (same automata).
    pub fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The longest span of a signature that a split scan runs per segment:
    /// the most bytes from the start of a match's first part to the end of
    /// its last part, over patterns without unbounded gaps whose span is at
    /// most 64 KiB. Segments overlap by this plus a few bytes of context
    /// ([`split_overlap`](Engine::split_overlap)).
    pub fn max_bounded_span(&self) -> u64 {
        self.inner.main.max_split_span
    }

    /// How many bytes a segment of a split scan reads before and after the
    /// part of the input it answers for: `(before, after)`.
    pub fn split_overlap(&self) -> (u64, u64) {
        let m = &self.inner.main;
        (m.max_split_span + m.history, m.lookahead)
    }

    /// The program of the patterns a split scan runs sequentially (built
    /// on first use), or `None` if every pattern can run per segment.
    /// `Err` (not expected: these patterns compiled once already) means
    /// the input must not be split.
    pub(crate) fn sequential_program(&self) -> Result<Option<&Program>, &Arc<BuildError>> {
        self.inner
            .sequential
            .get_or_init(|| {
                if self.inner.main.patterns.iter().all(|p| p.split) {
                    return Ok(None);
                }
                let (all, _, _, _, _) = sources(&self.inner.db).map_err(Arc::new)?;
                let seq: Vec<Source<'_>> = all
                    .into_iter()
                    .filter(|s| !is_eof(s) && !is_exe(s) && split_span(s.pattern).is_none())
                    .collect();
                Program::build(&seq).map(Some).map_err(Arc::new)
            })
            .as_ref()
            .map(Option::as_ref)
    }

    /// The database this engine was built from.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// True if some signature is evaluated over the whole input once it is
    /// scanned (a byte-compare subsignature): a streaming caller must then
    /// keep the input and end with
    /// [`Scanner::finish_with`](crate::Scanner::finish_with).
    pub fn needs_input(&self) -> bool {
        self.inner.checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scanner::ScanOptions;

    #[test]
    fn a_mapped_database_lends_its_stored_tables_instead_of_copying_them() {
        let mut c = giva_signatures::Compiler::new();
        c.add_source(
            "t.ndb",
            "T.A:0:*:0102030405060708090a\nT.B:0:*:61626364656667\nT.C:0:EOF-4:5a5a5a5a\n",
            false,
        );
        let db = c.build().expect("builds");
        let blob = Engine::build(&db).expect("build").to_blob().expect("blob");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.giva");
        db.with_extension(EXT_ENGINE, &blob)
            .expect("extension")
            .write_to(&path)
            .expect("write");
        let mapped = Database::open(&path).expect("open");
        let engine = Engine::load_stored(&mapped)
            .expect("stored")
            .expect("usable");
        let stored = mapped.extension(EXT_ENGINE).expect("blob");
        let main = &engine.inner.main;
        assert!(main.entries.lies_in(stored));
        assert!(main.targets.lies_in(stored));
        assert!(main.target_start.lies_in(stored));
        // The engine keeps the mapping alive on its own.
        drop(mapped);
        let hits = engine.scan_bytes(b"..abcdefg..", &ScanOptions::default());
        assert_eq!(hits.detections.len(), 1);
    }
}
