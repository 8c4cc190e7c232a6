//! `giva`'s command line: the flags ([`Cli`]), `giva serve`, and the local
//! commands `giva scan` (a clamscan drop-in on raw files) and `giva db`
//! (compile, inspect and verify databases).

mod args;
pub mod db;
mod run;
pub mod scan;

pub use args::{Cli, Command, DbCommand, ScanArgs, ServeArgs};
pub use run::run;
