//! ClamAV signature formats, the [`Compiler`], and giva's compiled
//! [`Database`].
//!
//! The main types: [`Compiler`] (add sources, then [`Compiler::build`]) →
//! [`Database`] (immutable, `Send + Sync`, written to and opened from one
//! validated, memory-mappable file). [`load`] is what every `-d/--db`
//! option uses; [`bundled`] is the built-in default database.
//!
//! # Modules
//!
//! Dependencies point down this list, never up:
//!
//! - [`compiler`](Compiler) and `load`: drive the parsers and build a
//!   database;
//! - `clamav`: one parser per ClamAV format, and [`cvd`] containers;
//! - [`db`]: the database file: [`Database`], its [`layout`](db::layout),
//!   how it is written;
//! - [`pattern`]: the signature types every parser produces and the engine
//!   consumes, each with its [`wire`] encoding;
//! - leaves: [`wire`] (the binary encoding both stored formats use),
//!   [`map`] (read-only file mapping, `unsafe`), `limits`, `error`.
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
//! | `.ndb` (`.ndu`, and `.sdb` read as `.ndb`) | targets 0 to 7 and 9 to 11 loaded; targets 8 and 12 to 14, exe offsets and macros skipped |
//! | `.ldb` (`.ldu`) | content subsignatures of the same targets loaded; PCRE, byte-compare, macro, `fuzzy_img` and container/PE TDB keys skipped |
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

mod clamav;
mod compiler;
pub mod db;
mod error;
mod limits;
mod load;
pub mod map;
pub mod parallel;
pub mod pattern;
pub mod pcre;
pub mod wire;

pub use clamav::cvd;
pub use clamav::expr::parse_expression;
pub use clamav::hash::WILDCARD_SIZE_MIN_FLEVEL;
pub use compiler::Compiler;
pub use db::{Database, DatabaseInfo, EXT_ENGINE};
pub use error::{BuildError, CompileError, ContainerError, EmptySource, Error, LoadError};
pub use limits::{FLEVEL, Limits};
pub use load::{
    BUNDLED_SOURCES, LoadOptions, bundled, compile, is_empty, load, load_with, load_with_options,
};
pub use pattern::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteCompare, ByteSet, Check, CountOp, ExeAnchor,
    ExeInfo, ExeKind, ExeSection, Gap, HashAlgo, HashEntry, HashScope, LogicalExpr,
    LogicalSignature, MAX_SUBSIGS, NumberForm, Offset, Part, PcreCheck, Subsig, TYPED_TARGETS,
    Token, UNOFFICIAL,
};
