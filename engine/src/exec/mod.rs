//! Running compiled [`Program`](crate::compile::Program)s over input: the
//! executor behind [`Scanner`](crate::Scanner).
//!
//! - `stream`: a program over a stream of chunks: the atom search, the
//!   queue of candidates waiting for look-ahead, their verification in
//!   order, and the chaining of parts;
//! - `verify`: checking a candidate's bytes, anchors and assertions;
//! - `chain`: the gap constraints between parts, in bounded state;
//! - `logical`: evaluating a logical signature's expression over counts;
//! - `checks`: the subsignatures evaluated over the whole input after the
//!   scan (byte-compare);
//! - `hashing`: the whole-file hashes, computed only when needed.

pub(crate) mod chain;
pub(crate) mod checks;
pub(crate) mod hashing;
pub(crate) mod logical;
pub(crate) mod stream;
pub(crate) mod verify;
