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
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use giva_proto::shim::{
    ContentChunk, ContentError, EventKind, FileEvent, FileIdentity, GuestMessage, ShimReport,
    Verdict, VerdictKind, VmIdentity, appliance_message, guest_message,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::{self, ClientError};
use crate::fullscan::{self, FULL_SCAN_INFLIGHT};
use crate::policy::{LocalPolicy, Overrides};
use crate::shutdown::Shutdown;

/// Size of the content chunks the watcher sends (small, to keep memory low:
/// at most `OUT_BUFFER` of them are queued).
pub const WATCH_CHUNK_SIZE: usize = 128 * 1024;

/// Something that holds guest accesses and can answer them.
pub trait Gate: Send + Sync + fmt::Debug {
    /// Answers access `id`. Returns false when it was already answered (for
    /// example by its deadline).
    fn answer(&self, id: u64, allow: bool) -> bool;
    /// True while access `id` waits for an answer.
    fn is_pending(&self, id: u64) -> bool;
}

/// The right and the duty to answer one held guest access.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<dyn Gate>,
    id: u64,
    shared: Arc<Shared>,
    done: bool,
}

impl Ticket {
    /// A ticket for access `id` held by `gate`.
    pub fn new(gate: Arc<dyn Gate>, id: u64, shared: Arc<Shared>) -> Self {
        Ticket {
            gate,
            id,
            shared,
            done: false,
        }
    }

    /// True while the access still waits.
    pub fn is_pending(&self) -> bool {
        self.gate.is_pending(self.id)
    }

    /// Answers from a verdict.
    pub fn decide(mut self, allow: bool) {
        self.done = true;
        if self.gate.answer(self.id, allow) {
            let c = if allow {
                &self.shared.stats.allowed
            } else {
                &self.shared.stats.denied
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers by the fail-open/fail-closed policy (counted and reported).
    pub fn fail(mut self) {
        self.done = true;
        self.fail_inner();
    }

    fn fail_inner(&self) {
        if self.shared.is_stopping() {
            // The watcher is stopping: let the guest go, uncounted.
            self.gate.answer(self.id, true);
            return;
        }
        let allow = self.shared.policy().fail_open();
        if self.gate.answer(self.id, allow) {
            self.shared.count_fail(allow);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.fail_inner();
        }
    }
}

/// Who waits for the outcome of a request.
#[derive(Debug)]
pub enum Reply {
    /// A guest access is held until the ticket is answered.
    Permission(Ticket),
    /// A task waits for the verdict (`None`: no verdict could be had).
    Notify(oneshot::Sender<Option<Verdict>>),
    /// Nobody waits.
    None,
}

/// One file event for the appliance.
#[derive(Debug)]
pub struct Request {
    /// What happened.
    pub kind: EventKind,
    /// The path in the guest.
    pub path: String,
    /// The file's identity (size, mtime, inode, device, image).
    pub identity: FileIdentity,
    /// Where content is read from when the appliance asks for it. Under
    /// fanotify this is the event's own descriptor, whose reads raise no
    /// further events.
    pub content: Arc<File>,
    /// Who waits.
    pub reply: Reply,
    /// The full scan this file belongs to (0: an on-access event).
    pub full_scan_id: u64,
}

/// Counters of a watcher (all since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// File events seen (kernel or inotify).
    pub events: AtomicU64,
    /// Events sent to the appliance.
    pub sent: AtomicU64,
    /// Events not sent: excluded by policy, not a regular file, too large.
    pub skipped: AtomicU64,
    /// Events caused by the shim's own process (allowed at once).
    pub own: AtomicU64,
    /// Verdicts received.
    pub verdicts: AtomicU64,
    /// Verdicts that came from the appliance's cache.
    pub cache_hits: AtomicU64,
    /// Verdicts with detections.
    pub detections: AtomicU64,
    /// Held accesses allowed by a verdict.
    pub allowed: AtomicU64,
    /// Held accesses denied by a verdict.
    pub denied: AtomicU64,
    /// Held accesses allowed by the fail-open policy.
    pub fail_open: AtomicU64,
    /// Held accesses denied by the fail-closed policy.
    pub fail_closed: AtomicU64,
    /// Events dropped (queue full, kernel queue overflow, no session).
    pub dropped: AtomicU64,
    /// Content bytes sent.
    pub bytes_sent: AtomicU64,
    /// Sessions opened (1 + reconnects).
    pub sessions: AtomicU64,
    /// Files moved into the vault (fallback mode).
    pub vaulted: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub events: u64,
    pub sent: u64,
    pub skipped: u64,
    pub own: u64,
    pub verdicts: u64,
    pub cache_hits: u64,
    pub detections: u64,
    pub allowed: u64,
    pub denied: u64,
    pub fail_open: u64,
    pub fail_closed: u64,
    pub dropped: u64,
    pub bytes_sent: u64,
    pub sessions: u64,
    pub vaulted: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            events: g(&self.events),
            sent: g(&self.sent),
            skipped: g(&self.skipped),
            own: g(&self.own),
            verdicts: g(&self.verdicts),
            cache_hits: g(&self.cache_hits),
            detections: g(&self.detections),
            allowed: g(&self.allowed),
            denied: g(&self.denied),
            fail_open: g(&self.fail_open),
            fail_closed: g(&self.fail_closed),
            dropped: g(&self.dropped),
            bytes_sent: g(&self.bytes_sent),
            sessions: g(&self.sessions),
            vaulted: g(&self.vaulted),
        }
    }
}

/// State shared by the link, the event sources and the tickets.
#[derive(Debug)]
pub struct Shared {
    policy: RwLock<Arc<LocalPolicy>>,
    overrides: Overrides,
    connected: AtomicBool,
    stopping: AtomicBool,
    /// The counters.
    pub stats: Stats,
    unreported_open: AtomicU64,
    unreported_closed: AtomicU64,
    unreported_dropped: AtomicU64,
}

impl Shared {
    /// Shared state starting with the default policy and `overrides`.
    pub fn new(overrides: Overrides) -> Arc<Self> {
        Arc::new(Shared {
            policy: RwLock::new(Arc::new(LocalPolicy::new(
                crate::policy::default_wire_policy(),
                overrides,
            ))),
            overrides,
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
            unreported_open: AtomicU64::new(0),
            unreported_closed: AtomicU64::new(0),
            unreported_dropped: AtomicU64::new(0),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<LocalPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_policy(&self, wire: giva_proto::shim::Policy) {
        let p = Arc::new(LocalPolicy::new(wire, self.overrides));
        match self.policy.write() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }

    /// Marks the watcher as stopping: from now on, accesses still held are
    /// allowed (a stopped shim must not deny by fail-closed policy).
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// True while a session with the appliance is open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Decides a held access without a verdict, by policy, and counts it.
    /// Returns true to allow.
    pub fn fail_now(&self) -> bool {
        let allow = self.policy().fail_open();
        self.count_fail(allow);
        allow
    }

    fn count_fail(&self, allow: bool) {
        if allow {
            self.stats.fail_open.fetch_add(1, Ordering::Relaxed);
            self.unreported_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.fail_closed.fetch_add(1, Ordering::Relaxed);
            self.unreported_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an event that could not be sent.
    pub fn count_dropped(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters not yet reported, or `None` when all are zero.
    fn pending_report(&self) -> Option<ShimReport> {
        let r = ShimReport {
            fail_open_decisions: self.unreported_open.load(Ordering::Relaxed),
            fail_closed_decisions: self.unreported_closed.load(Ordering::Relaxed),
            events_dropped: self.unreported_dropped.load(Ordering::Relaxed),
        };
        (r.fail_open_decisions + r.fail_closed_decisions + r.events_dropped > 0).then_some(r)
    }

    fn mark_reported(&self, r: &ShimReport) {
        self.unreported_open
            .fetch_sub(r.fail_open_decisions, Ordering::Relaxed);
        self.unreported_closed
            .fetch_sub(r.fail_closed_decisions, Ordering::Relaxed);
        self.unreported_dropped
            .fetch_sub(r.events_dropped, Ordering::Relaxed);
    }
}

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
    let mut backoff = config.backoff_min;
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
                backoff = config.backoff_min;
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
                    tracing::debug!(error = %e, ?backoff, "reconnect failed");
                }
                let wait = tokio::time::sleep(backoff);
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
                backoff = (backoff * 2).min(config.backoff_max);
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
    let mut c = client::connect(&config.appliance).await?;
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
                            if let Err(reason) = job.stream(&tx, &shared).await {
                                let _ = errs.send((job.seq, reason)).await;
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
                        if full.is_some() {
                            tracing::info!(reason = %c.reason, "full scan asked for while one runs; ignored");
                        } else if config.full_scan_paths.is_empty() {
                            tracing::warn!(reason = %c.reason, "full scan asked for, but there is nothing to walk");
                        } else {
                            tracing::info!(reason = %c.reason, "the manager asks for a full scan");
                            full = fullscan::start(
                                config.full_scan_paths.clone(),
                                config.vm.image_id.clone(),
                                format!("manager: {}", c.reason),
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

/// One content request being served.
struct Content {
    file: Arc<File>,
    seq: u64,
    offset: u64,
    length: u64,
    size: u64,
}

impl Content {
    /// Streams the requested range, up to the size announced in the event,
    /// reading with `pread` on the event's descriptor (off the async
    /// threads).
    async fn stream(&self, tx: &mpsc::Sender<GuestMessage>, shared: &Shared) -> Result<(), String> {
        let end = if self.length == 0 {
            self.size
        } else {
            self.offset.saturating_add(self.length).min(self.size)
        };
        let mut pos = self.offset.min(end);
        loop {
            let want = usize::try_from(end - pos)
                .unwrap_or(usize::MAX)
                .min(WATCH_CHUNK_SIZE);
            let file = self.file.clone();
            let data = tokio::task::spawn_blocking(move || read_at(&file, pos, want))
                .await
                .map_err(|e| format!("reader failed: {e}"))??;
            let n = data.len() as u64;
            let last = data.len() < want || pos + n >= end;
            shared.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
            let chunk = ContentChunk {
                seq: self.seq,
                offset: pos,
                data,
                last,
            };
            pos += n;
            tx.send(GuestMessage {
                msg: Some(guest_message::Msg::Chunk(chunk)),
            })
            .await
            .map_err(|_| "session closed".to_string())?;
            if last {
                return Ok(());
            }
        }
    }
}

/// Reads up to `want` bytes at `pos` (fewer only at the end of the file).
fn read_at(file: &File, pos: u64, want: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The identity of an open file, from `fstat`.
///
/// # Errors
///
/// `fstat` failed.
pub fn identity_of(file: &File, image_id: &str) -> std::io::Result<(FileIdentity, bool)> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata()?;
    Ok((
        FileIdentity {
            size: md.len(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            file_id: md.ino(),
            device_id: md.dev(),
            image_id: image_id.to_string(),
        },
        md.file_type().is_file(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A gate that records answers.
    #[derive(Debug, Default)]
    struct Recorder {
        pending: Mutex<HashMap<u64, Option<bool>>>,
    }

    impl Recorder {
        fn hold(&self, id: u64) {
            self.pending.lock().unwrap().insert(id, None);
        }
        fn answer_of(&self, id: u64) -> Option<bool> {
            self.pending.lock().unwrap().get(&id).copied().flatten()
        }
    }

    impl Gate for Recorder {
        fn answer(&self, id: u64, allow: bool) -> bool {
            match self.pending.lock().unwrap().get_mut(&id) {
                Some(slot @ None) => {
                    *slot = Some(allow);
                    true
                }
                _ => false,
            }
        }
        fn is_pending(&self, id: u64) -> bool {
            matches!(self.pending.lock().unwrap().get(&id), Some(None))
        }
    }

    #[test]
    fn a_ticket_is_answered_once_and_a_dropped_ticket_fails_by_policy() {
        let shared = Shared::new(Overrides {
            fail_open: Some(false),
            decision_timeout: None,
        });
        let rec = Arc::new(Recorder::default());
        let gate: Arc<dyn Gate> = rec.clone();
        for id in 1..=3 {
            rec.hold(id);
        }
        Ticket::new(gate.clone(), 1, shared.clone()).decide(true);
        drop(Ticket::new(gate.clone(), 2, shared.clone()));
        // Answered already (say, by its deadline): nothing more is counted.
        assert!(rec.answer(3, true));
        Ticket::new(gate.clone(), 3, shared.clone()).fail();
        assert_eq!(rec.answer_of(1), Some(true));
        assert_eq!(rec.answer_of(2), Some(false), "fail-closed");
        let s = shared.stats.snapshot();
        assert_eq!((s.allowed, s.fail_closed, s.fail_open), (1, 1, 0));
        let r = shared.pending_report().expect("a report is due");
        assert_eq!(r.fail_closed_decisions, 1);
        shared.mark_reported(&r);
        assert!(shared.pending_report().is_none());
    }
}
