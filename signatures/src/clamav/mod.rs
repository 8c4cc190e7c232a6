//! ClamAV's signature formats, each parsed into the signature types of
//! [`crate::pattern`]: one module per format, plus the `.cvd` containers
//! they ship in. The [`Compiler`](crate::Compiler) drives them.
//!
//! - `line`: what every line format shares (splitting, names, FLEVEL);
//! - `hex`: the body-signature (hex) language of `.ndb` and `.ldb`;
//! - `hash`: `.hdb .hsb` and the `.fp .sfp` allow-list;
//! - `ndb`: extended body signatures, and the offset syntax;
//! - `ldb`: logical signatures, with `expr` for their expressions and
//!   `bytecmp` and `pcre_sub` for their byte-compare and PCRE
//!   subsignatures;
//! - `ign`: the `.ign2 .ign` ignore lists;
//! - [`cvd`]: `.cvd .cld .cud` containers: header, signatures, unpacking.
//!
//! The formats and where giva differs from ClamAV are described in
//! `docs/clamav-formats.md`.

pub(crate) mod bytecmp;
pub mod cvd;
pub(crate) mod expr;
pub(crate) mod hash;
pub(crate) mod hex;
pub(crate) mod ign;
pub(crate) mod ldb;
pub(crate) mod line;
pub(crate) mod ndb;
pub(crate) mod pcre_sub;
