//! Leaves every other module may use: [`arr`] (tables used in place from a
//! mapped database) and [`wire`] (the shared encoding, reading tables in
//! place).

pub(crate) mod arr;
pub(crate) mod wire;

/// The hasher for integer keys built at load time (SipHash dominated
/// building the atom index and the programs).
pub(crate) type FxBuild = rustc_hash::FxBuildHasher;
