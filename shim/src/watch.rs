//! `giva-shim watch`: the on-access watcher.
//!
//! [`Watcher::start`] sets up the event source, then runs the
//! [link](crate::link) to the appliance; [`Watcher::stop`] ends both and
//! removes every kernel mark. The event source is fanotify permission events
//! where they are permitted (Linux, root; see [`crate::fanotify`]), and
//! otherwise notify-only watching with quarantine into a vault (see
//! [`crate::fallback`]).
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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use giva_proto::shim::VmIdentity;
use tokio::sync::mpsc;

use crate::fallback::{self, Vault};
use crate::link::{self, LinkConfig, Shared, StatsSnapshot};
use crate::policy::Overrides;
use crate::shutdown::Shutdown;

/// The default vault directory.
pub const DEFAULT_VAULT: &str = "/var/lib/giva-shim/vault";

/// Requests queued between the event source and the link.
const REQUEST_QUEUE: usize = 256;

/// Where fanotify marks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MarkScope {
    /// A mount mark for mount points, inode marks otherwise.
    #[default]
    Auto,
    /// Inode marks on each directory (and its subdirectories at start).
    Inode,
    /// A mount mark on the mount holding each path.
    Mount,
    /// A file-system mark on the file system holding each path.
    Filesystem,
}

/// Which event source to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// fanotify where permitted, else the inotify fallback.
    #[default]
    Auto,
    /// fanotify or fail.
    Fanotify,
    /// The inotify fallback only.
    Notify,
}

/// Options of the watcher.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The appliance's URL.
    pub appliance: String,
    /// Who this VM is (its `image_id` goes into every file identity).
    pub vm: VmIdentity,
    /// Paths to watch.
    pub paths: Vec<PathBuf>,
    /// Fail-mode and deadline overrides.
    pub overrides: Overrides,
    /// The event source.
    pub backend: Backend,
    /// Where fanotify marks go.
    pub mark: MarkScope,
    /// Where the fallback quarantines files.
    pub vault: PathBuf,
    /// Allow the shim's own process at once (fanotify). Only tests that run
    /// the watcher inside the process that makes the guest activity turn
    /// this off.
    pub skip_own_pid: bool,
    /// Events in flight on the session at once.
    pub max_inflight: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl WatchConfig {
    /// Defaults for everything but the target.
    pub fn new(appliance: impl Into<String>, vm: VmIdentity, paths: Vec<PathBuf>) -> Self {
        WatchConfig {
            appliance: appliance.into(),
            vm,
            paths,
            overrides: Overrides::default(),
            backend: Backend::Auto,
            mark: MarkScope::Auto,
            vault: PathBuf::from(DEFAULT_VAULT),
            skip_own_pid: true,
            max_inflight: 64,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Errors starting a watcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// fanotify was required and cannot be used.
    #[error("fanotify unavailable: {0}")]
    FanotifyUnavailable(String),
    /// A path cannot be watched.
    #[error("cannot watch {path}: {reason}")]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The vault cannot be used.
    #[error("cannot use the vault {dir}: {reason}")]
    Vault {
        /// The vault directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The inotify fallback cannot start.
    #[error("notify-only watching failed: {0}")]
    Notify(String),
}

/// The event source in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveBackend {
    /// fanotify permission events: infected files cannot be opened.
    Fanotify,
    /// inotify after close-write: infected files are quarantined.
    Notify {
        /// Why fanotify is not used.
        reason: String,
    },
}

/// A running watcher.
#[derive(Debug)]
pub struct Watcher {
    shared: Arc<Shared>,
    shutdown: Shutdown,
    backend: ActiveBackend,
    link: Option<tokio::task::JoinHandle<()>>,
    source: Option<Source>,
}

#[derive(Debug)]
enum Source {
    #[cfg(target_os = "linux")]
    Fanotify(std::thread::JoinHandle<()>),
    Notify(fallback::NotifyWatch, tokio::task::JoinHandle<()>),
}

impl Watcher {
    /// Starts watching: marks the paths (or starts inotify), then connects to
    /// the appliance in the background. Until a session is open, held
    /// accesses are decided by the fail policy at once.
    ///
    /// # Errors
    ///
    /// See [`WatchError`]. With [`Backend::Auto`], fanotify being
    /// unavailable is not an error: the fallback starts and
    /// [`Watcher::backend`] says why.
    pub async fn start(config: WatchConfig) -> Result<Watcher, WatchError> {
        let shared = Shared::new(config.overrides);
        let shutdown = Shutdown::new();
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let (backend, source) = match config.backend {
            Backend::Notify => (
                ActiveBackend::Notify {
                    reason: "notify-only watching was asked for (--no-fanotify)".into(),
                },
                None,
            ),
            b => match start_fanotify(&config, &shared, &tx, &shutdown)? {
                Ok(source) => (ActiveBackend::Fanotify, Some(source)),
                Err(reason) if b == Backend::Fanotify => {
                    return Err(WatchError::FanotifyUnavailable(reason));
                }
                Err(reason) => (ActiveBackend::Notify { reason }, None),
            },
        };
        let source = match source {
            Some(s) => s,
            None => {
                let vault = Vault::open(&config.vault).map_err(|e| WatchError::Vault {
                    dir: config.vault.clone(),
                    reason: e.to_string(),
                })?;
                let (w, task) = fallback::start(
                    &config.paths,
                    shared.clone(),
                    tx,
                    vault,
                    config.vm.image_id.clone(),
                    shutdown.clone(),
                )
                .map_err(WatchError::Notify)?;
                Source::Notify(w, task)
            }
        };
        let mut lc = LinkConfig::new(config.appliance.clone(), config.vm.clone());
        lc.max_inflight = config.max_inflight;
        lc.backoff_min = config.backoff_min;
        lc.backoff_max = config.backoff_max;
        lc.full_scan_paths = config.paths.clone();
        let link = tokio::spawn(link::run(lc, shared.clone(), rx, shutdown.clone()));
        Ok(Watcher {
            shared,
            shutdown,
            backend,
            link: Some(link),
            source: Some(source),
        })
    }

    /// The event source in use.
    pub fn backend(&self) -> &ActiveBackend {
        &self.backend
    }

    /// True while a session with the appliance is open.
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// A handle that stops the watcher when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops: removes the kernel marks (allowing everything held), closes
    /// the session, and returns the final counters.
    pub async fn stop(mut self) -> StatsSnapshot {
        self.shared.begin_stop();
        self.shutdown.trigger();
        match self.source.take() {
            #[cfg(target_os = "linux")]
            Some(Source::Fanotify(thread)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Some(Source::Notify(w, task)) => {
                drop(w);
                let _ = task.await;
            }
            None => {}
        }
        if let Some(link) = self.link.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), link).await;
        }
        self.shared.stats.snapshot()
    }
}

impl Drop for Watcher {
    /// A watcher dropped without [`Watcher::stop`] (a panic, an early
    /// return) still stops: its thread removes the marks and allows
    /// everything held, in the background.
    fn drop(&mut self) {
        self.shared.begin_stop();
        self.shutdown.trigger();
    }
}

/// Starts the fanotify source. The outer error is fatal (a bad path); the
/// inner one says why fanotify is unavailable.
#[cfg(target_os = "linux")]
fn start_fanotify(
    config: &WatchConfig,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<link::Request>,
    shutdown: &Shutdown,
) -> Result<Result<Source, String>, WatchError> {
    use crate::fanotify::{FanGate, ReaderConfig, Unavailable, reader_loop};
    let gate = match FanGate::open(&config.paths, config.mark) {
        Ok(g) => g,
        Err(Unavailable::Unsupported(reason)) => return Ok(Err(reason)),
        Err(Unavailable::BadPath(path, reason)) => {
            return Err(WatchError::BadPath { path, reason });
        }
    };
    let rc = ReaderConfig {
        image_id: config.vm.image_id.clone(),
        skip_own_pid: config.skip_own_pid,
    };
    let (shared, tx, shutdown) = (shared.clone(), tx.clone(), shutdown.clone());
    let thread = std::thread::Builder::new()
        .name("giva-fanotify".into())
        .spawn(move || reader_loop(gate, shared, tx, shutdown, rc))
        .map_err(|e| WatchError::Notify(format!("cannot start the fanotify thread: {e}")))?;
    Ok(Ok(Source::Fanotify(thread)))
}

#[cfg(not(target_os = "linux"))]
fn start_fanotify(
    _config: &WatchConfig,
    _shared: &Arc<Shared>,
    _tx: &mpsc::Sender<link::Request>,
    _shutdown: &Shutdown,
) -> Result<Result<Source, String>, WatchError> {
    Ok(Err(format!(
        "fanotify exists only on Linux (this is {})",
        std::env::consts::OS
    )))
}
