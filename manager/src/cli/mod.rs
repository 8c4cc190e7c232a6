//! `giva-manager`'s command line: the flags ([`Cli`]), the service
//! (`serve`), and the operator commands (`events`, `vms`, `untag`, `scan`,
//! `transitions`).

mod args;
mod ca;
mod operator;
mod run;

pub use args::{
    BadSince, CaCommand, Cli, Command, ManagerUrl, ServeArgs, default_token_file, parse_since,
};
pub use operator::{
    EventRow, VmRow, WithToken, cancel, events, except, scan, transitions, untag, vms,
};
pub use run::run;
