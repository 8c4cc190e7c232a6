//! giva's integration suite: real services, in-process, over real gRPC on
//! loopback. One binary, one module per area.

mod common;
mod first_path;
mod reporting;
