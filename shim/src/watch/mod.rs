//! `giva-shim watch`: the on-access watcher.
//!
//! [`Watcher::start`] sets up the event source, then runs the link to the
//! appliance; [`Watcher::stop`] ends both and removes every kernel mark.
//! The event source is fanotify permission events where they are permitted
//! (Linux, root; `fanotify.rs`), and otherwise notify-only watching with
//! quarantine into a vault (`fallback.rs`).
//!
//! The parts, leaves first: `config` (what to watch, how), `state` (the
//! policy in force, the counters), `ticket` (requests, and the duty to
//! answer a held access once), `content` (serving content requests),
//! `fullscan` (a full scan the manager ordered), `link` (the reconnecting
//! session to the appliance), the two event sources, and `watcher`.
//!
//! ```no_run
//! # async fn f() -> Result<(), giva_shim::watch::WatchError> {
//! use giva_shim::watch::{WatchConfig, Watcher};
//! let vm = giva_shim::client::default_identity();
//! let config = WatchConfig::new("http://127.0.0.1:7411", vm, vec!["/home".into()]);
//! let watcher = Watcher::start(config).await?;
//! // ... until a signal:
//! let stats = watcher.stop().await;
//! println!("{} events", stats.events);
//! # Ok(()) }
//! ```

mod config;
mod content;
mod fallback;
#[cfg(target_os = "linux")]
mod fanotify;
mod fullscan;
mod link;
mod state;
mod ticket;
mod watcher;

pub use config::{ActiveBackend, Backend, DEFAULT_VAULT, MarkScope, WatchConfig, WatchError};
pub use content::WATCH_CHUNK_SIZE;
pub use state::StatsSnapshot;
pub use watcher::Watcher;
