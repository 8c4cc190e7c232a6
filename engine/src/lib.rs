//! giva's scan engine: ClamAV-compatible matching of hash, body (`.ndb`) and
//! logical (`.ldb`) signatures over raw bytes.
//!
//! Three types carry a scan:
//!
//! - [`Engine`]: built once from a [`giva_signatures::Database`]. It holds the
//!   read-only automata (one multi-pattern index over the best static atom
//!   of every signature part) and is cheap to clone and share (`Send + Sync`).
//! - [`Scanner`]: one per worker. It owns a clone of the engine and its own
//!   scratch, takes input in chunks of any size ([`Scanner::feed`]) and
//!   returns the same [`ScanResult`] as a whole-buffer scan. An
//!   [`IdleScanners`] stash keeps scanners for reuse across small inputs.
//! - [`ScanResult`]: the detections and the [`Outcome`]. A file of five bytes
//!   or less is never scanned ([`Outcome::TooSmall`]), exactly like ClamAV,
//!   and an exceeded limit is never reported as clean.
//!
//! Around them, for the appliance:
//!
//! - [`pool::ScanPool`]: worker threads with three strict priority classes
//!   ([`pool::Priority`]), round robin between VMs, a bounded queue
//!   ([`pool::Busy`]) and handles that can be awaited or waited on
//!   ([`pool::JobHandle`]). [`ScanPool::scan_bytes`] splits a large buffer
//!   into overlapping segments scanned in parallel, with a result identical
//!   to [`Engine::scan_bytes`].
//! - [`cache::VerdictCache`]: verdicts keyed by content digest or file
//!   identity, valid for one database generation, bounded by entries and
//!   bytes.
//!
//! The matching semantics (offsets, anchors, boundaries, gaps, counting of
//! overlapping matches, the grouping of logical expressions) follow
//! `docs/clamav-formats.md`; the [`reference`](mod@reference) module holds
//! a deliberately naive matcher used as the oracle in property tests.
//!
//! # Modules
//!
//! Dependencies point down this list, never up (`engine/DESIGN.md` explains
//! each part):
//!
//! - [`pool`]: the scheduler, and split scans of large buffers;
//! - `scanner`, `file`: a scan, fed in chunks, from a buffer, reader or
//!   mapped file;
//! - `engine`: building an [`Engine`] from a database, or loading it from
//!   the `stored` blob in the database file;
//! - `exec`: running programs over input: streaming, verification,
//!   chaining, logical expressions, hashes;
//! - `compile`: patterns to programs: variants, atom choice;
//! - `index`: the multi-pattern atom search: gram tables, filters, the
//!   SIMD loops (the only `unsafe` code);
//! - leaves: `util` (tables used in place, the stored encoding),
//!   `result`, `error`, `names`, [`cache`].
//!
//! # Example
//!
//! ```
//! use giva_engine::{Engine, Outcome, ScanOptions};
//! use giva_signatures::{
//!     BodyPattern, BodySignature, Database, DatabaseInfo, Offset, Part, Token,
//! };
//!
//! let lit = |b: &[u8]| Part {
//!     tokens: b.iter().map(|&value| Token::Byte { value, mask: 0xff }).collect(),
//! };
//! let sig = BodySignature {
//!     name: "Test.Sig.UNOFFICIAL".into(),
//!     target: 0,
//!     offset: Offset::Any,
//!     pattern: BodyPattern {
//!         parts: vec![lit(b"evil")],
//!         gaps: vec![],
//!         left_anchor: None,
//!         right_anchor: None,
//!         start_assertion: None,
//!         end_assertion: None,
//!     },
//! };
//! let db = Database::from_parts(DatabaseInfo::default(), vec![sig], vec![], vec![], vec![]);
//! let engine = Engine::new(&db)?;
//! let opts = ScanOptions::default();
//!
//! let result = engine.scan_bytes(b"some evil bytes", &opts);
//! assert_eq!(result.outcome, Outcome::Infected);
//! assert_eq!(result.detections[0].name, "Test.Sig.UNOFFICIAL");
//!
//! // The same input, streamed.
//! let mut scanner = engine.scanner(opts);
//! scanner.reset(None);
//! for chunk in b"some evil bytes".chunks(3) {
//!     scanner.feed(chunk);
//! }
//! assert_eq!(scanner.finish(), result);
//! # Ok::<(), giva_engine::BuildError>(())
//! ```
#![deny(unsafe_code)] // `index/simd.rs` alone allows it
#![deny(missing_docs)]

pub mod cache;
mod compile;
mod engine;
mod error;
mod exec;
mod file;
#[cfg(test)]
mod heat_tests;
mod index;
mod names;
pub mod pool;
pub mod reference;
mod result;
mod scanner;
mod stored;
mod util;

pub use cache::{CacheConfig, CacheStats, CachedVerdict, Infection, VerdictCache};
pub use engine::Engine;
pub use error::{BuildError, OpenError, ScanError, StoredError};
pub use exec::checks::{PCRE_LIMITS, PCRE_MAX_INPUT};
pub use file::MMAP_THRESHOLD;
pub use pool::{Busy, JobError, JobHandle, PoolConfig, PoolStats, Priority, ScanPool, SplitConfig};
pub use result::{Detection, DetectionKind, Limit, Outcome, ScanResult};
pub use scanner::{Feed, IdleScanners, ScanOptions, Scanner, TOO_SMALL};
