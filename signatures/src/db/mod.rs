//! giva's compiled database: the [`Database`] type, the file
//! [`layout`] it reads and writes, and how its parts are stored.
//!
//! - [`database`](Database): open (mapped, checksum verified), query hashes
//!   in place, decode signatures;
//! - `write`: encode signatures and assemble a file;
//! - [`layout`]: header, section table, checksum;
//! - `names`: the front-coded names of the hash records.

mod database;
mod info;
pub mod layout;
mod names;
mod write;

pub use database::{Database, EXT_ENGINE};
pub use info::DatabaseInfo;
