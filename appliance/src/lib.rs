//! The giva appliance: the per-host scan service behind `giva serve`, and
//! the local tools `giva scan` and `giva db`.
//!
//! - [`Appliance`] holds everything a running appliance shares: the
//!   [`config::Config`], the compiled [`policy::Policy`], the
//!   [`scan::Signatures`] in service, the VM [`registry::Registry`], the
//!   [`reporter::Reporter`] towards the manager, and the counters; it
//!   reloads the database and reports its problems.
//! - [`serve`] runs the gRPC service (`giva.shim.v1`), its listeners, the
//!   [`admin`] endpoint, the background tasks (database watch, SIGHUP,
//!   scheduled full scans) and the reporter until a shutdown future fires.
//! - [`service`] translates gRPC calls (with `status` giving unary calls
//!   the sessions' status codes); a [`session`] serves one shim's stream; [`flight`] lets clones wait for one scan; [`outbox`] keeps
//!   events until the manager acknowledges them.
//! - [`cli`] is the command line; `main.rs` only parses it and runs it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
mod appliance;
pub mod cli;
pub mod clones;
pub mod config;
pub mod flight;
pub mod fullscan;
pub mod identity;
pub mod inventory;
mod layers;
mod listen;
mod loading;
pub mod outbox;
pub mod policy;
pub mod registry;
mod reload;
pub mod reporter;
pub mod scan;
mod serve;
pub mod service;
pub mod session;
pub mod stats;
mod status;
mod tasks;

pub use appliance::{Appliance, ReloadError};
pub use loading::{load_database, load_databases, load_signatures};
pub use serve::serve;
