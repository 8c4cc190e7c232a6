//! `giva-shim load`: the load generator that acts as many guests.
//!
//! It simulates N VMs instant-cloned from one image directory: every VM has
//! its own id (`load-vm-0001`, ...) and the same image id, and sees the same
//! files with the same identities. It runs in two phases:
//!
//! 1. **Registration storm**: all N VMs register at once (bounded by
//!    `register_concurrency`), as a pool of instant clones coming up.
//! 2. **Opens**: `concurrency` VMs at a time open a session and open
//!    `opens_per_vm` of the image's files (blocking OPEN events, with
//!    `exec_percent` of them EXEC), streaming content from the image
//!    directory when the appliance asks for it.
//!
//! It reports events/s, verdict latency percentiles, content bytes sent,
//! cache hits, detections and errors. It is bounded: it stops issuing
//! events at `duration` and gives up on whatever is still in flight shortly
//! after.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ContentError, EventKind, FileEvent, FileIdentity, GuestMessage, RegisterRequest, SessionOpen,
    VerdictKind, VmIdentity, appliance_message, guest_message,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tonic::transport::Channel;

use crate::client::{self, ClientError};

/// Options of a load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The appliance's URL.
    pub appliance: String,
    /// How many VMs to simulate.
    pub vms: usize,
    /// The image directory every VM is cloned from.
    pub image: PathBuf,
    /// The image id all VMs share.
    pub image_id: String,
    /// Files each VM opens (default: each file of the image once).
    pub opens_per_vm: Option<usize>,
    /// Share of the opens sent as EXEC events, in percent.
    pub exec_percent: u8,
    /// VMs opening files at once.
    pub concurrency: usize,
    /// VMs registering at once during the storm.
    pub register_concurrency: usize,
    /// Events in flight per VM.
    pub inflight_per_vm: usize,
    /// gRPC connections the VMs share.
    pub connections: usize,
    /// Stop issuing events after this long.
    pub duration: Duration,
    /// Open loop: events per second offered in all, spread evenly over
    /// every VM, all of them at once (`concurrency` is then unused). A
    /// verdict's latency counts from when its event was sent, or from when
    /// it was due if it went out later than the timer's slack
    /// ([`TIMER_SLACK`]), so a generator or appliance that falls behind
    /// shows it. `None`: closed
    /// loop, each VM keeping `inflight_per_vm` events in flight.
    pub rate: Option<f64>,
    /// Prefix of the VM ids.
    pub vm_prefix: String,
    /// TLS for an `https://` appliance URL.
    pub tls: giva_proto::tls::ClientFiles,
    /// First run the image's template VM (`PREFIX-0000`) through every
    /// file, as a running parent VM would have been, before the clones
    /// come up. The appliance's inventory must name it the template.
    pub template: bool,
    /// The clone key (hex): each simulated VM gets a clone token for its
    /// id (as its customization step would hand it in), enrolls with it at
    /// the appliance, and connects with its own certificate on a
    /// connection of its own. The registration latency then counts the
    /// enrollment and the handshake.
    pub clone_key: Option<Vec<u8>>,
}

impl LoadConfig {
    /// Defaults for everything but the target.
    pub fn new(appliance: impl Into<String>, vms: usize, image: impl Into<PathBuf>) -> Self {
        LoadConfig {
            appliance: appliance.into(),
            vms,
            image: image.into(),
            image_id: "load-image".into(),
            opens_per_vm: None,
            exec_percent: 10,
            concurrency: 64,
            register_concurrency: 256,
            inflight_per_vm: 4,
            connections: 8,
            duration: Duration::from_secs(300),
            rate: None,
            vm_prefix: "load-vm".into(),
            tls: giva_proto::tls::ClientFiles::default(),
            template: false,
            clone_key: None,
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (microseconds); sorts them.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Percentiles {
            count: samples.len() as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1] as f64 / 1000.0,
        }
    }
}

/// The outcome of a load run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// VMs simulated.
    pub vms: u64,
    /// Regular files in the image.
    pub image_files: u64,
    /// Bytes in the image's files.
    pub image_bytes: u64,
    /// VMs registered.
    pub registered: u64,
    /// Registrations that failed.
    pub register_errors: u64,
    /// Wall time of the registration storm, in seconds.
    pub register_secs: f64,
    /// Registration latency.
    pub register_latency: Percentiles,
    /// File events sent.
    pub events: u64,
    /// Verdicts received.
    pub verdicts: u64,
    /// ALLOW verdicts.
    pub allow: u64,
    /// DENY verdicts.
    pub deny: u64,
    /// NOT_SCANNED verdicts.
    pub not_scanned: u64,
    /// ERROR verdicts.
    pub verdict_errors: u64,
    /// Verdicts with detections.
    pub detections: u64,
    /// Verdicts from the appliance's cache.
    pub cache_hits: u64,
    /// Content requests served.
    pub content_requests: u64,
    /// Content bytes sent (the template's included).
    pub content_bytes: u64,
    /// Of those, the template's.
    pub template_content_bytes: u64,
    /// Wall time of the template's pass, in seconds (0: none).
    pub template_secs: f64,
    /// Content bytes sent divided by the image's bytes (1.0 = the image
    /// was read once in all).
    pub content_per_image: f64,
    /// Session-level failures (stream refused or broken, no answer).
    pub errors: u64,
    /// Events abandoned without a verdict at the end.
    pub abandoned: u64,
    /// Wall time of the opens phase, in seconds.
    pub open_secs: f64,
    /// Verdicts per second in the opens phase.
    pub events_per_sec: f64,
    /// Events per second offered (open loop); 0: closed loop.
    pub offered_rate: f64,
    /// Verdict latency (event sent to verdict received).
    pub verdict_latency: Percentiles,
    /// True when the run hit its duration limit.
    pub hit_duration_limit: bool,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl LoadReport {
    /// The report as pretty-printed JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as text, one figure a line.
    pub fn text(&self) -> String {
        let p = |p: &Percentiles| {
            format!(
                "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
                p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            )
        };
        let mut s = String::new();
        s.push_str(&format!(
            "image: {} files, {} bytes\n",
            self.image_files, self.image_bytes
        ));
        s.push_str(&format!(
            "registration storm: {}/{} VMs in {:.3} s ({} errors); latency {}\n",
            self.registered,
            self.vms,
            self.register_secs,
            self.register_errors,
            p(&self.register_latency)
        ));
        s.push_str(&format!(
            "events: {} sent, {} verdicts in {:.3} s = {:.0} events/s{}\n",
            self.events,
            self.verdicts,
            self.open_secs,
            self.events_per_sec,
            if self.offered_rate > 0.0 {
                format!(" (offered: {:.0} events/s)", self.offered_rate)
            } else {
                String::new()
            }
        ));
        s.push_str(&format!("verdict latency: {}\n", p(&self.verdict_latency)));
        s.push_str(&format!(
            "verdicts: {} allow, {} deny, {} not scanned, {} error; {} with detections; {} from cache\n",
            self.allow, self.deny, self.not_scanned, self.verdict_errors, self.detections, self.cache_hits
        ));
        if self.template_secs > 0.0 {
            s.push_str(&format!(
                "template: every file in {:.3} s, {} content bytes\n",
                self.template_secs, self.template_content_bytes
            ));
        }
        s.push_str(&format!(
            "content: {} requests, {} bytes = {:.2}x the image\n",
            self.content_requests, self.content_bytes, self.content_per_image
        ));
        s.push_str(&format!(
            "errors: {} session, {} abandoned{}\n",
            self.errors,
            self.abandoned,
            if self.hit_duration_limit {
                " (stopped at the duration limit)"
            } else {
                ""
            }
        ));
        for e in &self.error_samples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }
}

/// Errors that stop a load run before it starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The image directory is unusable.
    #[error("image {path}: {reason}")]
    Image {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The appliance cannot be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
}

#[derive(Debug)]
struct ImageFile {
    path: PathBuf,
    guest_path: String,
    identity: FileIdentity,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    verdicts: AtomicU64,
    allow: AtomicU64,
    deny: AtomicU64,
    not_scanned: AtomicU64,
    verdict_errors: AtomicU64,
    detections: AtomicU64,
    cache_hits: AtomicU64,
    content_requests: AtomicU64,
    content_bytes: AtomicU64,
    errors: AtomicU64,
    abandoned: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    error_samples: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.error_samples.lock()
            && s.len() < 5
        {
            s.push(e);
        }
    }
}

fn load_image(dir: &PathBuf, image_id: &str) -> Result<Vec<ImageFile>, LoadError> {
    let bad = |reason: String| LoadError::Image {
        path: dir.clone(),
        reason,
    };
    let md = std::fs::metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !md.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let md = entry.metadata().map_err(|e| bad(e.to_string()))?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        files.push(ImageFile {
            path: entry.path().to_path_buf(),
            guest_path: format!("/{}", rel.to_string_lossy()),
            identity: crate::identity::from_metadata(&md, image_id),
        });
    }
    if files.is_empty() {
        return Err(bad("holds no regular files".into()));
    }
    Ok(files)
}

/// Runs the load. Returns when every VM is done or the duration is up.
///
/// # Errors
///
/// The image is unusable or the appliance cannot be reached at all.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    let files = Arc::new(load_image(&config.image, &config.image_id)?);
    let mut channels = Vec::new();
    for _ in 0..config.connections.clamp(1, 256) {
        channels.push(client::channel(&config.appliance, &config.tls).await?);
    }
    let started = Instant::now();
    let deadline = started + config.duration;
    let counters = Arc::new(Counters::default());
    let mut report = LoadReport {
        vms: config.vms as u64,
        image_files: files.len() as u64,
        image_bytes: files.iter().map(|f| f.identity.size).sum(),
        ..LoadReport::default()
    };

    let identity = |i: usize| VmIdentity {
        vm_id: format!("{}-{:04}", config.vm_prefix, i),
        name: format!("{}-{:04}", config.vm_prefix, i),
        image_id: config.image_id.clone(),
        os: "linux (simulated)".into(),
        agent_version: concat!("giva-shim-load/", env!("CARGO_PKG_VERSION")).into(),
        group: String::new(),
    };

    // Phase 0: the image's template, through every file, alone.
    let enrolling = config.clone_key.as_ref().map(|key| {
        Arc::new(Enrolling {
            key: key.clone(),
            anonymous: channels[0].clone(),
            url: config.appliance.clone(),
            ca: config.tls.ca.clone(),
            dir: std::env::temp_dir().join(format!("giva-load-{}", std::process::id())),
        })
    });
    if config.template {
        let t = Instant::now();
        let channel = match &enrolling {
            Some(e) => e.channel(&identity(0).vm_id).await?,
            None => channels[0].clone(),
        };
        let mut c = ShimServiceClient::new(channel.clone());
        let sid = c
            .register(RegisterRequest {
                vm: Some(identity(0)),
            })
            .await
            .map_err(|status| ClientError::Refused {
                call: "Register",
                status,
            })?
            .into_inner()
            .session_id;
        let template_counters = Arc::new(Counters::default());
        let vm = Vm {
            index: 0,
            session_id: sid,
            channel,
            files: files.clone(),
            counters: template_counters.clone(),
            opens: files.len(),
            exec_percent: 0,
            inflight: config.inflight_per_vm.max(1),
            pace: None,
            deadline,
        };
        if let Err(e) = vm.run().await {
            counters.error(format!("template: {e}"));
        }
        report.template_secs = t.elapsed().as_secs_f64();
        report.template_content_bytes = template_counters.content_bytes.load(Ordering::Relaxed);
    }

    // Phase 1: the registration storm.
    let sem = Arc::new(Semaphore::new(config.register_concurrency.max(1)));
    let mut regs = tokio::task::JoinSet::new();
    for i in 0..config.vms {
        let vm = identity(i + 1);
        let shared = channels[i % channels.len()].clone();
        let enrolling = enrolling.clone();
        let sem = sem.clone();
        regs.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let t = Instant::now();
            let channel = match &enrolling {
                Some(e) => match e.channel(&vm.vm_id).await {
                    Ok(c) => c,
                    Err(e) => {
                        return (
                            i,
                            Err(tonic::Status::unavailable(e.to_string())),
                            t.elapsed(),
                        );
                    }
                },
                None => shared,
            };
            let r = ShimServiceClient::new(channel.clone())
                .register(RegisterRequest { vm: Some(vm) })
                .await;
            (
                i,
                r.map(|r| (r.into_inner().session_id, channel)),
                t.elapsed(),
            )
        });
    }
    let mut sessions: Vec<(usize, String, Channel)> = Vec::with_capacity(config.vms);
    let mut reg_lat = Vec::with_capacity(config.vms);
    while let Some(r) = regs.join_next().await {
        match r {
            Ok((i, Ok((sid, channel)), t)) => {
                sessions.push((i, sid, channel));
                reg_lat.push(t.as_micros() as u64);
            }
            Ok((_, Err(status), _)) => {
                report.register_errors += 1;
                counters.error(format!("register: {status}"));
            }
            Err(e) => counters.error(format!("register task: {e}")),
        }
    }
    report.register_secs = started.elapsed().as_secs_f64();
    report.registered = sessions.len() as u64;
    report.register_latency = Percentiles::of(&mut reg_lat);
    sessions.sort_unstable_by_key(|(i, _, _)| *i);
    if let Some(e) = &enrolling {
        let _ = std::fs::remove_dir_all(&e.dir);
    }

    // Phase 2: the opens.
    let opens_started = Instant::now();
    let active = sessions.len().max(1);
    // Open loop: every VM at once, each offered an equal share of the rate.
    let interval = config
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(active as f64 / r));
    report.offered_rate = config.rate.filter(|_| interval.is_some()).unwrap_or(0.0);
    let concurrency = if interval.is_some() {
        active
    } else {
        config.concurrency.max(1)
    };
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut vms = tokio::task::JoinSet::new();
    for (i, sid, channel) in sessions {
        let vm = Vm {
            index: i,
            session_id: sid,
            channel,
            files: files.clone(),
            counters: counters.clone(),
            opens: config.opens_per_vm.unwrap_or(files.len()),
            exec_percent: config.exec_percent.min(100),
            inflight: config.inflight_per_vm.max(1),
            // The VMs' first events are spread over one interval, so they
            // do not all fall due at once.
            pace: interval.map(|every| Pace {
                first: opens_started + every.mul_f64((i % active) as f64 / active as f64),
                every,
            }),
            deadline,
        };
        let sem = sem.clone();
        vms.spawn(async move {
            let _permit = sem.acquire_owned().await;
            vm.run().await
        });
    }
    let grace = tokio::time::Instant::from_std(deadline + Duration::from_secs(10));
    loop {
        match tokio::time::timeout_at(grace, vms.join_next()).await {
            Ok(Some(Ok(Ok(())))) => {}
            Ok(Some(Ok(Err(e)))) => counters.error(e.to_string()),
            Ok(Some(Err(e))) => counters.error(format!("VM task: {e}")),
            Ok(None) => break,
            Err(_) => {
                counters.error("VMs still running at the end of the grace period".into());
                vms.abort_all();
                break;
            }
        }
    }
    report.open_secs = opens_started.elapsed().as_secs_f64();
    report.hit_duration_limit = Instant::now() >= deadline;
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let c = &counters;
    report.events = g(&c.events);
    report.verdicts = g(&c.verdicts);
    report.allow = g(&c.allow);
    report.deny = g(&c.deny);
    report.not_scanned = g(&c.not_scanned);
    report.verdict_errors = g(&c.verdict_errors);
    report.detections = g(&c.detections);
    report.cache_hits = g(&c.cache_hits);
    report.content_requests = g(&c.content_requests);
    report.content_bytes = g(&c.content_bytes) + report.template_content_bytes;
    report.errors = g(&c.errors);
    report.abandoned = g(&c.abandoned);
    report.content_per_image = if report.image_bytes > 0 {
        report.content_bytes as f64 / report.image_bytes as f64
    } else {
        0.0
    };
    report.events_per_sec = if report.open_secs > 0.0 {
        report.verdicts as f64 / report.open_secs
    } else {
        0.0
    };
    if let Ok(mut l) = c.latencies.lock() {
        report.verdict_latency = Percentiles::of(&mut l);
    }
    if let Ok(s) = c.error_samples.lock() {
        report.error_samples = s.clone();
    }
    Ok(report)
}

/// Why one simulated VM stopped early.
#[derive(Debug, thiserror::Error)]
enum VmError {
    /// The appliance ended the session with an error.
    #[error("VM {vm}: session: {status}")]
    Session { vm: usize, status: tonic::Status },
    /// The session closed.
    #[error("VM {vm}: session closed")]
    Closed { vm: usize },
    /// Nothing came back for a minute.
    #[error("VM {vm}: no answer for 60 s")]
    Silent { vm: usize },
}

/// How a simulated clone gets its certificate: a clone token for its id,
/// an enrollment at the appliance, and a connection of its own with the
/// certificate.
struct Enrolling {
    key: Vec<u8>,
    anonymous: Channel,
    url: String,
    ca: PathBuf,
    dir: PathBuf,
}

impl Enrolling {
    async fn channel(&self, vm_id: &str) -> Result<Channel, ClientError> {
        let refused = |status| ClientError::Refused {
            call: "Enroll",
            status,
        };
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        let token = giva_runtime::clone_token::mint(&self.key, vm_id, expires)
            .map_err(|e| refused(tonic::Status::invalid_argument(e.to_string())))?;
        let out = self.dir.join(vm_id);
        let (key, csr) = giva_proto::enroll::request(&out, "vm", true)
            .map_err(|e| refused(tonic::Status::internal(e.to_string())))?;
        let answer = ShimServiceClient::new(self.anonymous.clone())
            .enroll(giva_proto::shim::EnrollRequest {
                token,
                csr_pem: csr,
            })
            .await
            .map_err(refused)?
            .into_inner();
        let saved = giva_proto::enroll::save(&out, "vm", &key, &answer)
            .map_err(|e| refused(tonic::Status::internal(e.to_string())))?;
        let files = giva_proto::tls::ClientFiles {
            ca: self.ca.clone(),
            cert: saved.cert,
            key: saved.key,
        };
        client::channel(&self.url, &files).await
    }
}

struct Vm {
    index: usize,
    session_id: String,
    channel: Channel,
    files: Arc<Vec<ImageFile>>,
    counters: Arc<Counters>,
    opens: usize,
    exec_percent: u8,
    inflight: usize,
    pace: Option<Pace>,
    deadline: Instant,
}

/// How late an open-loop event may go out and still be timed from when it
/// was sent: the runtime's timers fire on millisecond ticks. Later than
/// this, it is timed from when it was due, so the wait counts.
pub const TIMER_SLACK: Duration = Duration::from_millis(2);

/// When an open-loop VM's events fall due: the first at `first`, then one
/// every `every`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    first: Instant,
    every: Duration,
}

impl Pace {
    /// When event number `n` (from 0) is due.
    fn due(&self, n: usize) -> Instant {
        self.first + self.every.mul_f64(n as f64)
    }
}

impl Vm {
    async fn run(self) -> Result<(), VmError> {
        let c = &self.counters;
        let mut client = ShimServiceClient::new(self.channel.clone());
        let (tx, rx) = mpsc::channel::<GuestMessage>(client::OUT_BUFFER);
        let open = guest_message::Msg::Open(SessionOpen {
            session_id: self.session_id.clone(),
        });
        tx.send(GuestMessage { msg: Some(open) })
            .await
            .map_err(|_| VmError::Closed { vm: self.index + 1 })?;
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|status| VmError::Session {
                vm: self.index + 1,
                status,
            })?
            .into_inner();
        let n = self.files.len();
        // Clones boot the same files, each in a slightly different order.
        let start = self.index.wrapping_mul(7919) % n;
        let mut sent = 0usize;
        let mut inflight: HashMap<u64, (usize, Instant)> = HashMap::new();
        let mut latencies = Vec::with_capacity(self.opens.min(1 << 16));
        let result = loop {
            while inflight.len() < self.inflight
                && sent < self.opens
                && Instant::now() < self.deadline
            {
                // Open loop: not before the event is due, and timed from
                // when it was due if it is late by more than the slack.
                let now = Instant::now();
                let due = match self.pace.map(|p| p.due(sent)) {
                    Some(due) if due > now => break,
                    Some(due) if now - due > TIMER_SLACK => due,
                    _ => now,
                };
                let idx = (start + sent) % n;
                sent += 1;
                let seq = sent as u64;
                let f = &self.files[idx];
                // Spread the EXEC share evenly over the opens.
                let p = usize::from(self.exec_percent);
                let kind = if sent * p / 100 != (sent - 1) * p / 100 {
                    EventKind::Exec
                } else {
                    EventKind::Open
                };
                let ev = FileEvent {
                    seq,
                    kind: kind as i32,
                    path: f.guest_path.clone(),
                    identity: Some(f.identity.clone()),
                    blocking: true,
                    full_scan_id: 0,
                };
                inflight.insert(seq, (idx, due));
                c.events.fetch_add(1, Ordering::Relaxed);
                if tx
                    .send(GuestMessage {
                        msg: Some(guest_message::Msg::Event(ev)),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let more = sent < self.opens && Instant::now() < self.deadline;
            if inflight.is_empty() && !more {
                break Ok(());
            }
            // Wake for the next answer, or for the next event falling due.
            let next_due = self
                .pace
                .filter(|_| more && inflight.len() < self.inflight)
                .map(|p| p.due(sent));
            let wait = match next_due {
                Some(due) => {
                    tokio::select! {
                        m = inbound.message() => Ok(m),
                        () = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => continue,
                    }
                }
                None => tokio::time::timeout(Duration::from_secs(60), inbound.message()).await,
            };
            let m = match wait {
                Err(_) => break Err(VmError::Silent { vm: self.index + 1 }),
                Ok(Err(status)) => {
                    break Err(VmError::Session {
                        vm: self.index + 1,
                        status,
                    });
                }
                Ok(Ok(None)) => break Err(VmError::Closed { vm: self.index + 1 }),
                Ok(Ok(Some(m))) => m,
            };
            match m.msg {
                Some(appliance_message::Msg::ContentRequest(req)) => {
                    let Some(&(idx, _)) = inflight.get(&req.seq) else {
                        continue;
                    };
                    c.content_requests.fetch_add(1, Ordering::Relaxed);
                    let path = self.files[idx].path.clone();
                    let size = self.files[idx].identity.size;
                    let (tx, counters) = (tx.clone(), self.counters.clone());
                    tokio::spawn(async move {
                        let range = (req.offset, req.length);
                        match crate::scan::stream_file(&path, req.seq, range, size, &tx).await {
                            Ok(()) => {
                                let end = if req.length == 0 {
                                    size
                                } else {
                                    req.offset.saturating_add(req.length).min(size)
                                };
                                counters
                                    .content_bytes
                                    .fetch_add(end.saturating_sub(req.offset), Ordering::Relaxed);
                            }
                            Err(e) => {
                                let m = guest_message::Msg::ContentError(ContentError {
                                    seq: req.seq,
                                    reason: e.to_string(),
                                });
                                let _ = tx.send(GuestMessage { msg: Some(m) }).await;
                            }
                        }
                    });
                }
                Some(appliance_message::Msg::Verdict(v)) => {
                    let Some((_, t)) = inflight.remove(&v.seq) else {
                        continue;
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    c.verdicts.fetch_add(1, Ordering::Relaxed);
                    if v.from_cache {
                        c.cache_hits.fetch_add(1, Ordering::Relaxed);
                    }
                    if !v.detections.is_empty() {
                        c.detections.fetch_add(1, Ordering::Relaxed);
                    }
                    let k = match VerdictKind::try_from(v.kind) {
                        Ok(VerdictKind::Allow) => &c.allow,
                        Ok(VerdictKind::Deny) => &c.deny,
                        Ok(VerdictKind::NotScanned) => &c.not_scanned,
                        _ => &c.verdict_errors,
                    };
                    k.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        };
        c.abandoned
            .fetch_add(inflight.len() as u64, Ordering::Relaxed);
        if let Ok(mut l) = c.latencies.lock() {
            l.extend_from_slice(&latencies);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_events_fall_due_evenly() {
        let first = Instant::now();
        let p = Pace {
            first,
            every: Duration::from_millis(50),
        };
        assert_eq!(p.due(0), first);
        assert_eq!(p.due(1), first + Duration::from_millis(50));
        assert_eq!(p.due(20), first + Duration::from_secs(1));
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }
}
