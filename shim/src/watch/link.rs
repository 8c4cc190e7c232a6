//! The watcher's link to the appliance: one reconnecting session that
//! carries file events out and brings verdicts back.
//!
//! The link is fed [`Request`]s through a bounded channel by whatever sees
//! file activity (the fanotify reader thread or the inotify fallback). Each
//! request carries the file's content handle and a [`Reply`] saying who waits
//! for the outcome:
//!
//! - [`Reply::Permission`]: a guest access is held by the kernel. Its
//!   [`Ticket`] answers it exactly once: from the verdict, or from the
//!   fail-open/fail-closed policy when the verdict is late, the appliance is
//!   gone, or the request is dropped (a ticket dropped unanswered decides by
//!   policy, so no code path can leave a guest waiting).
//! - [`Reply::Notify`]: a task waits for the verdict (the fallback's vault).
//! - [`Reply::None`]: nobody waits (close-after-write under fanotify).
//!
//! When the session ends the link decides everything in flight by policy,
//! marks itself disconnected (so new permission events are decided at once,
//! without waiting for the deadline), and reconnects with exponential
//! backoff. Each decision taken without a verdict is counted and reported to
//! the appliance in a `ShimReport` once a session is open again.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use giva_proto::shim::{
    ContentError, FileEvent, GuestMessage, Verdict, VerdictKind, VmIdentity, appliance_message,
    guest_message,
};
use giva_runtime::Backoff;
use tokio::sync::{Semaphore, mpsc};

use crate::client::{self, ClientError};
use crate::shutdown::Shutdown;
use crate::watch::content::Content;
use crate::watch::fullscan::{self, FULL_SCAN_INFLIGHT};
use crate::watch::state::Shared;
use crate::watch::ticket::{Reply, Request};

/// How the link connects.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The appliance's URL.
    pub appliance: String,
    /// Who this VM is.
    pub vm: VmIdentity,
    /// Events in flight on the session at once.
    pub max_inflight: usize,
    /// Content readers at once.
    pub max_readers: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long an event may stay in flight before the link forgets it.
    pub forget_after: Duration,
    /// What a full scan asked for by the manager walks.
    pub full_scan_paths: Vec<PathBuf>,
    /// TLS for an `https://` appliance URL.
    pub tls: giva_proto::tls::ClientFiles,
}

impl LinkConfig {
    /// Defaults for everything but the target.
    pub fn new(appliance: impl Into<String>, vm: VmIdentity) -> Self {
        LinkConfig {
            appliance: appliance.into(),
            vm,
            max_inflight: 64,
            max_readers: 4,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            forget_after: Duration::from_secs(120),
            full_scan_paths: Vec::new(),
            tls: giva_proto::tls::ClientFiles::default(),
        }
    }
}

/// Answers a request without a verdict (no session, or the session ended).
fn fail_request(req: Reply, shared: &Shared) {
    match req {
        Reply::Permission(t) => t.fail(),
        Reply::Notify(tx) => {
            shared.count_dropped();
            let _ = tx.send(None);
        }
        Reply::None => shared.count_dropped(),
    }
}

/// Runs the link until `shutdown` fires or every request sender is gone.
pub async fn run(
    config: LinkConfig,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Request>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut was_up = true; // log the first failure
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let attempt = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), connect(&config)) => {
                r.unwrap_or_else(|_| Err(ClientError::SessionEnded("registration timed out".into())))
            }
            _ = shutdown.cancelled() => break,
        };
        match attempt {
            Ok(session) => {
                backoff.reset();
                was_up = true;
                if let Some(p) = session.registration.policy.clone() {
                    shared.set_policy(p);
                }
                shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    appliance = %config.appliance,
                    database = %session.registration.database_version,
                    "session open"
                );
                shared.connected.store(true, Ordering::Release);
                let end = serve(&config, &shared, &mut rx, session, &shutdown).await;
                shared.connected.store(false, Ordering::Release);
                match end {
                    End::Shutdown => break,
                    End::Lost(why) => {
                        tracing::warn!(reason = %why, "lost the appliance; deciding by policy until it returns");
                    }
                }
            }
            Err(e) => {
                if was_up {
                    tracing::warn!(error = %e, "cannot reach the appliance; deciding by policy and retrying");
                    was_up = false;
                } else {
                    tracing::debug!(error = %e, failures = backoff.failures(), "reconnect failed");
                }
                let wait = tokio::time::sleep(backoff.next_delay());
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        r = rx.recv() => match r {
                            Some(req) => fail_request(req.reply, &shared),
                            None => return,
                        },
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }
    // Whatever is still queued is decided by policy as the tickets drop.
    rx.close();
    while let Ok(req) = rx.try_recv() {
        fail_request(req.reply, &shared);
    }
}

async fn connect(config: &LinkConfig) -> Result<client::Session, ClientError> {
    let mut c = client::connect(&config.appliance, &config.tls).await?;
    client::open_session(&mut c, config.vm.clone()).await
}

enum End {
    Shutdown,
    Lost(String),
}

struct InFlight {
    full_scan: bool,
    content: Arc<File>,
    size: u64,
    path: String,
    reply: Reply,
    sent_at: Instant,
}

async fn serve(
    config: &LinkConfig,
    shared: &Arc<Shared>,
    rx: &mut mpsc::Receiver<Request>,
    mut session: client::Session,
    shutdown: &Shutdown,
) -> End {
    let mut inflight: HashMap<u64, InFlight> = HashMap::new();
    let mut next_seq = 0u64;
    let readers = Arc::new(Semaphore::new(config.max_readers.max(1)));
    let (err_tx, mut err_rx) = mpsc::channel::<(u64, String)>(16);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tx = session.tx.clone();
    let mut full: Option<fullscan::Running> = None;
    let mut full_inflight = 0usize;
    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            m = session.rx.message() => match m {
                Ok(Some(m)) => match m.msg {
                    Some(appliance_message::Msg::ContentRequest(req)) => {
                        let Some(f) = inflight.get(&req.seq) else { continue };
                        let job = Content {
                            file: f.content.clone(),
                            seq: req.seq,
                            offset: req.offset,
                            length: req.length,
                            size: f.size,
                        };
                        let (tx, errs, readers, shared) =
                            (tx.clone(), err_tx.clone(), readers.clone(), shared.clone());
                        tokio::spawn(async move {
                            let Ok(_permit) = readers.acquire_owned().await else { return };
                            if let Err(e) = job.stream(&tx, &shared).await {
                                let _ = errs.send((job.seq, e.to_string())).await;
                            }
                        });
                    }
                    Some(appliance_message::Msg::Verdict(v)) => {
                        if let Some(f) = inflight.remove(&v.seq) {
                            if f.full_scan {
                                full_inflight = full_inflight.saturating_sub(1);
                            }
                            on_verdict(shared, f, v);
                        }
                    }
                    Some(appliance_message::Msg::FullScanSlot(slot)) => {
                        if let Some(run) = full.as_mut()
                            && run.id == slot.full_scan_id
                            && slot.granted
                            && let Some(start) = run.start.take()
                        {
                            let _ = start.send(());
                        }
                    }
                    Some(appliance_message::Msg::Policy(p)) => {
                        tracing::info!("policy changed");
                        shared.set_policy(p);
                    }
                    Some(appliance_message::Msg::FullScanCommand(c)) => {
                        // The command's roots are the policy's; an older
                        // appliance sends none, and the watched paths are
                        // walked.
                        let roots: Vec<PathBuf> = if c.roots.is_empty() {
                            config.full_scan_paths.clone()
                        } else {
                            c.roots.iter().map(PathBuf::from).collect()
                        };
                        if full.is_some() {
                            tracing::info!(reason = %c.reason, "full scan asked for while one runs; ignored");
                        } else if roots.is_empty() {
                            tracing::warn!(reason = %c.reason, "full scan asked for, but there is nothing to walk");
                        } else {
                            tracing::info!(reason = %c.reason, ?roots, "the appliance orders a full scan");
                            let order = fullscan::Order {
                                reason: c.reason.clone(),
                                token: c.scan_token,
                                roots,
                                recheck: c.recheck_paths.iter().map(PathBuf::from).collect(),
                            };
                            full = fullscan::start(
                                order,
                                config.vm.image_id.clone(),
                                shared.clone(),
                                tx.clone(),
                            )
                            .await;
                        }
                    }
                    _ => {}
                },
                Ok(None) => break End::Lost("the appliance closed the session".into()),
                Err(status) => break End::Lost(format!("session error: {status}")),
            },
            Some((seq, reason)) = err_rx.recv() => {
                let m = guest_message::Msg::ContentError(ContentError { seq, reason });
                if tx.send(GuestMessage { msg: Some(m) }).await.is_err() {
                    break End::Lost("the stream to the appliance closed".into());
                }
            }
            r = rx.recv(), if inflight.len() < config.max_inflight.max(1) => {
                let Some(req) = r else { break End::Shutdown };
                if let Reply::Permission(t) = &req.reply
                    && !t.is_pending()
                {
                    // Its deadline passed while it was queued.
                    continue;
                }
                next_seq += 1;
                if !send_event(next_seq, req, &mut inflight, shared, &tx).await {
                    break End::Lost("the stream to the appliance closed".into());
                }
            }
            // Full-scan files go behind on-access events, a few at a time.
            r = next_full(&mut full),
                if inflight.len() < config.max_inflight.max(1) && full_inflight < FULL_SCAN_INFLIGHT =>
            {
                let Some(req) = r else {
                    full = None; // the scan finished
                    continue;
                };
                next_seq += 1;
                full_inflight += 1;
                if !send_event(next_seq, req, &mut inflight, shared, &tx).await {
                    break End::Lost("the stream to the appliance closed".into());
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let stale: Vec<u64> = inflight
                    .iter()
                    .filter(|(_, f)| now.duration_since(f.sent_at) > config.forget_after)
                    .map(|(s, _)| *s)
                    .collect();
                for seq in stale {
                    if let Some(f) = inflight.remove(&seq) {
                        if f.full_scan {
                            full_inflight = full_inflight.saturating_sub(1);
                        }
                        tracing::warn!(seq, path = %f.path, "no verdict; giving up on the event");
                        fail_request(f.reply, shared);
                    }
                }
                if let Some(r) = shared.pending_report() {
                    let m = guest_message::Msg::Report(r);
                    if tx.send(GuestMessage { msg: Some(m) }).await.is_err() {
                        break End::Lost("the stream to the appliance closed".into());
                    }
                    shared.mark_reported(&r);
                }
            }
        }
    };
    // Nothing in flight will get a verdict now.
    for (_, f) in inflight.drain() {
        fail_request(f.reply, shared);
    }
    end
}

/// The next file of the running full scan (pends forever when none runs).
async fn next_full(full: &mut Option<fullscan::Running>) -> Option<Request> {
    match full {
        Some(run) => run.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one event and records it in flight. False when the stream closed.
async fn send_event(
    seq: u64,
    req: Request,
    inflight: &mut HashMap<u64, InFlight>,
    shared: &Shared,
    tx: &mpsc::Sender<GuestMessage>,
) -> bool {
    let ev = FileEvent {
        seq,
        kind: req.kind as i32,
        path: req.path.clone(),
        blocking: matches!(req.reply, Reply::Permission(_)),
        identity: Some(req.identity.clone()),
        full_scan_id: req.full_scan_id,
    };
    inflight.insert(
        seq,
        InFlight {
            full_scan: req.full_scan_id != 0,
            content: req.content,
            size: req.identity.size,
            path: req.path,
            reply: req.reply,
            sent_at: Instant::now(),
        },
    );
    shared.stats.sent.fetch_add(1, Ordering::Relaxed);
    tx.send(GuestMessage {
        msg: Some(guest_message::Msg::Event(ev)),
    })
    .await
    .is_ok()
}

fn on_verdict(shared: &Shared, f: InFlight, v: Verdict) {
    let s = &shared.stats;
    s.verdicts.fetch_add(1, Ordering::Relaxed);
    if v.from_cache {
        s.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    let kind = VerdictKind::try_from(v.kind).unwrap_or(VerdictKind::Unspecified);
    if !v.detections.is_empty() {
        s.detections.fetch_add(1, Ordering::Relaxed);
        let names: Vec<&str> = v.detections.iter().map(|d| d.signature.as_str()).collect();
        tracing::warn!(path = %f.path, signatures = ?names, verdict = ?kind, "detection");
    }
    match f.reply {
        Reply::Permission(t) => match kind {
            VerdictKind::Deny => t.decide(!shared.policy().deny_on_detection()),
            VerdictKind::Allow | VerdictKind::NotScanned => t.decide(true),
            // The appliance could not decide (busy, shutting down, failed):
            // the fail policy decides, as for a late verdict.
            VerdictKind::Error | VerdictKind::Unspecified => {
                tracing::debug!(path = %f.path, reason = %v.reason, "error verdict");
                t.fail()
            }
        },
        Reply::Notify(tx) => {
            let _ = tx.send(Some(v));
        }
        Reply::None => {}
    }
}
