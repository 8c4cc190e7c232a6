//! The gRPC service: validates requests, turns them into store calls, and
//! maps failures to `Status` in one place.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use giva_proto::manager::manager_service_server::ManagerService;
use giva_proto::manager::{
    AddExceptionRequest, AddExceptionResponse, ApplianceCommand, CancelActionsRequest,
    CancelActionsResponse, EnrollRequest, EnrollResponse, Event, EventKind, FullScanVm,
    HeartbeatRequest, HeartbeatResponse, ListEventsRequest, ListEventsResponse, ListVmsRequest,
    ListVmsResponse, NotifyRequest, NotifyResponse, RenewRequest, RequestScanRequest,
    RequestScanResponse, SubscribeRequest, UntagVmRequest, UntagVmResponse, VmState,
    appliance_command,
};
use giva_proto::now_us;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::auth::{Auth, Role};
use crate::config::{Config, QuarantineConfig};
use crate::stats::Stats;
use crate::store::{EventFilter, Override, Store, StoreError, Stored};
use crate::tagger::Tagger;
use crate::tagging::{ActionError, NamedAction};

/// Most events accepted in one `Notify` or `Heartbeat`.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// Longest id or name accepted.
pub const MAX_ID_LEN: usize = 256;
/// Longest path accepted in an event.
pub const MAX_PATH_LEN: usize = 4096;
/// Events returned by `ListEvents` when the request gives no limit.
pub const DEFAULT_LIST_LIMIT: usize = 1000;

type CommandSender = mpsc::Sender<Result<ApplianceCommand, Status>>;

/// Open `Subscribe` channels, by appliance id.
#[derive(Debug, Default)]
struct Subscribers {
    /// Each with the certificate (DER) its appliance showed, if any: a
    /// command goes out only while that certificate is not revoked.
    open: HashMap<String, (CommandSender, Option<Vec<u8>>)>,
    /// Set at shutdown: new subscriptions are refused, so that an appliance
    /// re-subscribing the moment its stream ends cannot hold a graceful
    /// stop open.
    closed: bool,
}

/// The manager's shared state.
#[derive(Debug)]
pub struct Manager {
    store: Store,
    /// Commands waiting for an appliance's next heartbeat.
    pending: Mutex<HashMap<String, Vec<ApplianceCommand>>>,
    /// Open `Subscribe` channels.
    subscribers: Mutex<Subscribers>,
    /// The quarantine policy and the tagging worker.
    tagger: Arc<Tagger>,
    /// The tokens of operators and readers.
    auth: Auth,
    /// Counters for `/metrics`.
    stats: Arc<Stats>,
    /// Appliances' calls need a certificate naming the appliance.
    appliance_certs: std::sync::atomic::AtomicBool,
    /// The CA, its certificates and enrollment tokens.
    pki: crate::pki::Pki,
}

impl Manager {
    /// A manager on `store` with the default policy and no tagging action
    /// (quarantines are recorded in the store only), and a fresh random
    /// operator token ([`auth`](Self::auth)).
    ///
    /// # Panics
    ///
    /// If the kernel's random source cannot be read.
    pub fn new(store: Store) -> Arc<Self> {
        Self::with_actions(store, QuarantineConfig::default(), Vec::new())
    }

    /// A manager on `store` with the policy and actions of `config`, taking
    /// the tokens of `auth`.
    ///
    /// # Errors
    ///
    /// A tagging action cannot be built (for example an unreadable CA file).
    pub fn with_config(
        store: Store,
        config: &Config,
        auth: Auth,
    ) -> Result<Arc<Self>, ActionError> {
        let stats = Arc::new(Stats::new());
        let tagger = Tagger::new(store.clone(), config, stats.clone())?;
        Ok(Self::with_tagger(store, tagger, auth, stats))
    }

    /// A manager on `store` with explicit tagging actions and a fresh
    /// random operator token (for tests, benches and embedders).
    ///
    /// # Panics
    ///
    /// If the kernel's random source cannot be read.
    pub fn with_actions(
        store: Store,
        policy: QuarantineConfig,
        actions: Vec<NamedAction>,
    ) -> Arc<Self> {
        let stats = Arc::new(Stats::new());
        let tagger = Tagger::with_actions(store.clone(), policy, actions, stats.clone());
        let auth = Auth::generate().expect("the kernel's random source is readable");
        Self::with_tagger(store, tagger, auth, stats)
    }

    fn with_tagger(store: Store, tagger: Arc<Tagger>, auth: Auth, stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Manager {
            pki: crate::pki::Pki::new(store.clone()),
            store,
            pending: Mutex::default(),
            subscribers: Mutex::default(),
            tagger,
            auth,
            stats,
            appliance_certs: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// From now on, an appliance's call (`Notify`, `Heartbeat`,
    /// `Subscribe`) is taken only with a TLS client certificate that names
    /// the appliance it claims to be.
    pub fn require_appliance_certificates(&self) {
        self.appliance_certs
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Checks that `request` comes from appliance `claimed`, when
    /// appliances are authenticated; counts a refusal.
    async fn authorize_appliance<T>(
        &self,
        request: &Request<T>,
        claimed: &str,
        call: &str,
    ) -> Result<(), Status> {
        if !self
            .appliance_certs
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let refused = match giva_proto::tls::peer_name(request, giva_proto::tls::Role::Appliance) {
            Some(name) if name == claimed => {
                // The store knows revocations at once; the revocation
                // lists reach the TLS layer only on a reload.
                let der = request
                    .peer_certs()
                    .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
                    .unwrap_or_default();
                if giva_proto::issue::issued_by_delegate(&der) {
                    let refused = Status::permission_denied(
                        "an appliance's certificate must come from the manager's CA, not from an \
                         appliance's delegated CA",
                    );
                    self.stats.refusal(call, refused.code());
                    warn!(
                        call,
                        claimed, "appliance certificate made by a delegated CA refused"
                    );
                    return Err(refused);
                }
                match self.pki.admit(&der).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => Status::permission_denied(format!(
                        "the certificate of appliance {name} was revoked"
                    )),
                    Err(e) => Status::unavailable(format!(
                        "cannot check the certificate's revocation: {e}"
                    )),
                }
            }
            Some(name) => Status::permission_denied(format!(
                "the certificate names appliance {name}, not {claimed}"
            )),
            None if giva_proto::tls::peer_has_certificate(request) => Status::permission_denied(
                "the certificate is not an appliance's (a VM's or a server's cannot call for one)",
            ),
            None => Status::unauthenticated(
                "appliances' calls need a client certificate naming the appliance",
            ),
        };
        self.stats.refusal(call, refused.code());
        warn!(call, claimed, code = ?refused.code(), "appliance call refused");
        Err(refused)
    }

    /// The counters, refreshed, as OpenMetrics text (for `/metrics`).
    pub fn render_metrics(&self) -> String {
        self.stats
            .tag_queue
            .set(i64::try_from(self.tagger.queued()).unwrap_or(i64::MAX));
        self.stats
            .subscribers
            .set(i64::try_from(lock(&self.subscribers).open.len()).unwrap_or(i64::MAX));
        self.stats.render()
    }

    /// What is wrong, for `/healthz`: the store cannot be read, or a
    /// tagging action has been pending longer than
    /// `quarantine.overdue_secs`. Empty when healthy.
    pub async fn health(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.store.oldest_pending_action().await {
            Err(e) => out.push(format!("the store cannot be read: {e}")),
            Ok(Some(row)) => {
                let overdue = self.tagger.rules().policy.overdue_secs;
                let waited_us = now_us().saturating_sub(row.created_at_us);
                if waited_us > i64::try_from(overdue.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
                {
                    out.push(format!(
                        "{} of VM {} by {} has been pending for {:.1} s (over {overdue} s), \
                         after {} attempts: {}",
                        row.op,
                        row.vm_id,
                        row.action,
                        waited_us as f64 / 1e6,
                        row.attempts,
                        row.detail
                    ));
                }
            }
            Ok(None) => {}
        }
        out
    }

    /// Checks `request`'s credential for `role`, counting a refusal.
    fn authorize<T>(&self, request: &Request<T>, role: Role, call: &str) -> Result<(), Status> {
        self.auth.check(request, role).inspect_err(|s| {
            self.stats.refusal(call, s.code());
            warn!(call, code = ?s.code(), "call refused");
        })
    }

    /// The tokens this manager accepts.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The tagging worker ([`crate::serve`] runs it).
    pub fn tagger(&self) -> &Arc<Tagger> {
        &self.tagger
    }

    /// A manager with an empty in-memory store (for tests and trials).
    ///
    /// # Errors
    ///
    /// SQLite cannot be initialized.
    pub async fn in_memory() -> Result<Arc<Self>, StoreError> {
        let store = Store::open(std::path::Path::new(":memory:")).await?;
        Ok(Self::new(store))
    }

    /// The store, for tests and tools.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Validates and commits events; returns the ids now stored. The ids
    /// are returned only after the transaction is committed.
    async fn ingest(&self, appliance_id: &str, events: Vec<Event>) -> Result<Vec<String>, Status> {
        if events.len() > MAX_EVENTS_PER_REQUEST {
            return Err(Status::resource_exhausted(format!(
                "{} events in one request; at most {MAX_EVENTS_PER_REQUEST}",
                events.len()
            )));
        }
        for ev in &events {
            validate_event(ev)?;
        }
        let mut events = events;
        let certified = self
            .appliance_certs
            .load(std::sync::atomic::Ordering::Relaxed);
        for ev in &mut events {
            if ev.appliance_id.is_empty() {
                ev.appliance_id = appliance_id.to_string();
            } else if certified && ev.appliance_id != appliance_id {
                return Err(Status::permission_denied(format!(
                    "event {} claims appliance {}; this caller is {appliance_id}",
                    ev.event_id, ev.appliance_id
                )));
            }
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = self
            .store
            .insert_events(&events, now_us(), self.tagger.rules(), certified)
            .await
            .map_err(store_status)?;
        // Committed: tagging runs after the acknowledgement, never before.
        self.tagger.enqueue(outcome.queued);
        for (ev, stored) in events.iter().zip(&outcome.stored) {
            let kind = EventKind::try_from(ev.kind).map_or("unknown", |k| k.as_str_name());
            self.stats.event(kind, *stored != Stored::Duplicate);
            if let Stored::Collision { stored_as } = stored {
                self.stats.collision();
                tracing::error!(
                    event_id = %ev.event_id, %stored_as, appliance_id, vm_id = %ev.vm_id,
                    "an event id already held another event: this one is kept and applied under another id"
                );
            }
            if *stored != Stored::Duplicate && ev.kind == EventKind::Detection as i32 {
                info!(event_id = %ev.event_id, vm_id = %ev.vm_id, signatures = %ev.signatures.join(","),
                    path = %ev.path, "detection recorded");
            }
        }
        Ok(events.into_iter().map(|e| e.event_id).collect())
    }

    /// Ends every open `Subscribe` stream (at shutdown, so that a graceful
    /// stop does not wait on appliances' long-lived command channels).
    /// Later `Subscribe` calls are refused with UNAVAILABLE.
    pub fn close_subscriptions(&self) {
        let mut subs = lock(&self.subscribers);
        subs.closed = true;
        subs.open.clear();
    }

    /// Applies an operator override and queues its actions.
    async fn apply_override(&self, vm_id: &str, what: Override) -> Result<VmState, Status> {
        let (vm, queued) = self
            .store
            .apply_override(vm_id, what, self.tagger.rules(), now_us())
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("unknown VM {vm_id}")))?;
        info!(vm_id, state = %vm.state, "operator override");
        self.tagger.enqueue(queued);
        Ok(vm)
    }

    async fn push_command(&self, appliance_id: &str, cmd: ApplianceCommand) -> bool {
        let sender = lock(&self.subscribers).open.get(appliance_id).cloned();
        if let Some((tx, der)) = sender {
            // A stream opened before its certificate was revoked takes no
            // more commands: it is closed.
            let revoked = match &der {
                Some(der) => self.pki.is_revoked(der).await.unwrap_or(true),
                None => false,
            };
            if revoked {
                warn!(
                    appliance_id,
                    "the certificate of a subscribed appliance was revoked; its command stream is closed"
                );
                let mut subs = lock(&self.subscribers);
                if subs
                    .open
                    .get(appliance_id)
                    .is_some_and(|(t, _)| t.same_channel(&tx))
                {
                    subs.open.remove(appliance_id);
                }
                return false;
            }
            if tx.try_send(Ok(cmd.clone())).is_ok() {
                return true;
            }
        }
        lock(&self.pending)
            .entry(appliance_id.to_string())
            .or_default()
            .push(cmd);
        false
    }
}

fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store failed");
    Status::unavailable(format!("the manager cannot store events right now: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes long; at most {max}",
            value.len()
        )));
    }
    Ok(())
}

fn validate_event(ev: &Event) -> Result<(), Status> {
    if ev.event_id.is_empty() {
        return Err(Status::invalid_argument("event without event_id"));
    }
    check_len("event_id", &ev.event_id, MAX_ID_LEN)?;
    check_len("vm_id", &ev.vm_id, MAX_ID_LEN)?;
    check_len("vm_name", &ev.vm_name, MAX_ID_LEN)?;
    check_len("path", &ev.path, MAX_PATH_LEN)?;
    if EventKind::try_from(ev.kind).is_err() || ev.kind == EventKind::Unspecified as i32 {
        return Err(Status::invalid_argument(format!(
            "event {}: unknown kind {}",
            ev.event_id, ev.kind
        )));
    }
    check_len("detail", &ev.detail, MAX_DETAIL_LEN)?;
    check_len("sha256", &ev.sha256, MAX_ID_LEN)?;
    check_len("database_version", &ev.database_version, MAX_ID_LEN)?;
    check_list("signatures", &ev.signatures, MAX_LIST, MAX_ID_LEN * 4)?;
    if let Some(s) = &ev.scan {
        check_len("ordered_by", &s.ordered_by, MAX_ID_LEN)?;
        check_len("order_id", &s.order_id, MAX_ID_LEN)?;
        check_list("roots", &s.roots, MAX_LIST, MAX_PATH_LEN)?;
        check_list("rechecked", &s.rechecked, MAX_RECHECKED, MAX_PATH_LEN)?;
        check_list("blockers", &s.blockers, MAX_LIST, MAX_DETAIL_LEN / 4)?;
        if s.skipped.len() > MAX_LIST {
            return Err(Status::invalid_argument(format!(
                "{} skipped files listed; at most {MAX_LIST}",
                s.skipped.len()
            )));
        }
        for f in &s.skipped {
            check_len("skipped path", &f.path, MAX_PATH_LEN)?;
            check_len("skipped sha256", &f.sha256, MAX_ID_LEN)?;
            check_len("skipped reason", &f.reason, MAX_ID_LEN)?;
        }
    }
    Ok(())
}

/// Longest free text in an event.
const MAX_DETAIL_LEN: usize = 256 * 1024;
/// Most entries in an event's lists (signatures, roots, blockers, skipped
/// files).
const MAX_LIST: usize = 1024;
/// Most paths a scan record says it re-read.
const MAX_RECHECKED: usize = 4096;

fn check_list(field: &str, values: &[String], max: usize, max_len: usize) -> Result<(), Status> {
    if values.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} has {} entries; at most {max}",
            values.len()
        )));
    }
    for v in values {
        check_len(field, v, max_len)?;
    }
    Ok(())
}

fn require_id<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    check_len(field, value, MAX_ID_LEN)?;
    Ok(value)
}

/// The tonic service wrapper around a shared [`Manager`].
#[derive(Debug, Clone)]
pub struct ManagerGrpc(pub Arc<Manager>);

#[tonic::async_trait]
impl ManagerService for ManagerGrpc {
    async fn notify(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let claimed = require_id("appliance_id", &request.get_ref().appliance_id)?.to_string();
        self.0
            .authorize_appliance(&request, &claimed, "Notify")
            .await?;
        let req = request.into_inner();
        let appliance = req.appliance_id.as_str();
        let acked_event_ids = self.0.ingest(appliance, req.events).await?;
        Ok(Response::new(NotifyResponse { acked_event_ids }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let claimed = require_id("appliance_id", &request.get_ref().appliance_id)?.to_string();
        self.0
            .authorize_appliance(&request, &claimed, "Heartbeat")
            .await?;
        let peer_certs = self
            .0
            .appliance_certs
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| request.peer_certs())
            .flatten();
        let req = request.into_inner();
        let appliance = req.appliance_id.clone();
        for vm in &req.vms {
            require_id("vm_id", &vm.vm_id)?;
        }
        self.0
            .store
            .upsert_vms(&appliance, &req.vms, now_us())
            .await
            .map_err(store_status)?;
        let acked_event_ids = self.0.ingest(&appliance, req.events).await?;
        if !req.healthy {
            warn!(appliance_id = %appliance, problems = ?req.problems, "appliance reports problems");
        }
        let commands = lock(&self.0.pending).remove(&appliance).unwrap_or_default();
        // Newer revocation lists than the appliance's go out with the
        // answer, so that a revocation reaches every appliance within a
        // heartbeat, with no one copying files.
        let (crl_pem, revocation_version) = match self.0.pki.revocation_version().await {
            Ok(Some(v)) if v != req.revocation_version => {
                match self.0.pki.revocation_lists().await {
                    Ok(pem) => (pem, v),
                    Err(e) => {
                        warn!(error = %e, "revocation lists cannot be made for a heartbeat");
                        (String::new(), String::new())
                    }
                }
            }
            _ => (String::new(), String::new()),
        };
        // Told at each heartbeat, so renewal needs no clock on the
        // appliance's side and follows a CA rotation by itself.
        let renew = match caller_certificate(&peer_certs) {
            Some(der) => self.0.pki.renewal_due(&der).await.unwrap_or_else(|e| {
                warn!(error = %e, "cannot tell whether a certificate is due for renewal");
                false
            }),
            None => false,
        };
        Ok(Response::new(HeartbeatResponse {
            acked_event_ids,
            commands,
            crl_pem,
            revocation_version,
            renew,
            ..Default::default()
        }))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<ApplianceCommand, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let appliance = require_id("appliance_id", &request.get_ref().appliance_id)?.to_string();
        self.0
            .authorize_appliance(&request, &appliance, "Subscribe")
            .await?;
        let (tx, rx) = mpsc::channel(64);
        let mut subs = lock(&self.0.subscribers);
        if subs.closed {
            return Err(Status::unavailable("the manager is shutting down"));
        }
        // Anything queued before the channel opened goes out first.
        for cmd in lock(&self.0.pending).remove(&appliance).unwrap_or_default() {
            let _ = tx.try_send(Ok(cmd));
        }
        let der = request
            .peer_certs()
            .and_then(|c| c.first().map(|c| c.as_ref().to_vec()));
        subs.open.insert(appliance, (tx, der));
        drop(subs);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.0.authorize(&request, Role::Reader, "ListEvents")?;
        let req = request.into_inner();
        check_len("vm_id", &req.vm_id, MAX_ID_LEN)?;
        let limit = match req.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n as usize,
        };
        let filter = EventFilter {
            vm_id: (!req.vm_id.is_empty()).then_some(req.vm_id),
            since_us: req.since_us,
            limit,
        };
        let events = self.0.store.events(&filter).await.map_err(store_status)?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    async fn list_vms(
        &self,
        request: Request<ListVmsRequest>,
    ) -> Result<Response<ListVmsResponse>, Status> {
        self.0.authorize(&request, Role::Reader, "ListVms")?;
        let vms = self.0.store.vms().await.map_err(store_status)?;
        Ok(Response::new(ListVmsResponse { vms }))
    }

    async fn untag_vm(
        &self,
        request: Request<UntagVmRequest>,
    ) -> Result<Response<UntagVmResponse>, Status> {
        self.0.authorize(&request, Role::Operator, "UntagVm")?;
        let vm_id = require_id("vm_id", &request.get_ref().vm_id)?;
        let vm = self.0.apply_override(vm_id, Override::Untag).await?;
        Ok(Response::new(UntagVmResponse { vm: Some(vm) }))
    }

    async fn request_scan(
        &self,
        request: Request<RequestScanRequest>,
    ) -> Result<Response<RequestScanResponse>, Status> {
        self.0.authorize(&request, Role::Operator, "RequestScan")?;
        let vm_id = require_id("vm_id", &request.get_ref().vm_id)?.to_string();
        let vm = self
            .0
            .store
            .vm(&vm_id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("unknown VM {vm_id}")))?;
        if vm.appliance_id.is_empty() {
            return Err(Status::failed_precondition(format!(
                "VM {vm_id} has no known appliance yet"
            )));
        }
        // The order's nonce: the scan's record must carry it to release.
        let order_id = giva_runtime::token::random_hex(16)
            .map_err(|e| Status::internal(format!("no random source: {e}")))?;
        let recheck_paths = self
            .0
            .store
            .order_scan(&vm_id, &vm.appliance_id, &order_id, now_us())
            .await
            .map_err(store_status)?;
        let vm = self.0.apply_override(&vm_id, Override::Scan).await?;
        let appliance = vm.appliance_id;
        info!(
            vm_id,
            order_id,
            recheck = recheck_paths.len(),
            "full scan ordered"
        );
        let cmd = ApplianceCommand {
            command: Some(appliance_command::Command::FullScan(FullScanVm {
                vm_id,
                reason: "requested by operator".to_string(),
                order_id,
                recheck_paths,
            })),
        };
        let delivered = self.0.push_command(&appliance, cmd).await;
        Ok(Response::new(RequestScanResponse { delivered }))
    }

    async fn add_exception(
        &self,
        request: Request<AddExceptionRequest>,
    ) -> Result<Response<AddExceptionResponse>, Status> {
        self.0.authorize(&request, Role::Operator, "AddException")?;
        let req = request.into_inner();
        let vm_id = require_id("vm_id", &req.vm_id)?;
        if req.path.is_empty() {
            return Err(Status::invalid_argument("path is required"));
        }
        check_len("path", &req.path, MAX_PATH_LEN)?;
        if req.sha256.len() != 64 || !req.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(
                "sha256 must be the content's SHA-256, 64 hex digits",
            ));
        }
        if req.reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "reason is required: it is kept with the exception",
            ));
        }
        check_len("reason", &req.reason, MAX_PATH_LEN)?;
        self.0
            .store
            .add_exception(
                vm_id,
                &req.path,
                &req.sha256,
                &req.reason,
                "operator",
                now_us(),
            )
            .await
            .map_err(store_status)?;
        info!(vm_id, path = %req.path, sha256 = %req.sha256, reason = %req.reason, "operator added a scan exception");
        Ok(Response::new(AddExceptionResponse {}))
    }

    async fn cancel_actions(
        &self,
        request: Request<CancelActionsRequest>,
    ) -> Result<Response<CancelActionsResponse>, Status> {
        self.0
            .authorize(&request, Role::Operator, "CancelActions")?;
        let vm_id = require_id("vm_id", &request.get_ref().vm_id)?;
        let vm = self
            .0
            .store
            .vm(vm_id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("unknown VM {vm_id}")))?;
        let ids = self
            .0
            .store
            .cancel_actions(vm_id, "operator", now_us())
            .await
            .map_err(store_status)?;
        self.0.tagger.cancel(&ids);
        info!(
            vm_id,
            cancelled = ids.len(),
            "operator cancelled pending tagging actions"
        );
        let vm = self
            .0
            .store
            .vm(vm_id)
            .await
            .map_err(store_status)?
            .or(Some(vm));
        Ok(Response::new(CancelActionsResponse {
            cancelled: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            vm,
        }))
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        if req.token.len() > 256 || req.csr_pem.len() > 16 * 1024 {
            return Err(Status::invalid_argument(
                "an enrollment token is at most 256 bytes and a request 16 KiB",
            ));
        }
        let role = match req.role.as_str() {
            "" => None,
            "appliance" => Some(crate::ca::Role::Appliance),
            "vm" => Some(crate::ca::Role::Vm),
            other => {
                return Err(Status::invalid_argument(format!(
                    "no enrollment as '{other}': appliance or vm"
                )));
            }
        };
        let delegate = (!req.delegate_csr_pem.is_empty()).then_some(req.delegate_csr_pem.as_str());
        if delegate.is_some_and(|d| d.len() > 16 * 1024) {
            return Err(Status::invalid_argument("a request is at most 16 KiB"));
        }
        match self
            .0
            .pki
            .enroll(&req.token, &req.csr_pem, delegate, role, ENROLLED_DAYS)
            .await
        {
            Ok(e) => {
                info!(role = e.role.as_str(), name = %e.name, serial = %e.cert.serial, delegate = e.delegate.is_some(), ?peer, "enrolled");
                enrollment_response(&self.0, e).await.map(Response::new)
            }
            Err(e) => {
                let status = pki_status(&e);
                self.0.stats.refusal("Enroll", status.code());
                warn!(?peer, error = %e, "enrollment refused");
                Err(status)
            }
        }
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let refuse = |status: Status| {
            self.0.stats.refusal("Renew", status.code());
            status
        };
        if !self
            .0
            .appliance_certs
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(refuse(Status::failed_precondition(
                "renewal needs mTLS: this manager does not authenticate appliances (--client-ca)",
            )));
        }
        let Some(name) = giva_proto::tls::peer_name(&request, giva_proto::tls::Role::Appliance)
        else {
            return Err(refuse(Status::unauthenticated(
                "renewal needs the appliance's current certificate",
            )));
        };
        self.0.authorize_appliance(&request, &name, "Renew").await?;
        let Some(current) = caller_certificate(&request.peer_certs()) else {
            return Err(refuse(Status::unauthenticated(
                "renewal needs the appliance's current certificate",
            )));
        };
        let req = request.into_inner();
        if req.csr_pem.len() > 16 * 1024 || req.delegate_csr_pem.len() > 16 * 1024 {
            return Err(refuse(Status::invalid_argument(
                "a request is at most 16 KiB",
            )));
        }
        let delegate = (!req.delegate_csr_pem.is_empty()).then_some(req.delegate_csr_pem.as_str());
        let e = match self
            .0
            .pki
            .renew(&current, &req.csr_pem, delegate, ENROLLED_DAYS)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                warn!(appliance = %name, error = %e, "renewal refused");
                return Err(refuse(pki_status(&e)));
            }
        };
        info!(appliance = %e.name, serial = %e.cert.serial, delegate = e.delegate.is_some(), "certificate renewed");
        enrollment_response(&self.0, e).await.map(Response::new)
    }
}

/// The answer to an enrollment or a renewal, with the revocation lists:
/// without them an enrolled host would turn revocation off without knowing
/// it, so no answer rather than that.
async fn enrollment_response(
    manager: &Manager,
    e: crate::pki::Enrollment,
) -> Result<EnrollResponse, Status> {
    let crl_pem = manager.pki.revocation_lists().await.map_err(|e| {
        tracing::error!(error = %e, "no revocation lists for an enrollment");
        Status::internal(format!("the revocation lists cannot be made: {e}"))
    })?;
    Ok(EnrollResponse {
        cert_pem: e.cert.cert_pem,
        ca_pem: e.ca_pem,
        crl_pem,
        role: e.role.as_str().to_string(),
        name: e.name,
        delegate_cert_pem: e.delegate.map(|d| d.cert_pem).unwrap_or_default(),
        clone_key: e.clone_key.unwrap_or_default(),
    })
}

/// The status for a PKI refusal or failure.
fn pki_status(e: &crate::pki::PkiError) -> Status {
    match e {
        crate::pki::PkiError::Refused(why) => Status::permission_denied(why.clone()),
        crate::pki::PkiError::NoCa => Status::failed_precondition(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// The first certificate a caller showed (DER).
fn caller_certificate(
    certs: &Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
) -> Option<Vec<u8>> {
    certs
        .as_ref()
        .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
}

/// How long an enrolled certificate is valid, in days.
pub const ENROLLED_DAYS: u32 = 365;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// An appliance re-subscribing the moment shutdown ended its stream
    /// used to open a stream nobody would close, and the graceful stop
    /// waited for it forever.
    #[tokio::test]
    async fn subscribing_after_shutdown_began_is_refused() {
        let store = Store::open(std::path::Path::new(":memory:")).await.unwrap();
        let grpc = ManagerGrpc(Manager::new(store));
        let req = || {
            Request::new(SubscribeRequest {
                appliance_id: "a".into(),
            })
        };
        assert!(grpc.subscribe(req()).await.is_ok());
        grpc.0.close_subscriptions();
        let refused = grpc.subscribe(req()).await.err().expect("refused");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }
}
