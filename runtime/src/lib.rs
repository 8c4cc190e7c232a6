//! What giva's three programs (`giva`, `giva-shim`, `giva-manager`) share at
//! run time, so that each `main.rs` only parses flags and calls its
//! library:
//!
//! - [`telemetry`]: logging to stderr, text or JSON ([`LogFormat`]);
//! - [`signal`]: the shutdown signal (SIGINT, SIGTERM) and reload requests
//!   (SIGHUP);
//! - [`dirs`]: where a program keeps its state;
//! - [`retry`]: exponential [`Backoff`] with jitter, for every retry loop;
//! - [`secret`]: passwords and tokens that never print ([`Secret`]), read
//!   inline, from a file or from the environment;
//! - [`token`]: bearer tokens made at first start, kept in 0600 files;
//! - [`system`]: giving freed heap memory back to the system, and the
//!   open-files limit;
//! - `sqlite` (feature `sqlite`): what the SQLite pools share;
//! - [`exit`]: running a program's body and turning its result into an
//!   exit code, with errors printed once, as `program: error`.
//!
//! ```
//! use std::time::Duration;
//! use giva_runtime::Backoff;
//!
//! let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
//! let first = b.next_delay();
//! assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(50));
//! ```
#![deny(unsafe_code)] // `system.rs` alone allows it
#![deny(missing_docs)]

pub mod clone_token;
pub mod dirs;
pub mod exit;
pub mod retry;
pub mod secret;
pub mod signal;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod system;
pub mod telemetry;
pub mod token;

pub use retry::Backoff;
pub use secret::Secret;
pub use telemetry::LogFormat;
