//! The [`Engine`]: the read-only automata built once from a database.

use std::sync::Arc;

use giva_signatures::{Database, Offset};

use crate::compile::{Owner, Program, Source};
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
}

impl Engine {
    /// Builds the automata for `db`.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a pattern cannot be compiled (no static byte, too
    /// many alternation variants) or the automaton cannot be built.
    pub fn new(db: &Database) -> Result<Engine, BuildError> {
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
        let eof_tail = all
            .iter()
            .filter_map(|s| match s.offset {
                Offset::FromEnd { back, .. } => Some(back),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let (eof, main): (Vec<Source<'_>>, Vec<Source<'_>>) = all
            .into_iter()
            .partition(|s| matches!(s.offset, Offset::FromEnd { .. }));
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
            }),
        })
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
