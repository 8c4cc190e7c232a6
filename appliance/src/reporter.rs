//! Reporting to the manager: immediate notification of detections, the
//! periodic heartbeat, and the outbox of events not yet acknowledged.
//!
//! Every event goes into the outbox first. Detections also wake the notify
//! loop, which sends them at once; everything still unacknowledged rides on
//! the next heartbeat. An event leaves the [`Outbox`] only when the manager
//! acknowledges its id, so a manager outage or an appliance crash delays
//! events but loses none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{
    Event, EventKind, HeartbeatRequest, HeartbeatResponse, NotifyRequest, appliance_command,
};
use giva_proto::now_us;
use giva_runtime::Backoff;
use tokio::sync::Notify;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::config::ManagerConfig;
use crate::fullscan::{OrderedBy, ScanOrder};
use crate::outbox::{Outbox, Pushed, is_prompt};
use crate::registry::Registry;
use crate::stats::Stats;

/// Most events sent in one request.
const BATCH: usize = 1000;
/// Most bytes of events sent in one request (the manager takes 64 MiB).
const BATCH_BYTES: usize = 4 << 20;

/// The first events of `batch` that fit in [`BATCH_BYTES`] (at least one).
fn fit(mut batch: Vec<Event>) -> Vec<Event> {
    use prost::Message;
    let mut bytes = 0usize;
    let keep = batch
        .iter()
        .take_while(|e| {
            bytes += e.encoded_len();
            bytes <= BATCH_BYTES
        })
        .count()
        .max(1);
    batch.truncate(keep);
    batch
}

/// The reporter: owns the outbox and the link to the manager.
#[derive(Debug)]
pub struct Reporter {
    appliance_id: String,
    boot_us: i64,
    next_id: AtomicU64,
    /// Serializes id assignment with the outbox commit.
    order: tokio::sync::Mutex<()>,
    outbox: Outbox,
    wake: Notify,
    /// The link to the manager; made anew when its TLS files are reloaded.
    client: std::sync::RwLock<Option<ManagerServiceClient<Channel>>>,
    /// Bumped when the link is made anew, so that the command stream moves
    /// to it.
    relinked: tokio::sync::watch::Sender<u64>,
    /// Held while a VM's enrollment is passed on.
    enrolling: tokio::sync::Mutex<()>,
    /// The version of the revocation lists in force, told the manager with
    /// each heartbeat.
    revocation_version: std::sync::Mutex<String>,
    /// Newer revocation lists the manager sent, for the appliance to put in
    /// force ([`Reporter::revocation_news`]).
    revocation_news: tokio::sync::watch::Sender<Option<RevocationNews>>,
    /// Set when the manager says this appliance's certificate is due for
    /// renewal ([`Reporter::renewal_due`]).
    renewal_due: tokio::sync::watch::Sender<u64>,
    notify_immediately: bool,
    heartbeat_interval: Duration,
    stats: Arc<Stats>,
    started: Instant,
    /// Since when calls to the manager fail for want of a link (`None`:
    /// the last call reached it).
    unreachable_since: std::sync::Mutex<Option<Instant>>,
}

/// True for the failures that mean the manager was not reached (as
/// opposed to reached and refusing).
fn unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

impl Reporter {
    /// A reporter for `appliance_id`, to the manager of `link`. With no
    /// URL, events stay in the outbox and are only logged.
    ///
    /// # Errors
    ///
    /// The URL is not a valid endpoint, or its TLS files are unusable.
    pub fn new(
        outbox: Outbox,
        appliance_id: String,
        link: &ManagerConfig,
        stats: Arc<Stats>,
    ) -> Result<Self, BadManagerUrl> {
        let heartbeat_interval = Duration::from_secs(link.heartbeat_interval_secs);
        let notify_immediately = link.notify_immediately;
        let client = connect(link)?;
        Ok(Reporter {
            appliance_id,
            boot_us: now_us(),
            next_id: AtomicU64::new(0),
            order: tokio::sync::Mutex::new(()),
            outbox,
            wake: Notify::new(),
            client: std::sync::RwLock::new(client),
            relinked: tokio::sync::watch::channel(0).0,
            enrolling: tokio::sync::Mutex::new(()),
            revocation_version: std::sync::Mutex::new(String::new()),
            revocation_news: tokio::sync::watch::channel(None).0,
            renewal_due: tokio::sync::watch::channel(0).0,
            notify_immediately,
            heartbeat_interval,
            stats,
            started: Instant::now(),
            unreachable_since: std::sync::Mutex::new(None),
        })
    }

    /// True when a manager is configured.
    pub fn has_manager(&self) -> bool {
        self.client().is_some()
    }

    fn client(&self) -> Option<ManagerServiceClient<Channel>> {
        self.client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Newer revocation lists from the manager, as they come.
    pub fn revocation_news(&self) -> tokio::sync::watch::Receiver<Option<RevocationNews>> {
        self.revocation_news.subscribe()
    }

    /// Bumped each time the manager answers a heartbeat saying that this
    /// appliance's certificate is due for renewal.
    pub fn renewal_due(&self) -> tokio::sync::watch::Receiver<u64> {
        self.renewal_due.subscribe()
    }

    /// Asks the manager for a new certificate for this appliance, on its
    /// current one (and for its delegated CA, with `delegate_csr_pem`).
    ///
    /// # Errors
    ///
    /// No manager, or the manager's refusal.
    pub async fn renew(
        &self,
        csr_pem: String,
        delegate_csr_pem: String,
    ) -> Result<giva_proto::manager::EnrollResponse, tonic::Status> {
        let Some(mut client) = self.client() else {
            return Err(tonic::Status::failed_precondition(
                "this appliance has no manager",
            ));
        };
        client
            .renew(giva_proto::manager::RenewRequest {
                csr_pem,
                delegate_csr_pem,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Notes the version of the revocation lists now in force.
    pub fn set_revocation_version(&self, version: &str) {
        *self
            .revocation_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = version.to_string();
    }

    /// Passes a VM's enrollment on to the manager, for the role `vm` only
    /// (a token for an appliance is refused there, unspent). One at a time,
    /// with no queue, so that a guest cannot flood the manager through this
    /// appliance or hold other VMs' enrollments behind its own.
    ///
    /// # Errors
    ///
    /// No manager, or the manager's refusal.
    pub async fn enroll_vm(
        &self,
        token: String,
        csr_pem: String,
    ) -> Result<giva_proto::manager::EnrollResponse, tonic::Status> {
        let Some(mut client) = self.client() else {
            return Err(tonic::Status::failed_precondition(
                "this appliance has no manager to enroll with",
            ));
        };
        // One at a time, and no queue: a guest flooding enrollments gets
        // RESOURCE_EXHAUSTED, and holds no one else's behind it.
        let Ok(_one) = self.enrolling.try_lock() else {
            return Err(tonic::Status::resource_exhausted(
                "another VM's enrollment is in progress; try again shortly",
            ));
        };
        client
            .enroll(giva_proto::manager::EnrollRequest {
                token,
                csr_pem,
                role: "vm".into(),
                delegate_csr_pem: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Reads the manager link's TLS files again and makes a new link with
    /// them (a renewed certificate, a rotated CA); calls in flight finish
    /// on the old one. Returns false when the link has no TLS.
    ///
    /// # Errors
    ///
    /// The files are unusable; the link in use stays.
    pub fn reload_tls(&self, link: &ManagerConfig) -> Result<bool, BadManagerUrl> {
        if link.url.is_empty() || link.ca_file.as_os_str().is_empty() {
            return Ok(false);
        }
        let client = connect(link)?;
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
        self.relinked.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// How long the manager has been unreachable (`None`: the last call
    /// reached it, or none was made yet).
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// Records whether a call reached the manager.
    fn link(&self, result: Result<(), &tonic::Status>) {
        let mut since = self
            .unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Err(status) if unreachable(status) => {
                if since.is_none() {
                    warn!(error = %giva_proto::tls::explain(status), "the manager is unreachable");
                    *since = Some(Instant::now());
                }
            }
            _ => {
                if let Some(t) = since.take() {
                    info!(
                        after_secs = t.elapsed().as_secs(),
                        "the manager is reachable again"
                    );
                }
            }
        }
    }

    /// This appliance's id.
    pub fn appliance_id(&self) -> &str {
        &self.appliance_id
    }

    /// A new event of `kind`, with the appliance and the time filled in. Its
    /// id is given when it is reported, in the order events are committed.
    pub fn new_event(&self, kind: EventKind) -> Event {
        Event {
            kind: kind as i32,
            appliance_id: self.appliance_id.clone(),
            detected_at_us: now_us(),
            ..Event::default()
        }
    }

    /// Commits an event to the outbox; it returns once the event is on
    /// disk. Prompt events (detections, completed full scans) are then sent
    /// at once, unless immediate notification is off; other events travel
    /// with the next heartbeat.
    pub async fn report(&self, event: Event) {
        self.report_with(event, true).await;
    }

    /// Like [`Reporter::report`], with `notify` false keeping a prompt
    /// event for the next heartbeat (a policy that reproduces
    /// heartbeat-only reporting).
    pub async fn report_with(&self, mut event: Event, notify: bool) {
        let urgent = is_prompt(&event) && notify;
        // Ids follow the outbox's commit order, so the manager can tell the
        // order events happened in from their ids. Only the hand-over to the
        // writer is serialized; the commits themselves are grouped.
        let pending = {
            let _in_order = self.order.lock().await;
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            event.event_id = format!("{}-{:x}-{n}", self.appliance_id, self.boot_us);
            self.outbox.enqueue(event).await
        };
        let pushed = pending.committed().await;
        match pushed {
            Pushed::Stored { evicted } => {
                self.stats.outbox_dropped.inc_by(evicted);
            }
            Pushed::Dropped => {
                self.stats.outbox_dropped.inc();
            }
            Pushed::InMemoryOnly => {}
        }
        if urgent && self.notify_immediately {
            self.wake.notify_one();
        }
    }

    /// Events not yet acknowledged.
    pub async fn pending(&self) -> u64 {
        self.outbox.len().await
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Sends every pending prompt event with `Notify`. Returns true when the
    /// outbox holds no more of them.
    async fn notify_once(&self) -> bool {
        let Some(mut client) = self.client() else {
            return true;
        };
        loop {
            let batch = fit(self.outbox.pending(true, BATCH).await);
            if batch.is_empty() {
                return true;
            }
            let n = batch.len();
            let ids: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
            let req = NotifyRequest {
                appliance_id: self.appliance_id.clone(),
                events: batch,
            };
            let result = client.notify(req).await;
            self.link(result.as_ref().map(|_| ()));
            match result {
                Ok(resp) => {
                    let acked = resp.into_inner().acked_event_ids;
                    debug!(sent = n, acked = acked.len(), "notify acknowledged");
                    if !self.outbox.ack(&acked).await {
                        // The outbox cannot forget them: sending them again
                        // at once would loop; retry with the backoff.
                        return false;
                    }
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    // The manager refuses something in the batch for good:
                    // find it by sending one event at a time, and set the
                    // refused one aside, so that it cannot hold back every
                    // other event behind it.
                    self.set_aside_refused(&mut client, &ids).await;
                }
                Err(status) => {
                    warn!(error = %giva_proto::tls::explain(&status), code = ?status.code(), "notify failed; will retry");
                    return false;
                }
            }
        }
    }

    /// Sends the events `ids` one at a time; moves each one the manager
    /// refuses as invalid to the outbox's dead-letter table (logged,
    /// counted and reported with the heartbeat), acknowledges the others
    /// as the manager does.
    async fn set_aside_refused(&self, client: &mut ManagerServiceClient<Channel>, ids: &[String]) {
        let pending = self.outbox.pending(true, BATCH).await;
        for ev in pending.into_iter().filter(|e| ids.contains(&e.event_id)) {
            let id = ev.event_id.clone();
            let req = NotifyRequest {
                appliance_id: self.appliance_id.clone(),
                events: vec![ev],
            };
            match client.notify(req).await {
                Ok(resp) => {
                    if !self.outbox.ack(&resp.into_inner().acked_event_ids).await {
                        return;
                    }
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    let reason = format!("the manager refuses it: {}", status.message());
                    self.outbox.set_aside(&id, &reason).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Sends one heartbeat with every pending event; returns the reply.
    async fn heartbeat_once(
        &self,
        registry: &Registry,
        database_version: &str,
        problems: Vec<String>,
    ) -> Option<HeartbeatResponse> {
        let mut client = self.client()?;
        let mut problems = problems;
        let dead = self.outbox.dead_letters();
        if dead > 0 {
            problems.push(format!(
                "{dead} event(s) could never be delivered and are kept in the outbox's dead_letter table"
            ));
        }
        let req = HeartbeatRequest {
            appliance_id: self.appliance_id.clone(),
            hostname: self.appliance_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            database_version: database_version.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            healthy: problems.is_empty(),
            problems,
            vms: registry.vm_infos(),
            stats: Some(self.stats.snapshot()),
            events: fit(self.outbox.pending(false, BATCH).await),
            revocation_version: self
                .revocation_version
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        };
        let result = client.heartbeat(req).await;
        self.link(result.as_ref().map(|_| ()));
        match result {
            Ok(resp) => {
                let resp = resp.into_inner();
                // A failed removal sends them again with the next heartbeat.
                let _ = self.outbox.ack(&resp.acked_event_ids).await;
                if resp.renew {
                    self.renewal_due.send_modify(|n| *n += 1);
                }
                if !resp.crl_pem.is_empty() {
                    self.revocation_news.send_replace(Some(RevocationNews {
                        version: resp.revocation_version.clone(),
                        crl_pem: resp.crl_pem.clone(),
                    }));
                }
                Some(resp)
            }
            Err(status) => {
                warn!(error = %giva_proto::tls::explain(&status), code = ?status.code(), "heartbeat failed");
                None
            }
        }
    }

    /// Runs the notify and heartbeat loops until `shutdown` fires, then
    /// makes one last attempt to deliver what is pending.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<Registry>,
        status: impl Fn() -> (String, Vec<String>) + Send + Sync,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        if !self.has_manager() {
            info!("no manager configured: detections are logged only");
        }
        let (stop_subscribe, subscribe_stopped) = tokio::sync::watch::channel(false);
        let subscriber = self.has_manager().then(|| {
            tokio::spawn(
                self.clone()
                    .subscribe_loop(registry.clone(), subscribe_stopped),
            )
        });
        tokio::pin!(shutdown);
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = backoff();
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let retry_due = tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => false,
                _ = retry => true,
                _ = heartbeat.tick() => {
                    let (version, problems) = status();
                    if let Some(resp) = self.heartbeat_once(&registry, &version, problems).await {
                        self.apply_commands(&registry, resp);
                    }
                    false
                }
            };
            if self.notify_immediately {
                if self.notify_once().await {
                    backoff.reset();
                    retry_at = None;
                } else if retry_due || retry_at.is_none() {
                    // Only a failed retry grows the backoff: new events that
                    // arrive while the manager is away try once and leave the
                    // scheduled retry where it is.
                    retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                }
            }
        }
        let _ = stop_subscribe.send(true);
        if let Some(task) = subscriber {
            let _ = task.await;
        }
        if self.has_manager() && self.pending().await > 0 {
            let _ = self.notify_once().await;
            let _ = {
                let (version, problems) = status();
                self.heartbeat_once(&registry, &version, problems).await
            };
        }
    }

    /// Keeps a `Subscribe` stream open to the manager, so that commands
    /// (such as a full scan of a VM) arrive at once rather than with the
    /// next heartbeat reply. Reconnects with backoff.
    async fn subscribe_loop(
        self: Arc<Self>,
        registry: Arc<Registry>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut backoff = backoff();
        let mut relinked = self.relinked.subscribe();
        loop {
            let Some(mut client) = self.client() else {
                return;
            };
            relinked.mark_unchanged();
            let req = giva_proto::manager::SubscribeRequest {
                appliance_id: self.appliance_id.clone(),
            };
            let attempt = async {
                let subscribed = client.subscribe(req).await;
                self.link(subscribed.as_ref().map(|_| ()));
                let mut stream = subscribed?.into_inner();
                while let Some(cmd) = stream.message().await? {
                    self.apply_command(&registry, cmd);
                }
                Ok::<(), tonic::Status>(())
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                // A new link: subscribe on it at once.
                _ = relinked.changed() => continue,
                r = attempt => if let Err(status) = r {
                    self.link(Err(&status));
                    debug!(error = %status.message(), "command channel to the manager closed");
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    fn apply_commands(&self, registry: &Registry, resp: HeartbeatResponse) {
        for cmd in resp.commands {
            self.apply_command(registry, cmd);
        }
    }

    fn apply_command(&self, registry: &Registry, cmd: giva_proto::manager::ApplianceCommand) {
        if let Some(appliance_command::Command::FullScan(fs)) = cmd.command {
            info!(vm_id = %fs.vm_id, reason = %fs.reason, order = %fs.order_id, "manager asks for a full scan");
            registry.send_full_scan_command(
                &fs.vm_id,
                ScanOrder {
                    ordered_by: OrderedBy::Manager,
                    order_id: fs.order_id,
                    reason: fs.reason,
                    roots: Vec::new(),
                    recheck: fs.recheck_paths,
                },
            );
        }
    }
}

/// Revocation lists the manager sent with a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationNews {
    /// Their version.
    pub version: String,
    /// The lists (PEM).
    pub crl_pem: String,
}

/// The client for the manager of `link` (`None`: no URL), connecting
/// lazily with its TLS files as they are now.
fn connect(link: &ManagerConfig) -> Result<Option<ManagerServiceClient<Channel>>, BadManagerUrl> {
    let url = link.url.as_str();
    if url.is_empty() {
        return Ok(None);
    }
    let tls = giva_proto::tls::ClientFiles {
        ca: link.ca_file.clone(),
        cert: link.cert_file.clone(),
        key: link.key_file.clone(),
    };
    let request_timeout = Duration::from_millis(link.request_timeout_ms);
    let endpoint = tls
        .endpoint(url)
        .map_err(|source| BadManagerUrl {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(request_timeout)
        .timeout(request_timeout)
        .tcp_nodelay(true);
    Ok(Some(ManagerServiceClient::new(endpoint.connect_lazy())))
}

/// The manager's URL is not a valid endpoint.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the manager URL {url}: {source}")]
pub struct BadManagerUrl {
    /// The URL given.
    pub url: String,
    /// What is wrong with it, or with the TLS files.
    #[source]
    pub source: giva_proto::tls::TlsError,
}

/// The retry schedule of the reports to the manager: 50 ms up to 5 s, so
/// that delivery resumes within seconds of the manager's return.
fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
}
