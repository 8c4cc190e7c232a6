//! giva's benchmark harness. Each measurement is a subcommand of the
//! `bench` binary (`cargo run -p giva-bench --release -- --help`) and writes
//! its report to `bench/results/<date>/`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod notify;
pub mod report;
