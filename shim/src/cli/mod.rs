//! `giva-shim`'s command line: the flags ([`Cli`]), how they become each
//! command's configuration, and running a command ([`run`]).

mod args;
mod run;

pub use args::{Cli, Command, Identity, LoadArgs, MarkArg, ScanArgs, WatchArgs};
pub use run::run;
