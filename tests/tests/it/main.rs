//! giva's integration suite: real services, in-process, over real gRPC on
//! loopback. One binary, one module per area.

mod cache;
mod common;
mod first_path;
mod fuzz_regressions;
mod hostile;
mod operation;
mod quarantine;
mod reporting;
mod service;
mod shim_load;
mod shim_scan;
mod shim_watch;
mod structure;
mod tls;
mod trust;
