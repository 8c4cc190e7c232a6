//! `giva`'s command line: the flags ([`Cli`]), `giva serve`, and the local
//! commands `giva scan` (a clamscan drop-in on raw files) and `giva db`
//! (compile, inspect and verify databases).

mod args;
mod backlog;
pub mod db;
mod enroll;
mod run;
pub mod scan;

pub use args::{Cli, Command, DbCommand, EnrollArgs, ScanArgs, ServeArgs};
pub use run::run;
