//! Notify-only watching, where fanotify is not permitted: inotify (through
//! the `notify` crate) reports files closed after writing (and files moved
//! in); each is scanned through the session, and a file the appliance denies
//! is moved into the [`Vault`]. Nothing is blocked: an infected file can be
//! opened between its write and its quarantine.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use giva_proto::shim::{EventKind, FileIdentity, Verdict, VerdictKind};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::shutdown::Shutdown;
use crate::watch::config::WatchError;
use crate::watch::content::identity_of;
use crate::watch::state::Shared;
use crate::watch::ticket::{Reply, Request};

/// Paths queued between inotify and the scanner.
const PATH_QUEUE: usize = 1024;

/// Where quarantined files go: a directory only root can read (0700), one
/// file per quarantined file plus a JSON record beside it.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
}

/// What the vault records about a quarantined file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VaultRecord {
    /// Where the file was.
    pub original_path: PathBuf,
    /// Where it is now.
    pub vault_path: PathBuf,
    /// The signatures that matched.
    pub signatures: Vec<String>,
    /// The database that produced the verdict.
    pub database_version: String,
    /// Size in bytes.
    pub size: u64,
    /// When, in seconds since the Unix epoch.
    pub quarantined_at: u64,
}

impl Vault {
    /// Opens (and creates, mode 0700) the vault directory.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or restricted.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Vault> {
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Vault {
            dir: dir.canonicalize()?,
        })
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves `path` into the vault (copy and remove across file systems),
    /// makes it unreadable to others and not executable, and writes its
    /// record. The file is only moved when it is still the one that was
    /// scanned (same inode, size and mtime).
    ///
    /// # Errors
    ///
    /// The file changed or cannot be moved.
    pub fn quarantine(
        &self,
        path: &Path,
        scanned: &FileIdentity,
        verdict: &Verdict,
    ) -> io::Result<VaultRecord> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let f = File::open(path)?;
        let (current, _) = identity_of(&f, &scanned.image_id)?;
        drop(f);
        if current.file_id != scanned.file_id
            || current.size != scanned.size
            || current.mtime_ns != scanned.mtime_ns
        {
            return Err(io::Error::other("the file changed after it was scanned"));
        }
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let name = format!("{}-{base}", now.as_nanos());
        let target = self.dir.join(format!("{name}.quarantined"));
        match std::fs::rename(path, &target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(18) => {
                // EXDEV: another file system.
                std::fs::copy(path, &target)?;
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        }
        // Not executable, readable by its owner only. A file owned by someone
        // else (the shim not running as root) keeps its mode: it is moved
        // all the same, and the vault directory itself is 0700.
        if let Err(e) = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o400)) {
            tracing::warn!(path = %target.display(), error = %e, "cannot restrict a quarantined file");
        }
        let record = VaultRecord {
            original_path: path.to_path_buf(),
            vault_path: target,
            signatures: verdict
                .detections
                .iter()
                .map(|d| d.signature.clone())
                .collect(),
            database_version: verdict.database_version.clone(),
            size: scanned.size,
            quarantined_at: now.as_secs(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        std::fs::write(self.dir.join(format!("{name}.json")), json)?;
        Ok(record)
    }
}

/// A running inotify watch; dropping it stops the kernel watches.
#[derive(Debug)]
pub struct NotifyWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `paths` recursively and feeding the link.
///
/// # Errors
///
/// inotify cannot be set up or a path cannot be watched.
pub fn start(
    paths: &[PathBuf],
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    vault: Vault,
    image_id: String,
    shutdown: Shutdown,
) -> Result<(NotifyWatch, tokio::task::JoinHandle<()>), WatchError> {
    let (ptx, mut prx) = mpsc::channel::<PathBuf>(PATH_QUEUE);
    let counters = shared.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        let wanted = matches!(
            ev.kind,
            notify::EventKind::Access(AccessKind::Close(AccessMode::Write))
                | notify::EventKind::Modify(ModifyKind::Name(RenameMode::To))
        );
        if !wanted {
            return;
        }
        for p in ev.paths {
            counters.stats.events.fetch_add(1, Ordering::Relaxed);
            if ptx.try_send(p).is_err() {
                counters.count_dropped();
            }
        }
    })
    .map_err(WatchError::Inotify)?;
    for p in paths {
        watcher
            .watch(p, RecursiveMode::Recursive)
            .map_err(|e| WatchError::BadPath {
                path: p.clone(),
                reason: e.to_string(),
            })?;
    }
    let task = tokio::spawn(async move {
        loop {
            let path = tokio::select! {
                p = prx.recv() => match p { Some(p) => p, None => return },
                _ = shutdown.cancelled() => return,
            };
            if let Some(req) = request_for(&path, &shared, &vault, &image_id) {
                let (identity, notify) = req;
                if tx.send(identity).await.is_err() {
                    return;
                }
                let (shared, vault) = (shared.clone(), vault.clone());
                tokio::spawn(async move { after_verdict(path, notify, shared, vault).await });
            }
        }
    });
    Ok((NotifyWatch { _watcher: watcher }, task))
}

struct Pending {
    identity: FileIdentity,
    rx: oneshot::Receiver<Option<Verdict>>,
}

fn request_for(
    path: &Path,
    shared: &Shared,
    vault: &Vault,
    image_id: &str,
) -> Option<(Request, Pending)> {
    if path.starts_with(vault.dir()) {
        return None;
    }
    let file = File::open(path).ok()?;
    let (identity, regular) = identity_of(&file, image_id).ok()?;
    let path_s = path.to_string_lossy().into_owned();
    if !regular
        || shared
            .policy()
            .check(EventKind::CloseWrite, &path_s, identity.size)
            .is_err()
    {
        shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let (tx, rx) = oneshot::channel();
    Some((
        Request {
            kind: EventKind::CloseWrite,
            path: path_s,
            identity: identity.clone(),
            content: Arc::new(file),
            reply: Reply::Notify(tx),
            full_scan_id: 0,
        },
        Pending { identity, rx },
    ))
}

async fn after_verdict(path: PathBuf, p: Pending, shared: Arc<Shared>, vault: Vault) {
    match p.rx.await {
        Ok(Some(v)) if v.kind == VerdictKind::Deny as i32 => {
            let r =
                tokio::task::spawn_blocking(move || vault.quarantine(&path, &p.identity, &v)).await;
            match r {
                Ok(Ok(rec)) => {
                    shared.stats.vaulted.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        path = %rec.original_path.display(),
                        vault = %rec.vault_path.display(),
                        signatures = ?rec.signatures,
                        "infected file moved into the vault"
                    );
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cannot quarantine an infected file"),
                Err(e) => tracing::error!(error = %e, "quarantine task failed"),
            }
        }
        Ok(Some(_)) => {}
        Ok(None) | Err(_) => {
            tracing::warn!(path = %path.display(), "no verdict for a written file (appliance unreachable)");
        }
    }
}
