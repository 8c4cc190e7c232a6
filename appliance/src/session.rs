//! One VM's session stream: file events in, content requests and verdicts
//! out.
//!
//! The reader loop validates every message and routes content to the file it
//! belongs to. Each file in flight has its own task that feeds a streaming
//! scanner, so verdicts come back in any order and a slow file never blocks
//! a fast one. Protocol violations end the stream with `INVALID_ARGUMENT`;
//! resources of the VM are released when the stream ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use giva_proto::manager::{Action, EventKind as MgrEventKind, ScanSummary};
use giva_proto::shim::{
    ApplianceMessage, ContentChunk, ContentRequest, EventKind, FileEvent, FullScanSlot,
    GuestMessage, NotScannedReason, Verdict, VerdictKind, VmIdentity, appliance_message,
    guest_message,
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::{Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use giva_engine::cache::{Key, content_key, file_key};
use giva_engine::{CachedVerdict, Outcome, Priority};
use sha2::{Digest, Sha256};

use crate::appliance::Appliance;
use crate::flight::{Join, Leader, Waited};
use crate::fullscan::{self, FullScan, Tally};
use crate::layers::Keeper;
use crate::policy::Skip;
use crate::registry::{AttachError, SessionSender};
use crate::scan::{content_limits, scan_options, simple_verdict, verdict_for};
use crate::stats::{Stats, verdict};

/// Messages buffered towards one VM.
pub const OUT_BUFFER: usize = 256;
/// How long a new session stream has to send its `open`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks buffered towards one file's scan task.
const CHUNK_BUFFER: usize = 8;

enum FileInput {
    Chunk(Content),
    Last(Content),
    /// The last bytes asked for, short of the file's end: the scan's byte
    /// limit cut the transfer.
    Cut(Content),
    Failed(String),
}

/// A chunk's bytes on their way to their file's scan. They hold their
/// place in the session's budget (`server.max_pending_content_bytes`) until
/// the scan has read them, or until they are dropped unread.
struct Content {
    data: bytes::Bytes,
    _held: Held,
}

/// Bytes' place in a session's content budget and in the appliance's,
/// and in the appliance's `content_buffered_bytes` gauge.
struct Held {
    _session: Option<OwnedSemaphorePermit>,
    _appliance: Option<OwnedSemaphorePermit>,
    gauge: Gauge,
    bytes: i64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

impl Content {
    /// Waits until the session's budget, then the appliance's, has room
    /// for `data`, and holds it. Scans give bytes back without waiting on
    /// any session, so the wait always ends.
    async fn hold(data: bytes::Bytes, session: &Arc<Semaphore>, app: &Appliance) -> Content {
        // A chunk is at most MAX_CHUNK bytes, and both budgets at least
        // that (`Config::validate`).
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        // (Neither budget is ever closed, so these are always permits.)
        let mine = session.clone().acquire_many_owned(n).await.ok();
        let all = app.content_budget.clone().acquire_many_owned(n).await.ok();
        app.stats.content_buffered.inc_by(i64::from(n));
        Content {
            data,
            _held: Held {
                _session: mine,
                _appliance: all,
                gauge: app.stats.content_buffered.clone(),
                bytes: i64::from(n),
            },
        }
    }
}

struct InFlight {
    tx: mpsc::Sender<FileInput>,
    next_offset: u64,
    size: u64,
    /// Where the content asked for ends: the file's size, or one byte past
    /// the scan's byte limit (which tells the scanner the limit was hit).
    end: u64,
    /// The bytes asked for arrived, but the shim did not end the file
    /// there (a shim that ignores the request's length): what it sends
    /// until its last chunk is dropped.
    drained: bool,
}

fn msg(m: appliance_message::Msg) -> Result<ApplianceMessage, Status> {
    Ok(ApplianceMessage { msg: Some(m) })
}

/// Opens a session: checks the first message and attaches the stream.
/// Returns the receiver the gRPC response streams from.
///
/// # Errors
///
/// `INVALID_ARGUMENT` when the first message is not `open`, `NOT_FOUND` for
/// an unknown session, `ALREADY_EXISTS` when the VM has a live stream.
pub async fn open(
    app: Arc<Appliance>,
    certified: Option<String>,
    mut inbound: Streaming<GuestMessage>,
) -> Result<mpsc::Receiver<Result<ApplianceMessage, Status>>, Status> {
    // A stream that never says who it is holds a task and a stream slot:
    // it has a few seconds to.
    let first = tokio::time::timeout(OPEN_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no `open` within {} s of the session's start",
                OPEN_TIMEOUT.as_secs()
            ))
        })??
        .ok_or_else(|| Status::invalid_argument("session stream closed before `open`"))?;
    let Some(guest_message::Msg::Open(open)) = first.msg else {
        return Err(Status::invalid_argument(
            "the first message of a session must be `open`",
        ));
    };
    if let Some(name) = &certified {
        let vm_id = app
            .registry
            .vm_of_session(&open.session_id)
            .unwrap_or_default();
        crate::identity::check_claim(&app, Some(name), &vm_id)?;
    }
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let vm = match app.registry.attach(&open.session_id, tx.clone()) {
        Ok(vm) => vm,
        Err(AttachError::UnknownSession) => {
            return Err(Status::not_found("unknown session id; call Register first"));
        }
        Err(AttachError::AlreadyConnected(id)) => {
            return Err(Status::already_exists(format!(
                "VM {id} already has an open session"
            )));
        }
        Err(e @ AttachError::Full(_)) => return Err(Status::resource_exhausted(e.to_string())),
    };
    let span = info_span!("session", vm_id = %vm.vm_id);
    let session_id = open.session_id;
    let (rescan_tx, rescan_rx) = mpsc::channel(OUT_BUFFER);
    // One message per file whose scan task ended: a few bytes each.
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    tokio::spawn(
        async move {
            info!("session opened");
            app.stats.sessions.inc();
            let mut session = Session {
                policy: app.policies.for_group(&vm.group),
                template: app.registry.is_template(&vm.vm_id),
                app: app.clone(),
                vm,
                tx: tx.clone(),
                files: HashMap::new(),
                slots: HashMap::new(),
                scans: HashMap::new(),
                rescan_tx,
                rescan_rx,
                ended_tx,
                ended_rx,
                abandoned: std::collections::VecDeque::new(),
                following: Arc::default(),
                budget: crate::appliance::byte_budget(app.config.server.max_pending_content_bytes),
            };
            let result = session.run(&mut inbound).await;
            session.cut_off_scans().await;
            if let Err(status) = result {
                warn!(code = ?status.code(), error = %status.message(), "session ended by protocol error");
                let _ = tx.send(Err(status)).await;
            }
            app.registry.detach(&session_id);
            app.stats.sessions.dec();
            info!("session closed");
        }
        .instrument(span),
    );
    Ok(rx)
}

struct Session {
    app: Arc<Appliance>,
    policy: Arc<crate::policy::Policy>,
    /// This VM is its image's template (see [`crate::inventory`]).
    template: bool,
    vm: VmIdentity,
    tx: SessionSender,
    files: HashMap<u64, InFlight>,
    /// The VM's full scans that hold or wait for a slot. Removing an entry
    /// (the shim reports the scan finished) or dropping the session (the
    /// VM went away) gives the slot back, or stops the wait for one.
    slots: HashMap<u64, SlotHold>,
    /// The VM's full scans in progress, with what they were answered.
    scans: HashMap<u64, FullScan>,
    /// Files whose shared scan by another VM stalled or failed come back
    /// here, to be scanned from this VM's own content.
    rescan_tx: mpsc::Sender<FileTask>,
    rescan_rx: mpsc::Receiver<FileTask>,
    /// The sequence numbers of files whose scan task ended (answered,
    /// timed out, failed): one whose content is still open is dropped from
    /// `files`, so that it no longer holds one of the VM's slots.
    ended_tx: mpsc::UnboundedSender<u64>,
    ended_rx: mpsc::UnboundedReceiver<u64>,
    /// Files given up while their content was still open, with `true`
    /// for one cut at the scan's byte limit. The next chunk of a file
    /// given up is dropped (the guest may be slow rather than hostile), a
    /// later one ends the session; a cut file's chunks are all dropped
    /// until its last. At most [`MAX_ABANDONED`].
    abandoned: std::collections::VecDeque<(u64, bool)>,
    /// Files waiting on another VM's scan (counted in the in-flight limit).
    following: Arc<std::sync::atomic::AtomicUsize>,
    /// Content bytes this session may have buffered towards its scans
    /// (`server.max_pending_content_bytes`), one permit a byte.
    budget: Arc<Semaphore>,
}

/// Files given up with their content open that one session remembers.
const MAX_ABANDONED: usize = 1024;

/// The largest content chunk (`ContentChunk` in `shim.proto`).
const MAX_CHUNK: usize = 4 << 20;

/// Tells the session when a file's scan task ends, however it ends (a
/// panic included).
struct Ended(mpsc::UnboundedSender<u64>, u64);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

/// Counts a file waiting on another VM's scan for as long as it waits.
struct Following(Arc<std::sync::atomic::AtomicUsize>);

impl Following {
    fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Following(count)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Full scans one session may run at once.
const MAX_SCANS_PER_SESSION: usize = 4;

/// The tally of a full scan, shared with its files' tasks.
type SharedTally = Arc<std::sync::Mutex<Tally>>;

/// A full scan's claim on one of the appliance's full-scan slots.
enum SlotHold {
    /// Granted at once: the slot is held here.
    Held { _permit: OwnedSemaphorePermit },
    /// Queued: a task waits for the slot and then holds it until this
    /// sender is dropped.
    Queued { _release: oneshot::Sender<()> },
}

impl Session {
    async fn run(&mut self, inbound: &mut Streaming<GuestMessage>) -> Result<(), Status> {
        let mut shutdown = self.app.shutdown_watch();
        let mut draining = *shutdown.borrow();
        loop {
            if draining && self.files.is_empty() {
                info!("session closed for shutdown");
                return Ok(());
            }
            let next = tokio::select! {
                m = inbound.message() => m,
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    continue;
                }
                Some(task) = self.rescan_rx.recv() => {
                    let max = self.app.config.server.max_inflight_per_vm;
                    if self.files.contains_key(&task.seq) || self.files.len() >= max {
                        // The guest reused the number, or is at its limit.
                        let v = simple_verdict(
                            task.seq,
                            VerdictKind::Error,
                            NotScannedReason::Unspecified,
                            "appliance busy: too many files in flight for this VM",
                            &self.app.signatures.version(),
                        );
                        task.answer(v, "flight").await;
                    } else {
                        self.start_scan(task.seq, task.size, task).await?;
                    }
                    continue;
                }
                Some(seq) = self.ended_rx.recv() => {
                    // A task that gave up (a content time-out) no longer
                    // reads its channel: the file's slot is free.
                    if self.files.get(&seq).is_some_and(|f| f.tx.is_closed())
                        && let Some(f) = self.files.remove(&seq)
                    {
                        if self.abandoned.len() >= MAX_ABANDONED {
                            self.abandoned.pop_front();
                        }
                        self.abandoned.push_back((seq, f.drained));
                    }
                    continue;
                }
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(status) => {
                    return match refused(status) {
                        Some(refusal) => Err(refusal),
                        None => Ok(()),
                    };
                }
            };
            match message.msg {
                Some(guest_message::Msg::Event(ev)) if draining => {
                    let v = simple_verdict(
                        ev.seq,
                        VerdictKind::Error,
                        NotScannedReason::Unspecified,
                        "appliance shutting down",
                        &self.app.signatures.version(),
                    );
                    self.verdict_now(v).await?;
                }
                Some(guest_message::Msg::Event(ev)) => self.on_event(ev).await?,
                Some(guest_message::Msg::Chunk(chunk)) => self.on_chunk(chunk).await?,
                Some(guest_message::Msg::ContentError(err)) => {
                    if let Some(f) = self.files.remove(&err.seq) {
                        let _ = f.tx.send(FileInput::Failed(err.reason)).await;
                    }
                }
                Some(guest_message::Msg::FullScanRequest(req)) => {
                    if self.scans.len() >= MAX_SCANS_PER_SESSION
                        && !self.scans.contains_key(&req.full_scan_id)
                    {
                        return Err(Status::resource_exhausted(format!(
                            "at most {MAX_SCANS_PER_SESSION} full scans at once per VM"
                        )));
                    }
                    let max_path = self.app.config.server.max_path_len;
                    if req.roots.len() > fullscan::MAX_ROOTS
                        || req.roots.iter().any(|r| r.len() > max_path)
                        || req.scan_token.len() > 64
                    {
                        return Err(Status::invalid_argument(format!(
                            "a full scan names at most {} roots of at most {max_path} bytes",
                            fullscan::MAX_ROOTS
                        )));
                    }
                    let order = self
                        .app
                        .registry
                        .take_order(&self.vm.vm_id, &req.scan_token);
                    let recheck = order
                        .as_ref()
                        .map(|o| o.recheck.clone())
                        .unwrap_or_default();
                    self.scans.insert(
                        req.full_scan_id,
                        FullScan {
                            order,
                            roots: req.roots,
                            started_at_us: giva_proto::now_us(),
                            tally: Arc::new(std::sync::Mutex::new(Tally::new(&recheck))),
                        },
                    );
                    self.on_full_scan_request(req.full_scan_id)
                }
                Some(guest_message::Msg::FullScanFinished(done)) => {
                    self.slots.remove(&done.full_scan_id);
                    // A scan that was never asked for has nothing to record.
                    if let Some(scan) = self.scans.remove(&done.full_scan_id) {
                        if done.absent_paths.len() > fullscan::MAX_RECHECK {
                            return Err(Status::invalid_argument(format!(
                                "at most {} absent paths",
                                fullscan::MAX_RECHECK
                            )));
                        }
                        let record = fullscan::record(&scan, &done, giva_proto::now_us());
                        self.report_scan(record).await;
                    }
                }
                Some(guest_message::Msg::Report(r)) => {
                    if r.fail_open_decisions + r.fail_closed_decisions + r.events_dropped > 0 {
                        let mut ev = self.app.reporter.new_event(MgrEventKind::ShimFallback);
                        self.fill_vm(&mut ev);
                        ev.detail = format!(
                            "fail_open={} fail_closed={} dropped={}",
                            r.fail_open_decisions, r.fail_closed_decisions, r.events_dropped
                        );
                        warn!(detail = %ev.detail, "shim decided without verdicts");
                        self.app.reporter.report(ev).await;
                    }
                }
                Some(guest_message::Msg::Open(_)) => {
                    return Err(Status::invalid_argument("`open` sent twice on one session"));
                }
                None => return Err(Status::invalid_argument("empty message")),
            }
        }
    }

    /// Reports a full scan's record; one that proves the VM clean also
    /// clears the paths it re-read.
    async fn report_scan(&self, record: ScanSummary) {
        info!(
            files = record.files_scanned,
            infected = record.files_infected,
            failed = record.files_failed,
            skipped = record.files_skipped,
            ordered_by = %record.ordered_by,
            blockers = ?record.blockers,
            "full scan finished"
        );
        if record.blockers.is_empty() {
            self.app
                .registry
                .forget_detections(&self.vm.vm_id, &record.rechecked);
        }
        let mut ev = self.app.reporter.new_event(MgrEventKind::ScanCompleted);
        self.fill_vm(&mut ev);
        ev.detail = if record.blockers.is_empty() {
            format!("{}-ordered full scan found the VM clean", record.ordered_by)
        } else {
            format!("does not release: {}", record.blockers.join("; "))
        };
        ev.scan = Some(record);
        self.app.reporter.report(ev).await;
    }

    /// Reports the ordered scans the session leaves unfinished.
    async fn cut_off_scans(&mut self) {
        let scans: Vec<FullScan> = self.scans.drain().map(|(_, s)| s).collect();
        for scan in scans.iter().filter(|s| s.order.is_some()) {
            self.report_scan(fullscan::cut_off(scan, giva_proto::now_us()))
                .await;
        }
    }

    fn fill_vm(&self, ev: &mut giva_proto::manager::Event) {
        ev.vm_id = self.vm.vm_id.clone();
        ev.vm_name = self.vm.name.clone();
    }

    async fn send(&self, m: appliance_message::Msg) -> Result<(), Status> {
        self.tx
            .send(msg(m))
            .await
            .map_err(|_| Status::cancelled("session closed"))
    }

    async fn verdict_now(&self, v: Verdict) -> Result<(), Status> {
        count_verdict(&self.app.stats, &v);
        self.send(appliance_message::Msg::Verdict(v)).await
    }

    /// [`verdict_now`](Self::verdict_now) for a file of a full scan,
    /// counted in its tally first.
    async fn scan_verdict_now(
        &self,
        v: Verdict,
        tally: Option<&SharedTally>,
        path: &str,
    ) -> Result<(), Status> {
        if let Some(t) = tally {
            t.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(path, &v, None);
        }
        self.verdict_now(v).await
    }

    async fn on_event(&mut self, ev: FileEvent) -> Result<(), Status> {
        self.app.stats.events.inc();
        let limits = &self.app.config.server;
        if ev.path.is_empty() {
            return Err(Status::invalid_argument(format!(
                "event {}: empty path",
                ev.seq
            )));
        }
        if ev.path.len() > limits.max_path_len {
            return Err(Status::invalid_argument(format!(
                "event {}: path is {} bytes; at most {}",
                ev.seq,
                ev.path.len(),
                limits.max_path_len
            )));
        }
        let kind = EventKind::try_from(ev.kind)
            .ok()
            .filter(|k| *k != EventKind::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument(format!("event {}: unknown kind {}", ev.seq, ev.kind))
            })?;
        let identity = ev.identity.as_ref().ok_or_else(|| {
            Status::invalid_argument(format!("event {}: no file identity", ev.seq))
        })?;
        if self.files.contains_key(&ev.seq) {
            return Err(Status::invalid_argument(format!(
                "event {}: sequence number already in flight",
                ev.seq
            )));
        }
        let version = self.app.signatures.version();
        // A file of a full scan is counted in that scan's tally, by every
        // answer it gets from here on.
        let tally = (kind == EventKind::FullScanItem)
            .then(|| self.scans.get(&ev.full_scan_id).map(|s| s.tally.clone()))
            .flatten();
        if let Some(t) = &tally {
            t.lock().unwrap_or_else(|e| e.into_inner()).begin();
        }
        let in_flight = self.files.len() + self.following.load(Ordering::Relaxed);
        if in_flight >= limits.max_inflight_per_vm {
            let v = simple_verdict(
                ev.seq,
                VerdictKind::Error,
                NotScannedReason::Unspecified,
                format!("appliance busy: {in_flight} files already in flight for this VM"),
                &version,
            );
            return self.scan_verdict_now(v, tally.as_ref(), &ev.path).await;
        }
        match self.policy.check(kind, &ev.path, identity.size) {
            Ok(()) => {}
            Err(skip) => {
                let (reason, text) = match skip {
                    Skip::Excluded | Skip::KindOff => {
                        (NotScannedReason::Excluded, "excluded by policy")
                    }
                    Skip::TooLarge => (NotScannedReason::FileTooLarge, "file too large"),
                };
                if skip == Skip::TooLarge {
                    let mut e = self.app.reporter.new_event(MgrEventKind::LimitHit);
                    self.fill_vm(&mut e);
                    e.path = ev.path.clone();
                    e.detail = format!("file too large: {} bytes", identity.size);
                    self.app.reporter.report(e).await;
                }
                let v = simple_verdict(ev.seq, VerdictKind::NotScanned, reason, text, &version);
                return self.scan_verdict_now(v, tally.as_ref(), &ev.path).await;
            }
        }
        let loaded = self.app.signatures.current();
        // Verdicts by file identity: this VM's own, and, for a VM of an
        // image, the image's, which only its template writes. The event's
        // own image id is the guest's word and is not used.
        let keyed = |scope: &str| {
            file_key(
                scope,
                &ev.path,
                identity.size,
                identity.mtime_ns,
                identity.file_id,
            )
        };
        let own_key = keyed(&format!("vm:{}", self.vm.vm_id));
        let shared_key = (self.policy.share_cache() && !self.vm.image_id.is_empty())
            .then(|| keyed(&format!("image:{}", self.vm.image_id)));
        let key = match shared_key {
            Some(k) if self.template => k,
            _ => own_key,
        };
        let task = FileTask {
            started: std::time::Instant::now(),
            policy: self.policy.clone(),
            app: self.app.clone(),
            vm: self.vm.clone(),
            out: self.tx.clone(),
            seq: ev.seq,
            path: ev.path.clone(),
            size: identity.size,
            blocking: ev.blocking,
            priority: if ev.blocking {
                Priority::OnAccess
            } else if kind == EventKind::FullScanItem {
                Priority::Background
            } else {
                Priority::OnDemand
            },
            key,
            leader: None,
            tally,
            digest: None,
            member: Vec::new(),
            gap: None,
        };
        // 1. The cache: this VM's own verdicts, then its template's, so
        //    clones of one image share verdicts without content.
        for k in std::iter::once(own_key).chain(shared_key) {
            if let Some(cached) = self.app.cache.get(&k, loaded.epoch) {
                self.app.stats.cache_hits.inc();
                task.answer_cached(&cached, loaded.database.version(), "cache")
                    .await;
                return Ok(());
            }
        }
        // 2. The template is scanning the same file now: wait for that
        //    verdict. (A clone leads only flights of its own.)
        let joined = match shared_key.filter(|_| !self.template) {
            Some(shared) => match self.app.flights.follow(shared) {
                Some(slot) => Join::Follower(slot),
                None => self.app.flights.join(key),
            },
            None => self.app.flights.join(key),
        };
        let task = match joined {
            Join::Follower(slot) => {
                self.app.stats.cache_hits.inc();
                let following = Following::new(self.following.clone());
                let rescan = self.rescan_tx.clone();
                tokio::spawn(
                    async move {
                        let _following = following;
                        task.follow(slot, rescan).await;
                    }
                    .in_current_span(),
                );
                return Ok(());
            }
            Join::Leader(leader) => FileTask {
                leader: Some(leader),
                ..task
            },
        };
        // 3. Scan it: ask for the content.
        self.app.stats.cache_misses.inc();
        self.start_scan(ev.seq, identity.size, task).await
    }

    /// Opens the content stream of a file and hands it to its scan task.
    /// Past the policy's scan byte limit the file is not read: only the
    /// bytes up to one past the limit are asked for.
    async fn start_scan(&mut self, seq: u64, size: u64, task: FileTask) -> Result<(), Status> {
        let (tx, rx) = mpsc::channel(CHUNK_BUFFER);
        let limit = task.policy.limits().max_scan_bytes;
        let end = if limit == 0 {
            size
        } else {
            size.min(limit.saturating_add(1))
        };
        self.files.insert(
            seq,
            InFlight {
                tx,
                next_offset: 0,
                size,
                end,
                drained: false,
            },
        );
        self.app.stats.inflight.inc();
        self.abandoned.retain(|&(s, _)| s != seq);
        let ended = Ended(self.ended_tx.clone(), seq);
        tokio::spawn(
            async move {
                let _ended = ended;
                task.run(rx).await;
            }
            .in_current_span(),
        );
        self.send(appliance_message::Msg::ContentRequest(ContentRequest {
            seq,
            offset: 0,
            // 0: to the end of the file.
            length: if end < size { end } else { 0 },
        }))
        .await
    }

    async fn on_chunk(&mut self, chunk: ContentChunk) -> Result<(), Status> {
        self.app
            .stats
            .content_received
            .inc_by(chunk.data.len() as u64);
        if chunk.data.len() > MAX_CHUNK {
            return Err(Status::resource_exhausted(format!(
                "a content chunk holds at most {MAX_CHUNK} bytes, not {}",
                chunk.data.len()
            )));
        }
        let Some(file) = self.files.get_mut(&chunk.seq) else {
            if let Some(i) = self.abandoned.iter().position(|&(s, _)| s == chunk.seq) {
                // The first late chunk of a file given up, or any chunk
                // of a file cut at the limit until its last: dropped.
                if !self.abandoned[i].1 || chunk.last {
                    self.abandoned.remove(i);
                }
                return Ok(());
            }
            return Err(Status::invalid_argument(format!(
                "content for sequence number {} that has no content request open",
                chunk.seq
            )));
        };
        if chunk.offset != file.next_offset {
            return Err(Status::invalid_argument(format!(
                "content of {} out of order: offset {} where {} was expected",
                chunk.seq, chunk.offset, file.next_offset
            )));
        }
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if end > file.size {
            return Err(Status::invalid_argument(format!(
                "content of {} goes beyond its declared size of {} bytes",
                chunk.seq, file.size
            )));
        }
        file.next_offset = end;
        if file.drained {
            // Past the bytes asked for: dropped until the shim's last chunk.
            if chunk.last {
                self.files.remove(&chunk.seq);
            }
            return Ok(());
        }
        let mut data = bytes::Bytes::from(chunk.data);
        let cut = file.end < file.size && end >= file.end;
        if cut {
            // The bytes asked for are here (a shim that sent more than
            // asked has the rest cut and dropped).
            data.truncate(data.len() - (end - file.end) as usize);
        }
        // The session reads no further until the bytes have a place in
        // its budget: a shim that sends faster than its files are scanned
        // is held by HTTP/2's flow control, not by the appliance's memory.
        let content = Content::hold(data, &self.budget, &self.app).await;
        if cut {
            let tx = file.tx.clone();
            if chunk.last {
                self.files.remove(&chunk.seq);
            } else {
                file.drained = true;
            }
            let _ = tx.send(FileInput::Cut(content)).await;
            return Ok(());
        }
        if chunk.last {
            let f = self.files.remove(&chunk.seq);
            if let Some(f) = f {
                let input = if end == f.size {
                    FileInput::Last(content)
                } else {
                    FileInput::Failed(format!(
                        "file ended at {end} bytes but its declared size is {}; it changed while being read",
                        f.size
                    ))
                };
                let _ = f.tx.send(input).await;
            }
        } else if file.tx.send(FileInput::Chunk(content)).await.is_err() {
            // The scan task already gave up (time-out); forget the file.
            self.files.remove(&chunk.seq);
        }
        Ok(())
    }

    fn on_full_scan_request(&mut self, id: u64) {
        let sem = self.app.full_scan_slots.clone();
        match sem.clone().try_acquire_owned() {
            Ok(permit) => {
                self.slots.insert(id, SlotHold::Held { _permit: permit });
                let _ = self
                    .tx
                    .try_send(msg(appliance_message::Msg::FullScanSlot(FullScanSlot {
                        full_scan_id: id,
                        granted: true,
                        queue_position: 0,
                    })));
            }
            Err(_) => {
                // A task queues for the slot and holds it until the session
                // drops the entry's sender: when the shim reports the scan
                // finished, or when the session ends. (Waiting for the
                // outbound stream to close instead kept a departed VM's
                // slot until the transport noticed, about 10 s.)
                let (hold, mut release) = oneshot::channel::<()>();
                self.slots.insert(id, SlotHold::Queued { _release: hold });
                let tx = self.tx.clone();
                let app = self.app.clone();
                let slot = move |granted, queue_position| {
                    msg(appliance_message::Msg::FullScanSlot(FullScanSlot {
                        full_scan_id: id,
                        granted,
                        queue_position,
                    }))
                };
                tokio::spawn(async move {
                    let acquire = sem.acquire_owned();
                    tokio::pin!(acquire);
                    // Take a place in the queue before telling the VM its
                    // position: the semaphore serves waiters in the order
                    // they first asked, and a VM answered after this one
                    // must not be served before it.
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await;
                    let permit = match first {
                        Poll::Ready(permit) => permit,
                        Poll::Pending => {
                            let waiting = app.full_scan_waiting.fetch_add(1, Ordering::Relaxed) + 1;
                            let _ = tx
                                .try_send(slot(false, u32::try_from(waiting).unwrap_or(u32::MAX)));
                            let permit = tokio::select! {
                                permit = &mut acquire => Some(permit),
                                _ = &mut release => None,
                            };
                            app.full_scan_waiting.fetch_sub(1, Ordering::Relaxed);
                            match permit {
                                Some(permit) => permit,
                                None => return,
                            }
                        }
                    };
                    let Ok(permit) = permit else { return };
                    if tx.send(slot(true, 0)).await.is_ok() {
                        tokio::select! {
                            _ = &mut release => {}
                            _ = tx.closed() => {}
                        }
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// What a broken inbound stream means. A message that could not be
/// decoded (too large, malformed) is refused with a status the guest sees
/// (`Some`); a peer that went away needs no answer (`None`).
fn refused(status: Status) -> Option<Status> {
    use tonic::Code;
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => Some(Status::resource_exhausted(format!(
            "message refused: {}",
            status.message()
        ))),
        Code::InvalidArgument | Code::Internal => Some(Status::invalid_argument(format!(
            "message refused: {}",
            status.message()
        ))),
        _ => {
            debug!(error = %status, "session stream broke");
            None
        }
    }
}

fn count_verdict(stats: &Stats, v: &Verdict) {
    stats.verdict(match VerdictKind::try_from(v.kind) {
        Ok(VerdictKind::Allow) => verdict::ALLOW,
        Ok(VerdictKind::Deny) => verdict::DENY,
        Ok(VerdictKind::NotScanned) => verdict::NOT_SCANNED,
        _ => verdict::ERROR,
    });
}

/// The result of a container whose bytes could not be kept: its own scan
/// stands, and its inside is not scanned.
fn unkept(result: giva_engine::ScanResult, why: String) -> giva_content::Report {
    let mut result = result;
    let gap = giva_content::Gap {
        path: Vec::new(),
        limit: giva_engine::Limit::Unreadable,
        detail: format!("its content could not be kept to open it: {why}"),
    };
    if !result.is_infected() {
        result.outcome = giva_engine::Outcome::LimitExceeded(gap.limit);
    }
    giva_content::Report {
        result,
        found: Vec::new(),
        gaps: vec![gap],
        members: 0,
        cached: 0,
    }
}

/// Scans one file's content as it arrives and answers with its verdict.
struct FileTask {
    /// When the event arrived.
    started: std::time::Instant,
    policy: Arc<crate::policy::Policy>,
    app: Arc<Appliance>,
    vm: VmIdentity,
    out: SessionSender,
    seq: u64,
    path: String,
    size: u64,
    blocking: bool,
    /// Pool priority of its scan jobs.
    priority: Priority,
    /// Its key in the verdict cache.
    key: Key,
    /// Set when other VMs wait for this scan's verdict.
    leader: Option<Leader>,
    /// The tally of the full scan this file belongs to.
    tally: Option<SharedTally>,
    /// SHA-256 of the content, once all of it was read.
    digest: Option<[u8; 32]>,
    /// The layer inside the file where its detection was made
    /// (`["mid.zip", "p.exe"]`); empty for the file itself.
    member: Vec<String>,
    /// What inside the file was not scanned, for the verdict's reason.
    gap: Option<String>,
}

/// Counts a file in flight for as long as it lives.
struct InflightGuard(Arc<Appliance>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.stats.inflight.dec();
    }
}

impl FileTask {
    async fn run(mut self, mut rx: mpsc::Receiver<FileInput>) {
        let _inflight = InflightGuard(self.app.clone());
        let loaded = self.app.signatures.current();
        let version = loaded.database.version().to_string();
        let opts = scan_options(self.policy.limits());
        let limits = content_limits(self.policy.limits(), self.app.spool.clone());
        let scanner = loaded.scanners.take(opts.clone(), Some(self.size));
        // The scanner, a digest of the content and what is kept of it for
        // its layers travel together between pool jobs, one chunk at a
        // time.
        let whole = loaded.engine.needs_input();
        let mut state = Some((scanner, Sha256::new(), Keeper::new(whole)));
        let timeout = Duration::from_secs(self.app.config.server.content_timeout_secs.max(1));
        // The transfer stopped at the scan's byte limit.
        let mut cut = false;
        let failure = loop {
            if let Some(l) = &self.leader {
                l.waiting_for_content(true);
            }
            let input = match tokio::time::timeout(timeout, rx.recv()).await {
                Ok(Some(input)) => input,
                Ok(None) => return, // the session ended; nobody to answer
                Err(_) => break Some(format!("no content for {} s", timeout.as_secs())),
            };
            if let Some(l) = &self.leader {
                l.waiting_for_content(false);
            }
            let (Content { data, _held }, last) = match input {
                FileInput::Chunk(c) => (c, false),
                FileInput::Last(c) => (c, true),
                FileInput::Cut(c) => {
                    cut = true;
                    (c, true)
                }
                FileInput::Failed(reason) => break Some(reason),
            };
            self.app.stats.bytes_scanned.inc_by(data.len() as u64);
            let Some((mut s, mut digest, mut keeper)) = state.take() else {
                break Some("scanner lost".to_string());
            };
            let keep_limits = limits.clone();
            let job = self
                .app
                .pool
                .submit(&self.vm.vm_id, self.priority, move || {
                    // The first bytes decide the file's type, and so
                    // which typed signatures apply (those that matched
                    // before are held until then).
                    if let Some(file_type) = keeper.push(&data, last, &keep_limits) {
                        s.set_file_type(file_type);
                    }
                    s.feed(&data);
                    digest.update(&data);
                    (s, digest, keeper)
                });
            match job {
                Err(busy) => break Some(format!("appliance busy: {busy}")),
                Ok(handle) => match handle.await {
                    Ok(next) => state = Some(next),
                    Err(e) => break Some(format!("scan job failed: {e:?}")),
                },
            }
            if last {
                break None;
            }
        };
        let verdict = match (failure, state) {
            (None, Some((mut scanner, digest, keeper))) => {
                // The file's own bytes first; then, for a container, its
                // layers, from what was kept.
                let decomposer = giva_content::Decomposer::new(loaded.engine.clone(), opts, limits)
                    .with_cache(self.app.cache.clone(), loaded.epoch);
                let name = crate::layers::base_name(&self.path).to_string();
                let started = self.started;
                let finished = self
                    .app
                    .pool
                    .submit(&self.vm.vm_id, self.priority, move || {
                        let kept = keeper.take();
                        // An executable's structure is known once it is
                        // whole: its executable offsets run over it again.
                        if let Some(Ok(bytes)) = &kept
                            && let Some(exe) =
                                giva_content::typed_options(&Default::default(), bytes).exe
                            && scanner.set_exe_info(exe)
                        {
                            scanner.feed_exe(bytes);
                        }
                        // The checks over the whole file (PCRE, byte-compare)
                        // run on what was kept.
                        let result = match &kept {
                            Some(Ok(bytes)) if whole => scanner.finish_with(bytes),
                            _ => scanner.finish(),
                        };
                        let report = match kept {
                            None => None,
                            Some(Ok(bytes)) => {
                                Some(decomposer.scan_inside(&bytes, &name, result.clone(), started))
                            }
                            Some(Err(e)) => Some(unkept(result.clone(), e)),
                        };
                        (result, report, digest.finalize(), scanner)
                    });
                // The result as scanned (what the cache keeps, for every
                // policy) and as this policy answers it (a limit may be an
                // alert).
                let (result, answered, digest) = match finished {
                    Ok(h) => match h.await {
                        Ok((result, report, digest, scanner)) => {
                            loaded.scanners.give(scanner);
                            let (result, answered) = match report {
                                Some(r) => {
                                    let scanned = r.result.clone();
                                    let r = self.policy.alerts(r);
                                    self.note_layers(&r);
                                    (scanned, r.result)
                                }
                                None => {
                                    let answered = self
                                        .policy
                                        .alerts(giva_content::Report::of(result.clone()))
                                        .result;
                                    (result, answered)
                                }
                            };
                            (result, answered, digest)
                        }
                        Err(e) => {
                            let v = simple_verdict(
                                self.seq,
                                VerdictKind::Error,
                                NotScannedReason::Unspecified,
                                format!("scan job failed: {e:?}"),
                                &version,
                            );
                            return self.answer(v, "scan").await;
                        }
                    },
                    Err(busy) => {
                        let v = simple_verdict(
                            self.seq,
                            VerdictKind::Error,
                            NotScannedReason::Unspecified,
                            format!("appliance busy: {busy}"),
                            &version,
                        );
                        return self.answer(v, "scan").await;
                    }
                };
                let cached = crate::scan::cacheable(&result, self.member.clone());
                // A digest of the part read is not the file's.
                let digest: Option<[u8; 32]> = (!cut).then(|| digest.into());
                self.digest = digest;
                if let Some(c) = &cached {
                    self.app.cache.insert(self.key, loaded.epoch, c.clone());
                    if let Some(d) = &digest {
                        self.app
                            .cache
                            .insert(content_key(d), loaded.epoch, c.clone());
                    }
                }
                if let Some(leader) = self.leader.take() {
                    leader.complete(cached);
                }
                let deny = self.policy.deny_on_detection();
                let mut v = verdict_for(self.seq, &answered, deny, &version);
                if let Some(gap) = self.gap.as_ref().filter(|_| !answered.is_infected()) {
                    v.reason = format!("{}: {gap}", v.reason);
                }
                if answered.is_infected() {
                    self.report_detection(&v, &self.member, deny && self.blocking, &version)
                        .await;
                }
                v
            }
            (failure, _) => {
                let reason = failure.unwrap_or_else(|| "scanner lost".to_string());
                warn!(seq = self.seq, path = %self.path, %reason, "no verdict for file");
                simple_verdict(
                    self.seq,
                    VerdictKind::Error,
                    NotScannedReason::Unspecified,
                    reason,
                    &version,
                )
            }
        };
        self.answer(verdict, "scan").await;
    }

    /// Waits for another VM's scan of the same file and answers from it.
    /// If that scan fails, or its VM stops sending the content for longer
    /// than [`crate::flight::STALL`], the file goes back to this VM's
    /// session through `rescan` and is scanned from its own content: one
    /// guest cannot make another's verdict wait or fail.
    async fn follow(self, slot: crate::flight::Slot, rescan: mpsc::Sender<FileTask>) {
        let timeout = Duration::from_secs(self.app.config.server.content_timeout_secs.max(1) * 2);
        let version = self.app.signatures.version();
        let why = match tokio::time::timeout(timeout, crate::flight::wait(slot)).await {
            Ok(Waited::Done(Some(cached))) => {
                return self.answer_cached(&cached, &version, "flight").await;
            }
            Ok(Waited::Done(None)) => "failed",
            Ok(Waited::Stalled) => "stalled",
            Err(_) => {
                let v = simple_verdict(
                    self.seq,
                    VerdictKind::Error,
                    NotScannedReason::Unspecified,
                    "the scan of this file by another VM did not finish; try again",
                    &version,
                );
                return self.answer(v, "flight").await;
            }
        };
        debug!(seq = self.seq, path = %self.path, why, "shared scan {why}; scanning this VM's own copy");
        self.app.stats.flight_fallback(why);
        if let Err(mpsc::error::SendError(task)) = rescan.send(self).await {
            // The session ended: nobody to answer.
            drop(task);
        }
    }

    /// Answers from a cached verdict, reporting a detection as a scan would.
    async fn answer_cached(&self, cached: &CachedVerdict, version: &str, source: &str) {
        let deny = self.policy.deny_on_detection();
        let mut v = match cached {
            CachedVerdict::Clean => simple_verdict(
                self.seq,
                VerdictKind::Allow,
                NotScannedReason::Unspecified,
                "",
                version,
            ),
            CachedVerdict::Infected(i) => {
                let result = giva_engine::ScanResult {
                    detections: i.detections.clone(),
                    outcome: Outcome::Infected,
                    bytes_scanned: 0,
                    allowed: false,
                };
                verdict_for(self.seq, &result, deny, version)
            }
        };
        v.from_cache = true;
        if matches!(cached, CachedVerdict::Infected(_)) {
            let member = match cached {
                CachedVerdict::Infected(i) => i.member.as_slice(),
                CachedVerdict::Clean => &[],
            };
            self.report_detection(&v, member, deny && self.blocking, version)
                .await;
        }
        self.answer(v, source).await;
    }

    /// Records the detection in the outbox (and notifies the manager)
    /// before the verdict goes back to the guest.
    /// `member` is the layer of the detection inside the file (empty for
    /// the file itself).
    async fn report_detection(&self, v: &Verdict, member: &[String], denied: bool, version: &str) {
        let names: Vec<String> = v.detections.iter().map(|d| d.signature.clone()).collect();
        info!(path = %self.path, signatures = ?names, "detection");
        self.app.registry.note_detection(&self.vm.vm_id, &self.path);
        let mut ev = self.app.reporter.new_event(MgrEventKind::Detection);
        ev.vm_id = self.vm.vm_id.clone();
        ev.vm_name = self.vm.name.clone();
        ev.path = self.path.clone();
        if !member.is_empty() {
            ev.member = giva_content::Report::joined(crate::layers::base_name(&self.path), member);
        }
        ev.signatures = names;
        ev.action = if denied {
            Action::Denied
        } else {
            Action::Reported
        } as i32;
        ev.database_version = version.to_string();
        self.app
            .reporter
            .report_with(ev, self.policy.notify_immediately())
            .await;
    }

    /// Keeps what the layers' walk says for the verdict and the event, and
    /// counts it.
    fn note_layers(&mut self, r: &giva_content::Report) {
        let name = crate::layers::base_name(&self.path);
        self.app.stats.content_members.inc_by(r.members);
        for g in &r.gaps {
            self.app.stats.content_gap(g.limit.name());
        }
        self.app.stats.content_members_cached.inc_by(r.cached);
        self.member = r.found.first().map(|f| f.path.clone()).unwrap_or_default();
        self.gap = r.gaps.first().map(|g| {
            format!(
                "{} ({})",
                giva_content::Report::joined(name, &g.path),
                g.detail
            )
        });
    }

    async fn answer(&self, v: Verdict, source: &str) {
        // Counted before it is sent: the shim may end the scan as soon as
        // it has the last verdict.
        if let Some(t) = &self.tally {
            t.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(&self.path, &v, self.digest);
        }
        count_verdict(&self.app.stats, &v);
        self.app.stats.latency(source, self.started.elapsed());
        let _ = self.out.send(msg(appliance_message::Msg::Verdict(v))).await;
    }
}
