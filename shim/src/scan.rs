//! `giva-shim scan`: the full-scan walker.
//!
//! It asks the appliance for a full-scan slot, walks the given paths, sends
//! each file as a full-scan event, streams content when the appliance asks
//! for it, and reports each verdict as it arrives. At the end it reports
//! completion, so that the manager can release a quarantined VM.

use crate::stream::StreamError;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use giva_proto::shim::{
    ContentChunk, ContentError, EventKind, FileEvent, FileIdentity, FullScanFinished,
    FullScanRequest, GuestMessage, NotScannedReason, VerdictKind, VmIdentity, appliance_message,
    guest_message,
};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::client::{self, ClientError};

/// Size of the content chunks sent to the appliance.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Options of a full scan.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// The appliance's URL.
    pub appliance: String,
    /// Who this VM is.
    pub vm: VmIdentity,
    /// Files and directories to scan (directories recursively).
    pub paths: Vec<PathBuf>,
    /// Files in flight at once.
    pub concurrency: usize,
    /// Give up when the appliance sends nothing for this long while files
    /// are in flight.
    pub idle_timeout: Duration,
    /// Threads walking the file system at once.
    pub walkers: usize,
    /// TLS for an `https://` appliance URL.
    pub tls: giva_proto::tls::ClientFiles,
}

impl ScanConfig {
    /// A configuration with defaults for everything but the target.
    pub fn new(appliance: impl Into<String>, vm: VmIdentity, paths: Vec<PathBuf>) -> Self {
        ScanConfig {
            appliance: appliance.into(),
            vm,
            paths,
            concurrency: 16,
            idle_timeout: Duration::from_secs(120),
            walkers: 4,
            tls: giva_proto::tls::ClientFiles::default(),
        }
    }
}

/// The verdict on one file, as the shim reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// "ok", "found", "error", "not_scanned" (a limit) or "excluded".
    pub status: &'static str,
    /// Signature names (for "found").
    pub signatures: Vec<String>,
    /// Detail (for "error" and "not_scanned").
    pub reason: String,
    /// True when the verdict came from the appliance's cache.
    pub from_cache: bool,
}

impl FileResult {
    /// The clamscan-style line: `PATH: OK`, `PATH: NAME FOUND`, ...
    pub fn line(&self) -> String {
        let p = self.path.display();
        match self.status {
            "found" => format!("{p}: {} FOUND", self.signatures.join(", ")),
            "ok" => format!("{p}: OK"),
            "not_scanned" | "excluded" => format!("{p}: NOT SCANNED ({})", self.reason),
            _ => format!("{p}: ERROR {}", self.reason),
        }
    }
}

/// Totals of a full scan.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files with a verdict.
    pub scanned: u64,
    /// Files with detections.
    pub infected: u64,
    /// Files that could not be scanned (errors).
    pub failed: u64,
    /// Files not scanned because of a limit (size, bytes, time).
    pub skipped: u64,
    /// Files the policy excludes (not scanned, not a failure).
    pub excluded: u64,
    /// Files that vanished between the walk and their reading (not a
    /// failure).
    pub vanished: u64,
}

impl Summary {
    /// The process exit code: 1 when anything was found, else 2 when
    /// anything failed or was skipped by a limit, else 0. Excluded and
    /// vanished files do not count.
    pub fn exit_code(&self) -> u8 {
        if self.infected > 0 {
            1
        } else if self.failed > 0 || self.skipped > 0 {
            2
        } else {
            0
        }
    }

    /// Counts one file's result.
    fn count(&mut self, r: &FileResult) {
        match r.status {
            "found" => {
                self.scanned += 1;
                self.infected += 1;
            }
            "ok" => self.scanned += 1,
            "excluded" => self.excluded += 1,
            "not_scanned" => self.skipped += 1,
            _ => {
                self.scanned += 1;
                self.failed += 1;
            }
        }
    }
}

struct Pending {
    path: PathBuf,
    /// The size announced in the event; content stops there.
    size: u64,
}

/// Runs a full scan. `on_result` is called once per file as verdicts come
/// in; `on_progress` with (done, total) after each.
///
/// # Errors
///
/// The appliance cannot be reached, refuses the session, or stops
/// answering.
pub async fn run(
    config: &ScanConfig,
    mut on_result: impl FnMut(&FileResult),
    mut on_progress: impl FnMut(u64, u64),
) -> Result<Summary, ClientError> {
    let mut client = client::connect(&config.appliance, &config.tls).await?;
    let mut session = client::open_session(&mut client, config.vm.clone()).await?;
    let image_id = config.vm.image_id.clone();
    let scan_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let tx = session.tx.clone();
    send(
        &tx,
        // No token: a scan the guest starts is recorded, and never
        // releases a quarantined VM.
        guest_message::Msg::FullScanRequest(FullScanRequest {
            full_scan_id: scan_id,
            reason: "manual".into(),
            scan_token: String::new(),
            roots: config
                .paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        }),
    )
    .await?;
    wait_for_slot(&mut session.rx, scan_id).await?;

    // The walk runs on its own threads and feeds a bounded queue, so the
    // first files are sent at once and memory stays bounded however large
    // the tree is.
    let (found_tx, mut found_rx) = mpsc::channel::<Found>(WALK_QUEUE);
    spawn_walkers(&config.paths, config.walkers, None, found_tx);
    let mut walking = true;
    let mut ready: Option<Found> = None;
    let mut total = 0u64;
    let mut summary = Summary::default();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_seq = 1u64;
    let (readers_tx, mut readers_rx) = mpsc::channel::<(u64, String)>(64);

    loop {
        // Keep `concurrency` files in flight.
        while pending.len() < config.concurrency.max(1) {
            let next = match ready.take() {
                Some(found) => Ok(found),
                None if walking => found_rx.try_recv(),
                None => break,
            };
            let path = match next {
                Ok(Found::File(p)) => p,
                Ok(Found::Error(path, reason)) => {
                    total += 1;
                    let r = FileResult {
                        path,
                        status: "error",
                        signatures: vec![],
                        reason,
                        from_cache: false,
                    };
                    summary.count(&r);
                    on_result(&r);
                    continue;
                }
                Ok(Found::Vanished) => {
                    summary.vanished += 1;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    walking = false;
                    break;
                }
            };
            total += 1;
            let seq = next_seq;
            next_seq += 1;
            match identity(&path, &image_id) {
                Ok(identity) => {
                    let ev = FileEvent {
                        seq,
                        kind: EventKind::FullScanItem as i32,
                        path: path.to_string_lossy().into_owned(),
                        identity: Some(identity),
                        blocking: false,
                        full_scan_id: scan_id,
                    };
                    let size = identity_size(&ev);
                    send(&tx, guest_message::Msg::Event(ev)).await?;
                    pending.insert(seq, Pending { path, size });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    summary.vanished += 1;
                }
                Err(e) => {
                    let r = FileResult {
                        path,
                        status: "error",
                        signatures: vec![],
                        reason: e.to_string(),
                        from_cache: false,
                    };
                    summary.count(&r);
                    on_result(&r);
                }
            }
        }
        if pending.is_empty() && !walking {
            break;
        }
        let incoming = tokio::select! {
            m = tokio::time::timeout(config.idle_timeout, session.rx.message()), if !pending.is_empty() => m,
            // Wait for the walk when nothing is in flight.
            found = found_rx.recv(), if pending.is_empty() && walking => {
                match found {
                    Some(found) => ready = Some(found),
                    None => walking = false,
                }
                continue;
            }
            Some((seq, reason)) = readers_rx.recv() => {
                // A reader failed; tell the appliance so it can answer.
                send(&tx, guest_message::Msg::ContentError(ContentError { seq, reason })).await?;
                continue;
            }
        };
        let message = match incoming {
            Err(_) => {
                return Err(ClientError::SessionEnded(format!(
                    "no answer from the appliance for {} s",
                    config.idle_timeout.as_secs()
                )));
            }
            Ok(Err(status)) => {
                return Err(ClientError::Refused {
                    call: "Session",
                    status,
                });
            }
            Ok(Ok(None)) => {
                return Err(ClientError::SessionEnded("closed by the appliance".into()));
            }
            Ok(Ok(Some(m))) => m,
        };
        match message.msg {
            Some(appliance_message::Msg::ContentRequest(req)) => {
                let Some(p) = pending.get(&req.seq) else {
                    continue;
                };
                let (path, size) = (p.path.clone(), p.size);
                let tx = tx.clone();
                let errors = readers_tx.clone();
                tokio::spawn(async move {
                    let range = (req.offset, req.length);
                    if let Err(e) = stream_file(&path, req.seq, range, size, &tx).await {
                        let _ = errors.send((req.seq, e.to_string())).await;
                    }
                });
            }
            Some(appliance_message::Msg::Verdict(v)) => {
                let Some(p) = pending.remove(&v.seq) else {
                    continue;
                };
                let r = file_result(p.path, &v);
                summary.count(&r);
                on_result(&r);
                on_progress(summary.scanned + summary.skipped + summary.excluded, total);
            }
            _ => {}
        }
    }
    send(
        &tx,
        guest_message::Msg::FullScanFinished(FullScanFinished {
            full_scan_id: scan_id,
            files_scanned: summary.scanned,
            files_infected: summary.infected,
            files_failed: summary.failed,
            completed: true,
            files_vanished: summary.vanished,
            absent_paths: Vec::new(),
        }),
    )
    .await?;
    // Close our side and wait for the appliance to close its own: dropping
    // the response stream at once would reset the HTTP/2 stream and could
    // lose `FullScanFinished` while it is still queued, so the manager
    // would never hear that the scan completed.
    drop(tx);
    drop(session.tx);
    drop(readers_tx);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(Some(_)) = session.rx.message().await {}
    })
    .await;
    Ok(summary)
}

/// How long a finished scan waits for the appliance to close the session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

async fn send(tx: &mpsc::Sender<GuestMessage>, m: guest_message::Msg) -> Result<(), ClientError> {
    tx.send(GuestMessage { msg: Some(m) })
        .await
        .map_err(|_| ClientError::SessionEnded("the stream to the appliance closed".into()))
}

async fn wait_for_slot(
    rx: &mut tonic::Streaming<giva_proto::shim::ApplianceMessage>,
    scan_id: u64,
) -> Result<(), ClientError> {
    loop {
        let m = rx
            .message()
            .await
            .map_err(|status| ClientError::Refused {
                call: "Session",
                status,
            })?
            .ok_or_else(|| ClientError::SessionEnded("closed while waiting for a slot".into()))?;
        if let Some(appliance_message::Msg::FullScanSlot(slot)) = m.msg
            && slot.full_scan_id == scan_id
        {
            if slot.granted {
                return Ok(());
            }
            tracing::info!(
                position = slot.queue_position,
                "waiting for a full-scan slot"
            );
        }
    }
}

fn file_result(path: PathBuf, v: &giva_proto::shim::Verdict) -> FileResult {
    let signatures: Vec<String> = v.detections.iter().map(|d| d.signature.clone()).collect();
    let status = match VerdictKind::try_from(v.kind) {
        Ok(VerdictKind::Deny) => "found",
        Ok(VerdictKind::Allow) if !signatures.is_empty() => "found",
        Ok(VerdictKind::Allow) => "ok",
        Ok(VerdictKind::NotScanned) if v.not_scanned == NotScannedReason::Excluded as i32 => {
            "excluded"
        }
        Ok(VerdictKind::NotScanned) => "not_scanned",
        _ => "error",
    };
    let reason = if v.reason.is_empty() && matches!(status, "not_scanned" | "excluded") {
        NotScannedReason::try_from(v.not_scanned)
            .map(|r| r.as_str_name().to_lowercase())
            .unwrap_or_default()
    } else {
        v.reason.clone()
    };
    FileResult {
        path,
        status,
        signatures,
        reason,
        from_cache: v.from_cache,
    }
}

/// Most paths queued between the walkers and the sender.
pub(crate) const WALK_QUEUE: usize = 1024;

/// What a walker found.
pub(crate) enum Found {
    File(PathBuf),
    Error(PathBuf, String),
    /// Listed, then gone before it could be read: not an error.
    Vanished,
}

/// Walks `paths` on up to `walkers` threads. Each root directory is split
/// into its top-level entries, so that the subtrees of one root are walked
/// in parallel too.
pub(crate) fn spawn_walkers(
    paths: &[PathBuf],
    walkers: usize,
    prune: Option<Prune>,
    tx: mpsc::Sender<Found>,
) {
    let paths = paths.to_vec();
    std::thread::spawn(move || split_and_walk(&paths, walkers, prune, tx));
}

/// Directories not to descend into (every file under them is excluded).
pub(crate) type Prune = std::sync::Arc<dyn Fn(&Path) -> bool + Send + Sync>;

fn split_and_walk(
    paths: &[PathBuf],
    walkers: usize,
    prune: Option<Prune>,
    tx: mpsc::Sender<Found>,
) {
    use std::sync::{Arc, Mutex};
    let mut work: VecDeque<PathBuf> = VecDeque::new();
    for root in paths {
        // Roots the user named are followed if they are symlinks.
        match std::fs::metadata(root) {
            Ok(md) if md.is_file() => {
                if tx.blocking_send(Found::File(root.clone())).is_err() {
                    return;
                }
            }
            Ok(md) if md.is_dir() => match std::fs::read_dir(root) {
                Ok(entries) => {
                    let mut children: Vec<PathBuf> = entries
                        .filter_map(|e| match e {
                            Ok(e) => Some(e.path()),
                            Err(err) => {
                                let _ =
                                    tx.blocking_send(Found::Error(root.clone(), err.to_string()));
                                None
                            }
                        })
                        .collect();
                    children.sort();
                    if let Some(prune) = &prune {
                        children.retain(|c| !(c.is_dir() && prune(c)));
                    }
                    work.extend(children);
                }
                Err(e) => {
                    let _ = tx.blocking_send(Found::Error(root.clone(), e.to_string()));
                }
            },
            _ => work.push_back(root.clone()),
        }
    }
    let work = Arc::new(Mutex::new(work));
    for _ in 0..walkers.clamp(1, 16) {
        let (work, tx, prune) = (work.clone(), tx.clone(), prune.clone());
        std::thread::spawn(move || {
            loop {
                let next = work.lock().ok().and_then(|mut w| w.pop_front());
                let Some(root) = next else { return };
                // Split-off entries are not roots the user named: a symlink
                // among them is not followed, as in one whole walk.
                let walk = walkdir::WalkDir::new(&root)
                    .follow_links(false)
                    .follow_root_links(false)
                    .into_iter()
                    .filter_entry(|e| {
                        !(e.file_type().is_dir() && prune.as_ref().is_some_and(|p| p(e.path())))
                    });
                for entry in walk {
                    let found = match entry {
                        Ok(e) if e.file_type().is_file() => Found::File(e.into_path()),
                        Ok(_) => continue,
                        Err(e) => {
                            let p = e
                                .path()
                                .map(Path::to_path_buf)
                                .unwrap_or_else(|| root.clone());
                            if e.io_error()
                                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                            {
                                Found::Vanished
                            } else {
                                Found::Error(p, e.to_string())
                            }
                        }
                    };
                    if tx.blocking_send(found).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// Lists regular files under `paths` (directories recursively, symlinks not
/// followed), with the paths that could not be read.
pub fn walk(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for root in paths {
        for entry in walkdir::WalkDir::new(root).follow_links(false) {
            match entry {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                Ok(_) => {}
                Err(e) => {
                    let p = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone());
                    errors.push((p, e.to_string()));
                }
            }
        }
    }
    (files, errors)
}

/// The identity of a file from its metadata.
///
/// # Errors
///
/// The file cannot be inspected.
pub fn identity(path: &Path, image_id: &str) -> std::io::Result<FileIdentity> {
    Ok(crate::identity::from_metadata(
        &std::fs::metadata(path)?,
        image_id,
    ))
}

fn identity_size(ev: &FileEvent) -> u64 {
    ev.identity.as_ref().map_or(0, |i| i.size)
}

/// Streams a file's content from `offset`, `length` bytes of it (0: up to
/// `size`, the size announced in its event), in chunks; the last chunk
/// ends there. A file that grew since is cut at `size`; one that shrank
/// ends early, and the appliance answers that it changed.
///
/// # Errors
///
/// [`StreamError`]: a read error, or the session closed.
pub async fn stream_file(
    path: &Path,
    seq: u64,
    (offset, length): (u64, u64),
    size: u64,
    tx: &mpsc::Sender<GuestMessage>,
) -> Result<(), StreamError> {
    // The bytes asked for end here (a length of 0: the file's end); the
    // last chunk sent ends there.
    let size = if length == 0 {
        size
    } else {
        offset.saturating_add(length).min(size)
    };
    let mut file = tokio::fs::File::open(path).await?;
    if offset > 0 {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
    }
    let mut pos = offset;
    loop {
        let want = usize::try_from(size.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(CHUNK_SIZE);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let last = filled < want || want == 0 || pos + filled as u64 >= size;
        let chunk = ContentChunk {
            seq,
            offset: pos,
            data: buf,
            last,
        };
        pos += filled as u64;
        tx.send(GuestMessage {
            msg: Some(guest_message::Msg::Chunk(chunk)),
        })
        .await
        .map_err(|_| StreamError::SessionClosed)?;
        if last {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pruned_directories_are_not_entered() {
        let root = std::env::temp_dir().join(format!("giva-prune-{}", std::process::id()));
        for d in ["keep/deep", "proc/1"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("keep/deep/a.txt"), b"a").unwrap();
        std::fs::write(root.join("proc/1/maps"), b"m").unwrap();
        std::fs::write(root.join("top.txt"), b"t").unwrap();
        let excluded = root.join("proc");
        let prune: Prune = std::sync::Arc::new(move |d: &Path| d.starts_with(&excluded));
        for roots in [
            vec![root.clone()],
            vec![root.join("keep"), root.join("proc")],
        ] {
            let (tx, mut rx) = mpsc::channel(16);
            spawn_walkers(&roots, 2, Some(prune.clone()), tx);
            let mut seen = Vec::new();
            while let Some(f) = rx.recv().await {
                if let Found::File(p) = f {
                    seen.push(p.strip_prefix(&root).unwrap().to_path_buf());
                }
            }
            seen.sort();
            assert!(
                seen.iter().all(|p| !p.starts_with("proc")),
                "{roots:?}: {seen:?}"
            );
            assert!(seen.contains(&PathBuf::from("keep/deep/a.txt")), "{seen:?}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
