//! The multi-pattern atom search: finds every occurrence (overlaps
//! included) of every atom in a buffer.
//!
//! Why not one Aho-Corasick automaton: with thousands of atoms its
//! transition table no longer fits in cache, no prefilter applies to random
//! data, and `aho-corasick` measured about 0.07 GB/s for 10k atoms on clean
//! random data (overlapping or not). This index is built for that case:
//!
//! - Atoms of 4 bytes or more are indexed by their `q`-byte q-grams at two
//!   consecutive offsets `j` and `j + 1`, and the scan looks up every even
//!   position: every occurrence has exactly one of those q-grams at an even
//!   position. `j` is chosen per atom so that the more common of its two
//!   q-grams is as rare as possible (text-like q-grams shared by many atoms
//!   made text data cost hundreds of confirmations per hit). Atoms of 5+
//!   bytes use 4-byte q-grams. A 4-byte atom is its own key twice: found
//!   at its start when that is even, and as the *back key* (the 4 bytes
//!   from 1 before the position) when its start is odd.
//! - One blocked Bloom filter in front of both kinds of key rejects almost
//!   every position: one bit in each byte of one 32-bit word per key,
//!   24 to 128 bits per key. The word is picked by the position's first
//!   3 bytes (which both kinds of key at a position hold), so one fetched
//!   word answers
//!   both, and a 64-byte block costs two 16-lane gathers (`simd.rs` runs
//!   8 or 16 positions at once where the CPU has AVX2 or AVX-512).
//!   Positions that pass, collected 16 KiB of input at a time, go through
//!   a second, plain Bloom filter (the [`Sieve`]), which holds most
//!   4-byte keys by 8 bytes of their atoms around them, and those that pass it
//!   too to an exact open-addressing table per kind (their slots
//!   prefetched first), whose values carry each atom's first 8 bytes so
//!   that a candidate is mostly confirmed or rejected by one 8-byte
//!   compare.
//! - **Short atoms** (1 to 3 bytes; rare, the compiler requires two static
//!   bytes per part) are indexed by their first byte(s) and checked at
//!   every position.
//!
//! Every candidate is confirmed byte for byte, so the result is exact.
//!
//! The module's files: `hash.rs` (the hashes every loop shares),
//! `table.rs` (the exact tables), `filter.rs` (the two filters),
//! `rarity.rs` (how rare a byte string is in real data), `build.rs`
//! (choosing keys), `scan.rs` (the scalar loop and the probes), `simd.rs`
//! (the SIMD loops: the engine's only `unsafe` code) and `atom_index.rs`
//! (the index and its stored form).

mod atom_index;
mod build;
mod filter;
mod hash;
pub(crate) mod rarity;
mod scan;
mod simd;
mod table;

pub(crate) use atom_index::AtomIndex;
#[cfg(test)]
pub(crate) use scan::Census;

#[cfg(test)]
mod tests;
