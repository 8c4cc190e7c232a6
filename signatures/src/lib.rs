//! ClamAV signature formats, the [`Compiler`], and giva's compiled
//! [`Database`].
//!
//! The main types: [`Compiler`] (add sources, then [`Compiler::build`]) →
//! [`Database`] (immutable, `Send + Sync`, written to and opened from one
//! validated, memory-mappable file). [`load`] is what every `-d/--db`
//! option uses; [`bundled`] is the built-in default database.
//!
//! ```
//! use giva_signatures::Compiler;
//!
//! let mut c = Compiler::new();
//! c.add_source("t.ndb", "Test.Hello:0:*:68656c6c6f20776f726c64\n", false);
//! let db = c.build()?;
//! assert_eq!(db.info().loaded["body"], 1);
//! assert_eq!(db.body_signatures()[0].name, "Test.Hello.UNOFFICIAL");
//! # Ok::<(), giva_signatures::BuildError>(())
//! ```
//!
//! The formats follow `docs/clamav-formats.md` (ClamAV 1.4.6 semantics,
//! emulating functionality level [`FLEVEL`]). Unsupported signatures are
//! skipped and counted in [`DatabaseInfo::skipped`], never silently.
//!
//! # What is read
//!
//! | Format | Status |
//! |---|---|
//! | `.hdb .hsb` (`.hdu .hsu` with [`Compiler::pua`]) | loaded |
//! | `.fp .sfp` | loaded (the allow-list) |
//! | `.ign2 .ign` | applied to every other source, whatever the order |
//! | `.ndb` (`.ndu`, and `.sdb` read as `.ndb`) | target 0 loaded; other targets, exe offsets and macros skipped |
//! | `.ldb` (`.ldu`) | target 0 content subsignatures loaded; PCRE, byte-compare, macro, `fuzzy_img` and container/PE TDB keys skipped |
//! | `.cvd .cld .cud` | unpacked and verified (MD5, legacy RSA header signature, `.info` signature, sizes and SHA-256) |
//! | anything else | counted as `file:.ext` (plus `unsupported:.ext` per line for line formats) |
//!
//! # Known divergences from ClamAV 1.4.6
//!
//! - ClamAV refuses about 1–2 % of random hex patterns after "Don't know
//!   how to create filter" (limits of its Aho-Corasick prefix and filter,
//!   e.g. `??(6263|6465)6162`); giva loads them. The reverse (giva refusing
//!   what ClamAV loads) was not seen in randomized differential runs
//!   (`tests/clamav_diff.rs`, ignored tests `random_*`).
//! - Numbers are read strictly except the FLEVEL fields of hash files,
//!   which ClamAV itself reads with `atoi`.
//! - `{n-m}` with n > m (never matches in ClamAV), two zero-width
//!   assertions at one end (`(B)(L)…`) and `::f` on a pattern that already
//!   has an assertion are skipped and counted rather than loaded.
//! - The detached `.cvd.sign` files of ClamAV ≥ 1.5 are not read (1.4.6
//!   does not read them either).
//! - After `::i`, letters are two-byte [`Token::Set`]s, so a nocase part's
//!   static run may consist of sets rather than literal bytes.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod compiler;
pub mod container;
mod database;
mod error;
pub mod format;
mod hash;
mod hex;
mod ign;
mod ldb;
mod line;
pub mod map;
mod ndb;
pub mod pattern;

pub use compiler::{BUNDLED_SOURCES, Compiler, FLEVEL, Limits, bundled, compile, load, load_with};
pub use database::{Database, DatabaseInfo, EXT_ENGINE, HashEntry};
pub use error::{BuildError, CompileError, ContainerError, Error, LoadError};
pub use hash::WILDCARD_SIZE_MIN_FLEVEL;
pub use ldb::{MAX_SUBSIGS, max_index, parse_expression};
pub use pattern::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteSet, CountOp, Gap, HashAlgo, LogicalExpr,
    LogicalSignature, Offset, Part, Subsig, Token,
};
