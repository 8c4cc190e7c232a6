//! ClamAV signature formats, the [`Compiler`], and giva's compiled [`Database`].
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod database;
pub mod map;
pub mod pattern;

pub use database::{Database, DatabaseInfo, HashEntry};
pub use pattern::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteSet, CountOp, Gap, HashAlgo, LogicalExpr,
    LogicalSignature, Offset, Part, Subsig, Token,
};
