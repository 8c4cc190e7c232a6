//! The operator commands: `events`, `vms`, `untag`, `scan`, `cancel` and
//! `except` over gRPC,
//! and `transitions` from the database file.

use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{
    Action, AddExceptionRequest, CancelActionsRequest, EventKind, ListEventsRequest,
    ListVmsRequest, RequestScanRequest, StoredEvent, UntagVmRequest, VmState as VmRecord,
};
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::cli::args::ManagerUrl;
use crate::store::{Store, Transition};
use crate::time::format_us;

/// One event as the `events` command prints it in JSON.
#[derive(Debug, Serialize)]
pub struct EventRow {
    /// Event id.
    pub event_id: String,
    /// Kind, e.g. "detection".
    pub kind: String,
    /// Appliance id.
    pub appliance_id: String,
    /// VM id.
    pub vm_id: String,
    /// VM name.
    pub vm_name: String,
    /// Path in the guest.
    pub path: String,
    /// Signature names.
    pub signatures: Vec<String>,
    /// "denied" or "reported".
    pub action: String,
    /// Appliance time of detection.
    pub detected_at: String,
    /// Manager time of commit.
    pub received_at: String,
    /// Milliseconds between the two (clock skew included).
    pub delay_ms: f64,
    /// Free-text detail.
    pub detail: String,
    /// The member of the file a detection was made in
    /// (`outer.zip!mid.zip!p.exe`), if not the file itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub member: String,
}

impl From<&StoredEvent> for EventRow {
    fn from(s: &StoredEvent) -> Self {
        let e = s.event.clone().unwrap_or_default();
        let kind = EventKind::try_from(e.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("EVENT_KIND_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| e.kind.to_string());
        let action = Action::try_from(e.action)
            .map(|a| a.as_str_name().trim_start_matches("ACTION_").to_lowercase())
            .unwrap_or_default();
        EventRow {
            event_id: e.event_id,
            kind,
            appliance_id: e.appliance_id,
            vm_id: e.vm_id,
            vm_name: e.vm_name,
            path: e.path,
            signatures: e.signatures,
            action,
            detected_at: format_us(e.detected_at_us),
            received_at: format_us(s.received_at_us),
            delay_ms: (s.received_at_us - e.detected_at_us) as f64 / 1000.0,
            detail: e.detail,
            member: e.member,
        }
    }
}

/// A client that calls with the token of `manager.token_file()`, if it
/// can be read (else with none, and the manager says the call needs one).
type Client = ManagerServiceClient<InterceptedService<Channel, WithToken>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct WithToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl WithToken {
    /// Calls with `token`.
    pub fn new(token: &giva_runtime::Secret) -> Self {
        WithToken(format!("Bearer {}", token.expose()).parse().ok())
    }
}

impl std::fmt::Debug for WithToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithToken(<redacted>)")
    }
}

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

async fn connect(manager: &ManagerUrl) -> anyhow::Result<Client> {
    let url = &manager.url;
    let tls = giva_proto::tls::ClientFiles {
        ca: manager.ca_file.clone().unwrap_or_default(),
        ..Default::default()
    };
    let channel = tls
        .endpoint(url)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the manager at {url}: {}",
                giva_proto::tls::explain(&e)
            )
        })?;
    let token = match giva_runtime::token::read(&manager.token_file()) {
        Ok(t) => WithToken::new(&t),
        Err(e) => {
            tracing::debug!(error = %e, "calling without a token");
            WithToken(None)
        }
    };
    Ok(ManagerServiceClient::with_interceptor(channel, token))
}

/// A call's refusal, with what to do about it.
fn refused(s: &tonic::Status, manager: &ManagerUrl) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => anyhow::anyhow!(
            "{} (token file: {})",
            s.message(),
            manager.token_file().display()
        ),
        _ => anyhow::anyhow!("{}", s.message()),
    }
}

/// `giva-manager events`: prints stored events.
///
/// # Errors
///
/// The manager cannot be reached or refuses the query.
pub async fn events(
    manager: &ManagerUrl,
    vm: Option<String>,
    since_us: i64,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    let resp = client
        .list_events(ListEventsRequest {
            vm_id: vm.unwrap_or_default(),
            since_us,
            limit: 0,
        })
        .await
        .map_err(|s| refused(&s, manager))?
        .into_inner();
    for ev in &resp.events {
        let row = EventRow::from(ev);
        if json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{}  {:<9} vm={} path={} signatures={} action={} detected_at={} received_at={} (+{:.1} ms)",
                row.event_id,
                row.kind,
                row.vm_id,
                if row.path.is_empty() { "-" } else { &row.path },
                if row.signatures.is_empty() {
                    "-".to_string()
                } else {
                    row.signatures.join(",")
                },
                if row.action.is_empty() {
                    "-"
                } else {
                    &row.action
                },
                row.detected_at,
                row.received_at,
                row.delay_ms,
            );
            if !row.member.is_empty() {
                println!("    found in {}", row.member);
            }
            if !row.detail.is_empty() {
                println!("    {}", row.detail);
            }
        }
    }
    if !json && resp.events.is_empty() {
        eprintln!("no events");
    }
    Ok(())
}

/// One VM as the `vms` command prints it in JSON.
#[derive(Debug, Serialize)]
pub struct VmRow {
    /// VM id.
    pub vm_id: String,
    /// VM name.
    pub name: String,
    /// Image id.
    pub image_id: String,
    /// Serving appliance.
    pub appliance_id: String,
    /// State.
    pub state: String,
    /// Quarantine tag applied.
    pub tagged: bool,
    /// Detections recorded.
    pub detections: u64,
    /// Last seen.
    pub last_seen: String,
    /// Last tagging outcome.
    pub last_action: String,
}

impl From<&VmRecord> for VmRow {
    fn from(v: &VmRecord) -> Self {
        let info = v.vm.clone().unwrap_or_default();
        VmRow {
            vm_id: info.vm_id,
            name: info.name,
            image_id: info.image_id,
            appliance_id: v.appliance_id.clone(),
            state: v.state.clone(),
            tagged: v.tagged,
            detections: v.detections,
            last_seen: format_us(v.last_seen_us),
            last_action: v.last_action.clone(),
        }
    }
}

/// `giva-manager vms`: prints the VM inventory.
///
/// # Errors
///
/// The manager cannot be reached.
pub async fn vms(manager: &ManagerUrl, json: bool) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    let resp = client
        .list_vms(ListVmsRequest {})
        .await
        .map_err(|s| refused(&s, manager))?
        .into_inner();
    for vm in &resp.vms {
        let row = VmRow::from(vm);
        if json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{:<36} {:<20} state={:<14} tagged={} detections={} appliance={} last_seen={} last_action={}",
                row.vm_id,
                row.name,
                row.state,
                row.tagged,
                row.detections,
                row.appliance_id,
                row.last_seen,
                if row.last_action.is_empty() {
                    "-"
                } else {
                    &row.last_action
                }
            );
        }
    }
    if !json && resp.vms.is_empty() {
        eprintln!("no VMs");
    }
    Ok(())
}

/// `giva-manager untag VM`: removes the quarantine (manual override).
///
/// # Errors
///
/// The manager cannot be reached, or does not know the VM.
pub async fn untag(manager: &ManagerUrl, vm_id: &str) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    let resp = client
        .untag_vm(UntagVmRequest {
            vm_id: vm_id.to_string(),
        })
        .await
        .map_err(|s| refused(&s, manager))?
        .into_inner();
    let vm = resp.vm.unwrap_or_default();
    println!(
        "{vm_id}: state={} tagged={} last_action={}",
        vm.state, vm.tagged, vm.last_action
    );
    Ok(())
}

/// `giva-manager scan VM`: asks the VM's appliance for a full scan.
///
/// # Errors
///
/// The manager cannot be reached, or does not know the VM or its appliance.
pub async fn scan(manager: &ManagerUrl, vm_id: &str) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    let resp = client
        .request_scan(RequestScanRequest {
            vm_id: vm_id.to_string(),
        })
        .await
        .map_err(|s| refused(&s, manager))?
        .into_inner();
    if resp.delivered {
        println!("{vm_id}: full scan requested; the appliance has the command");
    } else {
        println!("{vm_id}: full scan requested; it goes out with the appliance's next heartbeat");
    }
    Ok(())
}

/// One transition as `transitions --json` prints it.
#[derive(Debug, Serialize)]
struct TransitionRow<'a> {
    #[serde(flatten)]
    t: &'a Transition,
    at: String,
}

/// `giva-manager transitions`: prints stored state changes and the
/// tagging actions they queued, read from the database file.
///
/// # Errors
///
/// The database cannot be opened or read.
pub async fn transitions(
    db: &std::path::Path,
    vm: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    let store = Store::open(db).await?;
    let transitions = store.transitions(vm, limit).await?;
    let actions = store.actions(vm, limit.saturating_mul(4)).await?;
    for t in &transitions {
        let acts: Vec<_> = actions.iter().filter(|a| a.transition_id == t.id).collect();
        if json {
            let mut v = serde_json::to_value(TransitionRow {
                t,
                at: format_us(t.at_us),
            })?;
            v["actions"] = serde_json::to_value(&acts)?;
            println!("{v}");
        } else {
            println!(
                "{}  {}  {} -> {}  {}",
                format_us(t.at_us),
                t.vm_id,
                t.from,
                t.to,
                t.cause
            );
            for a in acts {
                println!(
                    "    {} {} {} (attempts {}) {}",
                    a.action, a.op, a.status, a.attempts, a.detail
                );
            }
        }
    }
    if !json && transitions.is_empty() {
        eprintln!("no transitions");
    }
    store.close().await;
    Ok(())
}

/// `giva-manager cancel`: cancels a VM's pending tagging actions.
///
/// # Errors
///
/// The manager cannot be reached, refuses, or does not know the VM.
pub async fn cancel(manager: &ManagerUrl, vm_id: &str) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    let resp = client
        .cancel_actions(CancelActionsRequest {
            vm_id: vm_id.to_string(),
        })
        .await
        .map_err(|s| refused(&s, manager))?
        .into_inner();
    let vm = resp.vm.unwrap_or_default();
    println!(
        "{vm_id}: {} pending action{} cancelled; state {}, tagged {}",
        resp.cancelled,
        if resp.cancelled == 1 { "" } else { "s" },
        vm.state,
        vm.tagged
    );
    Ok(())
}

/// `giva-manager except`: records an exception for one skipped file.
///
/// # Errors
///
/// The manager cannot be reached or refuses.
pub async fn except(
    manager: &ManagerUrl,
    vm_id: &str,
    path: &str,
    sha256: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let mut client = connect(manager).await?;
    client
        .add_exception(AddExceptionRequest {
            vm_id: vm_id.to_string(),
            path: path.to_string(),
            sha256: sha256.to_string(),
            reason: reason.to_string(),
        })
        .await
        .map_err(|s| refused(&s, manager))?;
    println!("{vm_id}: a scan may skip {path} with content {sha256} ({reason})");
    Ok(())
}
