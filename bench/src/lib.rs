//! giva's benchmark harness. Each measurement is a subcommand of the
//! `bench` binary (`cargo run -p giva-bench --release -- --help`); it writes
//! its report to `bench/results/history/<date>/` and regenerates
//! `bench/results/LATEST.md` ([`latest`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod archives;
pub mod bandwidth;
pub mod bigrams;
pub mod cli;
pub mod compare;
pub mod corpus;
pub mod e2e;
pub mod inprocess;
pub mod latest;
pub mod notify;
pub mod plot;
pub mod real;
pub mod realsigs;
pub mod report;
pub mod rng;
pub mod run;
pub mod sigs;
pub mod tagging;
