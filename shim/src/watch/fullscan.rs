//! A full scan run by the watcher on its own session, when the appliance
//! orders one (`FullScanCommand`): request a slot with the command's token,
//! send the paths to re-read first (noting those that are gone), walk the
//! command's roots, send each file as a `FULL_SCAN_ITEM` through the link
//! (behind on-access events), and report `FullScanFinished`. The appliance
//! keeps its own count of the verdicts; a clean record of an ordered scan is
//! what releases a quarantined VM.

use std::path::PathBuf;
use std::sync::Arc;

use giva_proto::shim::{
    EventKind, FullScanFinished, FullScanRequest, GuestMessage, VerdictKind, guest_message,
};
use tokio::sync::{mpsc, oneshot};

use crate::scan::{Found, WALK_QUEUE, spawn_walkers};
use crate::watch::content::identity_of;
use crate::watch::state::Shared;
use crate::watch::ticket::{Reply, Request};

/// Files of a full scan in flight at once.
pub(crate) const FULL_SCAN_INFLIGHT: usize = 8;

/// A full scan waiting for its slot or running.
#[derive(Debug)]
pub(crate) struct Running {
    /// Its id.
    pub id: u64,
    /// Fired when the appliance grants the slot.
    pub start: Option<oneshot::Sender<()>>,
    /// Its files, to be sent on the session.
    pub requests: mpsc::Receiver<Request>,
    /// The task; aborted when the session ends.
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What to scan: the command's token, roots and paths to re-read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Order {
    /// Why.
    pub reason: String,
    /// Echoed in the request.
    pub token: String,
    /// What to walk.
    pub roots: Vec<PathBuf>,
    /// Sent first; those gone are reported absent.
    pub recheck: Vec<PathBuf>,
}

/// Asks for a slot and starts the scan task, which waits for the slot.
pub(crate) async fn start(
    order: Order,
    image_id: String,
    shared: Arc<Shared>,
    session: mpsc::Sender<GuestMessage>,
) -> Option<Running> {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let ask = guest_message::Msg::FullScanRequest(FullScanRequest {
        full_scan_id: id,
        reason: order.reason.clone(),
        scan_token: order.token.clone(),
        roots: order
            .roots
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    });
    session.send(GuestMessage { msg: Some(ask) }).await.ok()?;
    let (start_tx, start_rx) = oneshot::channel();
    let (req_tx, req_rx) = mpsc::channel(FULL_SCAN_INFLIGHT);
    let task = tokio::spawn(async move {
        if start_rx.await.is_err() {
            return;
        }
        run(id, order, image_id, shared, req_tx, session).await;
    });
    Some(Running {
        id,
        start: Some(start_tx),
        requests: req_rx,
        task,
    })
}

async fn run(
    id: u64,
    order: Order,
    image_id: String,
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    session: mpsc::Sender<GuestMessage>,
) {
    tracing::info!(id, roots = ?order.roots, recheck = order.recheck.len(), "full scan started");
    let (found_tx, mut found_rx) = mpsc::channel::<Found>(WALK_QUEUE);
    // The paths to re-read go first, then the walk of the roots.
    let recheck = order.recheck.clone();
    let (first_tx, mut first_rx) = mpsc::channel::<(PathBuf, bool)>(WALK_QUEUE);
    tokio::spawn(async move {
        for p in recheck {
            if first_tx.send((p, true)).await.is_err() {
                return;
            }
        }
    });
    // Excluded directories (/proc, /sys, /dev by default) are not entered.
    let policy = shared.clone();
    let prune: crate::scan::Prune = Arc::new(move |dir: &std::path::Path| {
        policy
            .policy()
            .is_excluded(&format!("{}/", dir.to_string_lossy().trim_end_matches('/')))
    });
    spawn_walkers(&order.roots, 2, Some(prune), found_tx);
    let mut done = FullScanFinished {
        full_scan_id: id,
        completed: true,
        ..FullScanFinished::default()
    };
    let mut waiting = tokio::task::JoinSet::new();
    loop {
        let (path, rechecking) = match first_rx.recv().await {
            Some(first) => first,
            None => match found_rx.recv().await {
                Some(Found::File(p)) => (p, false),
                Some(Found::Vanished) => {
                    done.files_vanished += 1;
                    continue;
                }
                Some(Found::Error(..)) => {
                    done.files_scanned += 1;
                    done.files_failed += 1;
                    continue;
                }
                None => break,
            },
        };
        while waiting.len() >= FULL_SCAN_INFLIGHT {
            if let Some(r) = waiting.join_next().await {
                count(&mut done, r.ok().flatten());
            }
        }
        let (p, img) = (path.clone(), image_id.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&p)?;
            let (identity, _) = identity_of(&f, &img)?;
            Ok::<_, std::io::Error>((f, identity))
        })
        .await;
        let (file, identity) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                if rechecking {
                    done.absent_paths.push(path.to_string_lossy().into_owned());
                } else {
                    done.files_vanished += 1;
                }
                continue;
            }
            _ => {
                done.files_scanned += 1;
                done.files_failed += 1;
                continue;
            }
        };
        let path_s = path.to_string_lossy().into_owned();
        if shared
            .policy()
            .check(EventKind::FullScanItem, &path_s, identity.size)
            .is_err()
        {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let req = Request {
            kind: EventKind::FullScanItem,
            path: path_s,
            identity,
            content: Arc::new(file),
            reply: Reply::Notify(tx),
            full_scan_id: id,
        };
        if requests.send(req).await.is_err() {
            return; // the session ended; the scan is abandoned
        }
        waiting.spawn(async move { rx.await.ok().flatten() });
    }
    while let Some(r) = waiting.join_next().await {
        count(&mut done, r.ok().flatten());
    }
    tracing::info!(
        id,
        files = done.files_scanned,
        infected = done.files_infected,
        failed = done.files_failed,
        "full scan finished"
    );
    let fin = guest_message::Msg::FullScanFinished(done);
    let _ = session.send(GuestMessage { msg: Some(fin) }).await;
}

fn count(done: &mut FullScanFinished, verdict: Option<giva_proto::shim::Verdict>) {
    done.files_scanned += 1;
    match verdict {
        Some(v) if !v.detections.is_empty() || v.kind == VerdictKind::Deny as i32 => {
            done.files_infected += 1
        }
        Some(v) if v.kind == VerdictKind::Allow as i32 => {}
        _ => done.files_failed += 1,
    }
}
