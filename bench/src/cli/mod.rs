//! `bench`'s command line: the flags ([`Cli`]) and running a measurement
//! ([`run`]).

mod args;
mod run;

pub use args::{Cli, Command};
pub use run::run;
