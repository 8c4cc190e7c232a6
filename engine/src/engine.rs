//! The [`Engine`]: the read-only automata built once from a database.

use std::sync::{Arc, OnceLock};

use giva_signatures::{Database, Offset};

use crate::compile::{Owner, Program, Source, split_span};
use crate::error::BuildError;
use crate::result::ScanResult;
use crate::scanner::{ScanOptions, Scanner};

/// The compiled, read-only form of a [`Database`]. Cheap to clone (an `Arc`
/// inside) and `Send + Sync`; create one [`Scanner`] per worker.
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
    /// Flat counter index of the first subsignature of each logical
    /// signature.
    pub lsig_base: Vec<u32>,
    /// Total number of subsignature counters.
    pub nsubs: usize,
    /// For split scans, built on first use: the `main` patterns that are
    /// not bounded (`PatternInfo::split` is false), run sequentially over
    /// the whole input; `None` if there are none.
    pub sequential: OnceLock<Result<Option<Program>, BuildError>>,
}

/// Every pattern of `db` with its owner, in the order that fixes the
/// body and subsignature indices; with `lsig_base` and the counter count.
fn sources(db: &Database) -> (Vec<Source<'_>>, Vec<u32>, usize) {
    let mut all: Vec<Source<'_>> = Vec::new();
    for (i, sig) in db.body_signatures().iter().enumerate() {
        all.push(Source {
            owner: Owner::Body(i as u32),
            name: &sig.name,
            offset: sig.offset,
            pattern: &sig.pattern,
        });
    }
    let mut lsig_base = Vec::new();
    let mut nsubs = 0usize;
    for lsig in db.logical_signatures() {
        lsig_base.push(nsubs as u32);
        for (j, sub) in lsig.subsigs.iter().enumerate() {
            for v in &sub.variants {
                all.push(Source {
                    owner: Owner::Sub((nsubs + j) as u32),
                    name: &lsig.name,
                    offset: sub.offset,
                    pattern: v,
                });
            }
        }
        nsubs += lsig.subsigs.len();
    }
    (all, lsig_base, nsubs)
}

fn is_eof(s: &Source<'_>) -> bool {
    matches!(s.offset, Offset::FromEnd { .. })
}

impl Engine {
    /// Builds the automata for `db`.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a pattern cannot be compiled (no static byte, too
    /// many alternation variants) or the automaton cannot be built.
    pub fn new(db: &Database) -> Result<Engine, BuildError> {
        let (all, lsig_base, nsubs) = sources(db);
        let eof_tail = all
            .iter()
            .filter_map(|s| match s.offset {
                Offset::FromEnd { back, .. } => Some(back),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let (eof, main): (Vec<Source<'_>>, Vec<Source<'_>>) = all.into_iter().partition(is_eof);
        let main = Program::build(&main)?;
        let eof_prog = Program::build(&eof)?;
        tracing::debug!(
            main_patterns = main.patterns.len(),
            main_entries = main.entries.len(),
            eof_patterns = eof_prog.patterns.len(),
            "engine built"
        );
        Ok(Engine {
            inner: Arc::new(Inner {
                db: db.clone(),
                main,
                eof: eof_prog,
                eof_tail: eof_tail + 2,
                lsig_base,
                nsubs,
                sequential: OnceLock::new(),
            }),
        })
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
    pub(crate) fn sequential_program(&self) -> Result<Option<&Program>, &BuildError> {
        self.inner
            .sequential
            .get_or_init(|| {
                if self.inner.main.patterns.iter().all(|p| p.split) {
                    return Ok(None);
                }
                let (all, _, _) = sources(&self.inner.db);
                let seq: Vec<Source<'_>> = all
                    .into_iter()
                    .filter(|s| !is_eof(s) && split_span(s.pattern).is_none())
                    .collect();
                Program::build(&seq).map(Some)
            })
            .as_ref()
            .map(Option::as_ref)
    }

    /// The database this engine was built from.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// A new scanner with its own scratch. Call [`Scanner::reset`] before
    /// each input.
    pub fn scanner(&self, opts: ScanOptions) -> Scanner {
        Scanner::new(self.clone(), opts)
    }

    /// Scans a whole buffer.
    pub fn scan_bytes(&self, data: &[u8], opts: &ScanOptions) -> ScanResult {
        let mut s = self.scanner(opts.clone());
        s.reset(Some(data.len() as u64));
        s.feed(data);
        s.finish()
    }
}
