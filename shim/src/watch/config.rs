//! What a watcher is asked to do ([`WatchConfig`]), which event source it
//! uses, and how starting one can fail.

use std::path::PathBuf;
use std::time::Duration;

use giva_proto::shim::VmIdentity;

use crate::policy::Overrides;

/// The default vault directory.
pub const DEFAULT_VAULT: &str = "/var/lib/giva-shim/vault";

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
    /// TLS for an `https://` appliance URL.
    pub tls: giva_proto::tls::ClientFiles,
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
            tls: giva_proto::tls::ClientFiles::default(),
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
    Inotify(#[source] notify::Error),
    /// The fanotify reader thread cannot start.
    #[error("cannot start the fanotify thread: {0}")]
    Thread(#[source] std::io::Error),
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
