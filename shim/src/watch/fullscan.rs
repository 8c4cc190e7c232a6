//! A full scan run by the watcher on its own session, when the manager asks
//! for one (`FullScanCommand`): request a slot, walk the watched paths, send
//! each file as a `FULL_SCAN_ITEM` through the link (behind on-access
//! events), and report `FullScanFinished` so that the manager can untag the
//! VM.

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

/// Asks for a slot and starts the scan task, which waits for the slot.
pub(crate) async fn start(
    paths: Vec<PathBuf>,
    image_id: String,
    reason: String,
    shared: Arc<Shared>,
    session: mpsc::Sender<GuestMessage>,
) -> Option<Running> {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let ask = guest_message::Msg::FullScanRequest(FullScanRequest {
        full_scan_id: id,
        reason,
    });
    session.send(GuestMessage { msg: Some(ask) }).await.ok()?;
    let (start_tx, start_rx) = oneshot::channel();
    let (req_tx, req_rx) = mpsc::channel(FULL_SCAN_INFLIGHT);
    let task = tokio::spawn(async move {
        if start_rx.await.is_err() {
            return;
        }
        run(id, paths, image_id, shared, req_tx, session).await;
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
    paths: Vec<PathBuf>,
    image_id: String,
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    session: mpsc::Sender<GuestMessage>,
) {
    tracing::info!(id, "full scan started");
    let (found_tx, mut found_rx) = mpsc::channel::<Found>(WALK_QUEUE);
    spawn_walkers(&paths, 2, found_tx);
    let mut done = FullScanFinished {
        full_scan_id: id,
        completed: true,
        ..FullScanFinished::default()
    };
    let mut waiting = tokio::task::JoinSet::new();
    while let Some(found) = found_rx.recv().await {
        while waiting.len() >= FULL_SCAN_INFLIGHT {
            if let Some(r) = waiting.join_next().await {
                count(&mut done, r.ok().flatten());
            }
        }
        let path = match found {
            Found::File(p) => p,
            Found::Error(..) => {
                done.files_scanned += 1;
                done.files_failed += 1;
                continue;
            }
        };
        let (p, img) = (path.clone(), image_id.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&p)?;
            let (identity, _) = identity_of(&f, &img)?;
            Ok::<_, std::io::Error>((f, identity))
        })
        .await;
        let Ok(Ok((file, identity))) = opened else {
            done.files_scanned += 1;
            done.files_failed += 1;
            continue;
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
