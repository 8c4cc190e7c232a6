//! [`Watcher`]: starts the event source and the link to the appliance,
//! and stops both (removing every kernel mark).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::shutdown::Shutdown;
use crate::watch::config::{ActiveBackend, Backend, WatchConfig, WatchError};
use crate::watch::fallback::{self, Vault};
use crate::watch::link::{self, LinkConfig};
use crate::watch::state::{Shared, StatsSnapshot};
use crate::watch::ticket::Request;

/// Requests queued between the event source and the link.
const REQUEST_QUEUE: usize = 256;

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
                Err(Unsupported(reason)) if b == Backend::Fanotify => {
                    return Err(WatchError::FanotifyUnavailable(reason));
                }
                Err(Unsupported(reason)) => (ActiveBackend::Notify { reason }, None),
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
                )?;
                Source::Notify(w, task)
            }
        };
        let mut lc = LinkConfig::new(config.appliance.clone(), config.vm.clone());
        lc.max_inflight = config.max_inflight;
        lc.backoff_min = config.backoff_min;
        lc.backoff_max = config.backoff_max;
        lc.full_scan_paths = config.paths.clone();
        lc.tls = config.tls.clone();
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

/// Why fanotify cannot be used here, for people (the watcher then falls
/// back to notify-only watching, unless fanotify is required).
#[derive(Debug)]
struct Unsupported(String);

/// Starts the fanotify source. The outer error is fatal (a bad path); the
/// inner one says why fanotify is unavailable.
#[cfg(target_os = "linux")]
fn start_fanotify(
    config: &WatchConfig,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Request>,
    shutdown: &Shutdown,
) -> Result<Result<Source, Unsupported>, WatchError> {
    use crate::watch::fanotify::{FanGate, ReaderConfig, Unavailable, reader_loop};
    let gate = match FanGate::open(&config.paths, config.mark) {
        Ok(g) => g,
        Err(Unavailable::Unsupported(reason)) => return Ok(Err(Unsupported(reason))),
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
        .map_err(WatchError::Thread)?;
    Ok(Ok(Source::Fanotify(thread)))
}

#[cfg(not(target_os = "linux"))]
fn start_fanotify(
    _config: &WatchConfig,
    _shared: &Arc<Shared>,
    _tx: &mpsc::Sender<Request>,
    _shutdown: &Shutdown,
) -> Result<Result<Source, Unsupported>, WatchError> {
    Ok(Err(Unsupported(format!(
        "fanotify exists only on Linux (this is {})",
        std::env::consts::OS
    ))))
}
