//! The giva guest shim: the thin agent in each guest VM.
//!
//! - [`client`]: registration and the session stream to the appliance.
//! - [`watch`]: the on-access watcher behind `giva-shim watch`: fanotify
//!   permission events or the inotify fallback, feeding a reconnecting
//!   link to the appliance under the appliance's [`policy`].
//! - [`scan`]: the full-scan walker behind `giva-shim scan`.
//! - [`load`]: the load generator behind `giva-shim load`.
//! - [`cli`]: the command line; `main.rs` only parses it and runs it.
//!
//! The shim never links the scan engine: it only reports file events and
//! streams content on request.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod identity;
pub mod load;
pub mod policy;
pub mod scan;
pub mod shutdown;
pub mod stream;
pub mod watch;
