//! What database reloads keep between them: one reload at a time, why the
//! last one failed, and a cheap fingerprint of the database files to
//! notice that they changed.

use std::path::PathBuf;
use std::time::SystemTime;

/// The state of database reloads.
#[derive(Debug)]
pub(crate) struct ReloadState {
    /// One reload at a time.
    pub lock: tokio::sync::Mutex<()>,
    /// Why the last reload failed, while the old database stays in service.
    pub error: std::sync::Mutex<Option<String>>,
    /// The database files as they were when the database in service (or
    /// the last attempt) was loaded; the watcher reloads when they differ.
    pub loaded_files: std::sync::Mutex<Fingerprint>,
}

impl ReloadState {
    /// The state for a database loaded from `paths` just now.
    pub fn new(paths: &[PathBuf]) -> Self {
        ReloadState {
            lock: tokio::sync::Mutex::new(()),
            error: std::sync::Mutex::new(None),
            loaded_files: std::sync::Mutex::new(fingerprint(paths)),
        }
    }
}

/// Size and modification time of every database file.
pub(crate) type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// A cheap fingerprint of the database paths (size and modification time of
/// every file), to notice changes without reading them.
pub(crate) fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut out = Vec::new();
    for p in paths {
        let entries: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        for e in entries {
            let md = std::fs::metadata(&e).ok();
            out.push((
                e,
                md.as_ref().map_or(0, |m| m.len()),
                md.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out.sort();
    out
}
