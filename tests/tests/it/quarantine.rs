//! Quarantine by security tag (issue 8): a detection tags the VM through a
//! local NSX-T endpoint (and a signed webhook, and a command hook), a clean
//! full scan removes the tag, a failing endpoint is retried and reported,
//! and a restarted manager resumes its pending actions.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use giva_manager::config::{ActionConfig, CommandConfig, Config, NsxConfig, TagOn, WebhookConfig};
use giva_manager::quarantine::VmState as Quarantine;
use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{
    Action, CancelActionsRequest, Event, EventKind, NotifyRequest, RequestScanRequest, ScanSummary,
    UntagVmRequest, VmState,
};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::common::{
    config_with_manager, eventually, operator_client, shim_scan, start_appliance, start_manager,
    start_manager_with, write, write_eicars,
};

const SECRET: &str = "webhook-secret";
const NSX_USER: &str = "admin";
const NSX_PASSWORD: &str = "VMware1!VMware1!";

/// One call the fake endpoints received.
#[derive(Debug, Clone)]
struct Call {
    /// "add_tags", "remove_tags", or "webhook".
    kind: String,
    /// The JSON body.
    body: Value,
    /// The Authorization header.
    auth: String,
    /// Webhook: the signature header matched the body.
    signature_ok: bool,
    /// The status answered.
    status: u16,
}

/// Shared state of the fake NSX Manager and webhook receiver.
#[derive(Debug, Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    /// Answer NSX calls with this status (0 = 204 No Content).
    fail_status: AtomicU16,
    /// Hold each NSX call this long.
    delay_ms: AtomicU64,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
}

impl Fake {
    fn calls(&self, kind: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect()
    }

    fn succeeded(&self, kind: &str) -> Vec<Call> {
        self.calls(kind)
            .into_iter()
            .filter(|c| c.status < 300)
            .collect()
    }
}

/// A local HTTP server implementing `POST /api/v1/fabric/virtual-machines`
/// with `?action=add_tags|remove_tags` as NSX-T documents it (body
/// `VirtualMachineTagUpdate`, answer 204), plus `POST /hook`.
struct FakeServer {
    url: String,
    state: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn nsx_handler(
    State(fake): State<Arc<Fake>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = fake.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_inflight.fetch_max(now, Ordering::SeqCst);
    let delay = fake.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let kind = match query.as_deref() {
        Some("action=add_tags") => "add_tags",
        Some("action=remove_tags") => "remove_tags",
        _ => "bad-action",
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let well_formed = body["external_id"].as_str().is_some_and(|s| !s.is_empty())
        && body["tags"].as_array().is_some_and(|tags| {
            !tags.is_empty()
                && tags.iter().all(|t| {
                    t["tag"].is_string() && (t["scope"].is_string() || t["scope"].is_null())
                })
        });
    let status = match fake.fail_status.load(Ordering::SeqCst) {
        _ if kind == "bad-action" || !well_formed => 400,
        0 => 204,
        s => s,
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    fake.calls.lock().unwrap().push(Call {
        kind: kind.into(),
        body,
        auth,
        signature_ok: false,
        status,
    });
    fake.inflight.fetch_sub(1, Ordering::SeqCst);
    StatusCode::from_u16(status).unwrap()
}

async fn hook_handler(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get("x-giva-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature_ok = sig
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|raw| mac.verify_slice(&raw).is_ok());
    let status = if signature_ok { 200 } else { 401 };
    fake.calls.lock().unwrap().push(Call {
        kind: "webhook".into(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        auth: String::new(),
        signature_ok,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

async fn start_fake() -> FakeServer {
    let state = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route(
            "/api/v1/fabric/virtual-machines",
            axum::routing::post(nsx_handler),
        )
        .route("/hook", axum::routing::post(hook_handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeServer { url, state, task }
}

fn nsx_action(url: &str) -> ActionConfig {
    ActionConfig::Nsx(NsxConfig {
        url: url.to_string(),
        user: NSX_USER.into(),
        password: NSX_PASSWORD.into(),
        timeout_ms: 5_000,
        ..NsxConfig::default()
    })
}

fn webhook_action(url: &str) -> ActionConfig {
    ActionConfig::Webhook(WebhookConfig {
        url: format!("{url}/hook"),
        secret: SECRET.into(),
        ..WebhookConfig::default()
    })
}

/// A config with fast retries.
fn config(actions: Vec<ActionConfig>) -> Config {
    let mut c = Config {
        actions,
        ..Config::default()
    };
    c.quarantine.max_attempts = 3;
    c.quarantine.initial_backoff_ms = 20;
    c.quarantine.max_backoff_ms = 100;
    c
}

fn detection(vm: &str, id: &str, action: Action) -> Event {
    Event {
        event_id: id.into(),
        kind: EventKind::Detection as i32,
        appliance_id: "app-1".into(),
        vm_id: vm.into(),
        vm_name: format!("name-{vm}"),
        path: "/tmp/eicar.com".into(),
        signatures: vec!["Win.Test.EICAR_HDB-1".into()],
        action: action as i32,
        detected_at_us: giva_proto::now_us(),
        ..Event::default()
    }
}

/// The record of a clean full scan that an appliance's schedule ordered,
/// as an appliance would report it.
fn clean_scan(vm: &str, id: &str) -> Event {
    Event {
        event_id: id.into(),
        kind: EventKind::ScanCompleted as i32,
        appliance_id: "app-1".into(),
        vm_id: vm.into(),
        detected_at_us: giva_proto::now_us(),
        scan: Some(ScanSummary {
            files_scanned: 10,
            files_infected: 0,
            files_failed: 0,
            completed: true,
            ordered_by: "schedule".into(),
            roots: vec!["/".into()],
            started_at_us: giva_proto::now_us(),
            finished_at_us: giva_proto::now_us(),
            rechecked: vec!["/tmp/eicar.com".into()],
            ..ScanSummary::default()
        }),
        ..Event::default()
    }
}

async fn client(url: &str) -> ManagerServiceClient<tonic::transport::Channel> {
    ManagerServiceClient::connect(url.to_string())
        .await
        .expect("manager reachable")
}

async fn notify(url: &str, events: Vec<Event>) {
    let n = events.len();
    let resp = client(url)
        .await
        .notify(NotifyRequest {
            appliance_id: "app-1".into(),
            events,
        })
        .await
        .expect("notify")
        .into_inner();
    assert_eq!(resp.acked_event_ids.len(), n);
}

async fn vm(mgr: &giva_manager::Manager, id: &str) -> VmState {
    mgr.store()
        .vm(id)
        .await
        .expect("store")
        .unwrap_or_else(|| panic!("VM {id} known"))
}

/// Waits until VM `id` satisfies `f`, then returns it.
async fn wait_vm(mgr: &giva_manager::Manager, id: &str, f: impl Fn(&VmState) -> bool) -> VmState {
    let ok = eventually(Duration::from_secs(15), || async {
        mgr.store()
            .vm(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|v| f(&v))
    })
    .await;
    let v = vm(mgr, id).await;
    if !ok {
        let events = mgr
            .store()
            .events(&giva_manager::store::EventFilter {
                vm_id: Some(id.to_string()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("events");
        let causes = causes(mgr, id).await;
        panic!(
            "VM {id} never reached the expected state: {v:?}\nits transitions: {causes:?}\nits events: {events:?}"
        );
    }
    v
}

/// Asks for a full scan of `vm_id` with the operator's token until the
/// appliance has the command.
async fn order_scan(url: &str, mgr: &giva_manager::Manager, vm_id: &str) {
    let c = operator_client(url, mgr).await;
    let delivered = eventually(Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            c.request_scan(RequestScanRequest {
                vm_id: vm_id.into(),
            })
            .await
            .is_ok_and(|r| r.into_inner().delivered)
        }
    })
    .await;
    assert!(delivered, "scan request reached the appliance's channel");
}

/// The causes of `vm_id`'s transitions, oldest first.
async fn causes(mgr: &giva_manager::Manager, vm_id: &str) -> Vec<(Quarantine, Quarantine, String)> {
    mgr.store()
        .transitions(Some(vm_id), 100)
        .await
        .expect("transitions")
        .into_iter()
        .map(|t| (t.from, t.to, t.cause))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_tags_the_vm_and_only_an_ordered_clean_full_scan_untags_it() {
    let fake = start_fake().await;
    let (manager, mgr) = start_manager_with(
        None,
        None,
        &config(vec![nsx_action(&fake.url), webhook_action(&fake.url)]),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = dir.path().join("guest");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&guest).expect("mkdir");
    std::fs::create_dir(&empty).expect("mkdir");
    write_eicars(&guest, 1);
    write(&guest, "readme.txt", b"nothing to see here\n");
    // An ordered full scan walks the policy's roots: here, the guest dir.
    let mut aconfig = config_with_manager(&manager.url());
    aconfig.policy.full_scan_roots = vec![guest.display().to_string()];
    // Records of scans the guest starts ride the heartbeat: a short one.
    aconfig.manager.heartbeat_interval_secs = 1;
    let (appliance, _app) = start_appliance(aconfig).await;

    // The shim's VM id is the NSX external id (instance UUID).
    let vm_id = "4210a3b2-5c7e-4e7d-9f1a-0123456789ab";
    let summary = shim_scan(&appliance.url(), vm_id, &guest).await;
    assert_eq!(summary.infected, 1);

    let v = wait_vm(&mgr, vm_id, |v| v.tagged).await;
    assert_eq!(v.state, "infected");
    assert!(v.last_action.contains("nsx applied"), "{}", v.last_action);
    assert!(
        v.last_action.contains("webhook applied"),
        "{}",
        v.last_action
    );
    let adds = fake.state.succeeded("add_tags");
    assert_eq!(adds.len(), 1, "one add_tags call: {adds:?}");
    assert_eq!(adds[0].body["external_id"], vm_id);
    assert_eq!(adds[0].body["tags"][0]["scope"], "ANTI_VIRUS");
    assert_eq!(adds[0].body["tags"][0]["tag"], "VirusFound.threat=high");
    assert!(adds[0].auth.starts_with("Basic "), "basic auth sent");
    let hooks = fake.state.calls("webhook");
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].signature_ok, "HMAC verifies");
    assert_eq!(hooks[0].body["op"], "tag");
    assert_eq!(hooks[0].body["vm_id"], vm_id);
    assert_eq!(hooks[0].body["to_state"], "infected");

    // The guest scans an empty directory by itself: recorded, and the VM
    // stays quarantined.
    let summary = shim_scan(&appliance.url(), vm_id, &empty).await;
    assert_eq!((summary.infected, summary.failed), (0, 0));
    assert!(
        eventually(Duration::from_secs(10), || async {
            causes(&mgr, vm_id).await.iter().any(|(_, _, c)| {
                c.contains("does not release") && c.contains("started by the guest")
            })
        })
        .await,
        "{:?}",
        causes(&mgr, vm_id).await
    );
    let v = vm(&mgr, vm_id).await;
    assert!(v.tagged && v.state == "infected", "{v:?}");
    assert!(fake.state.calls("remove_tags").is_empty(), "no untag call");

    // The VM's shim now runs on-access; the operator orders a full scan,
    // which still finds the EICAR file: the VM stays quarantined.
    let mut wconfig = giva_shim::watch::WatchConfig::new(
        appliance.url(),
        giva_proto::shim::VmIdentity {
            vm_id: vm_id.into(),
            name: vm_id.into(),
            ..Default::default()
        },
        vec![guest.clone()],
    );
    wconfig.backend = giva_shim::watch::Backend::Notify;
    wconfig.vault = dir.path().join("vault");
    let watcher = giva_shim::watch::Watcher::start(wconfig)
        .await
        .expect("watcher starts");
    assert!(eventually(Duration::from_secs(5), || async { watcher.is_connected() }).await);
    order_scan(&manager.url(), &mgr, vm_id).await;
    // The ordered scan's record, not the guest's own (which says
    // "infected" too): the next step must not race this scan.
    assert!(
        eventually(Duration::from_secs(20), || async {
            causes(&mgr, vm_id).await.iter().any(|(_, _, c)| {
                c.contains("does not release")
                    && c.contains(" infected")
                    && !c.contains("started by the guest")
            })
        })
        .await,
        "{:?}",
        causes(&mgr, vm_id).await
    );
    assert!(vm(&mgr, vm_id).await.tagged);

    // The file is cleaned up; the next ordered scan finds the detected
    // path gone and the rest clean, and the manager removes the tag.
    std::fs::remove_file(guest.join("eicar-000.com")).expect("clean up");
    order_scan(&manager.url(), &mgr, vm_id).await;
    let v = wait_vm(&mgr, vm_id, |v| !v.tagged && v.state == "clean").await;
    assert!(v.last_action.starts_with("untag"), "{}", v.last_action);
    let removes = fake.state.succeeded("remove_tags");
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].body["external_id"], vm_id);
    assert_eq!(removes[0].body["tags"][0]["tag"], "VirusFound.threat=high");
    assert!(
        fake.state
            .calls("webhook")
            .iter()
            .any(|h| h.body["op"] == "untag" && h.signature_ok)
    );

    // Every step is stored with its cause; the last is the release.
    let all = causes(&mgr, vm_id).await;
    let (from, to, cause) = all.last().expect("transitions").clone();
    assert_eq!((from, to), (Quarantine::ScanRequested, Quarantine::Clean));
    assert!(
        cause.contains("clean full scan ordered by the manager"),
        "{cause}"
    );
    let changes: Vec<(Quarantine, Quarantine)> = all
        .iter()
        .filter(|(f, t, _)| f != t)
        .map(|(f, t, _)| (*f, *t))
        .collect();
    assert_eq!(
        changes.first(),
        Some(&(Quarantine::Clean, Quarantine::Infected))
    );
    assert!(changes.contains(&(Quarantine::Infected, Quarantine::ScanRequested)));

    operator_client(&manager.url(), &mgr)
        .await
        .untag_vm(UntagVmRequest {
            vm_id: vm_id.into(),
        })
        .await
        .expect("manual untag works on a clean VM too");
    watcher.stop().await;
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_nsx_endpoint_is_retried_then_reported_failed() {
    let fake = start_fake().await;
    fake.state.fail_status.store(500, Ordering::SeqCst);
    let (manager, mgr) = start_manager_with(None, None, &config(vec![nsx_action(&fake.url)])).await;

    notify(
        &manager.url(),
        vec![detection("vm-fail", "ev-fail-1", Action::Denied)],
    )
    .await;
    let v = wait_vm(&mgr, "vm-fail", |v| {
        v.last_action.contains("nsx failed after")
    })
    .await;
    assert!(
        !v.tagged,
        "a tag that was never applied is not shown as applied"
    );
    assert_eq!(v.state, "infected");
    assert!(
        v.last_action
            .contains("nsx failed after 3 attempts: HTTP 500"),
        "{}",
        v.last_action
    );
    assert_eq!(fake.state.calls("add_tags").len(), 3, "bounded attempts");
    let actions = mgr
        .store()
        .actions(Some("vm-fail"), 10)
        .await
        .expect("actions");
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].status.as_str(), actions[0].attempts),
        ("failed", 3)
    );

    // The next detection tries the tag again; now NSX answers.
    fake.state.fail_status.store(0, Ordering::SeqCst);
    notify(
        &manager.url(),
        vec![detection("vm-fail", "ev-fail-2", Action::Denied)],
    )
    .await;
    let v = wait_vm(&mgr, "vm-fail", |v| v.tagged).await;
    assert!(v.last_action.contains("nsx applied"), "{}", v.last_action);
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_manager_resumes_pending_actions() {
    let fake = start_fake().await;
    fake.state.fail_status.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("manager.sqlite");
    let mut cfg = config(vec![nsx_action(&fake.url)]);
    cfg.quarantine.max_attempts = 1_000;
    cfg.quarantine.initial_backoff_ms = 50;
    cfg.quarantine.max_backoff_ms = 50;

    let (manager, mgr) = start_manager_with(None, Some(&db), &cfg).await;
    let addr = manager.addr;
    notify(
        &manager.url(),
        vec![detection("vm-restart", "ev-r-1", Action::Denied)],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            fake.state.calls("add_tags").len() >= 2
        })
        .await,
        "NSX is being retried"
    );
    let pending = mgr.store().pending_actions().await.expect("pending");
    assert_eq!(pending.len(), 1, "the action is pending while NSX is down");
    let v = wait_vm(&mgr, "vm-restart", |v| v.last_action.contains("retrying")).await;
    assert!(v.last_action.contains("HTTP 503"), "{}", v.last_action);
    manager.stop().await;
    drop(mgr);

    // NSX recovers while the manager is down; the restarted manager resumes.
    fake.state.fail_status.store(0, Ordering::SeqCst);
    let (manager, mgr) = start_manager_with(Some(addr), Some(&db), &cfg).await;
    let v = wait_vm(&mgr, "vm-restart", |v| v.tagged).await;
    assert_eq!(v.state, "infected");
    assert_eq!(fake.state.succeeded("add_tags").len(), 1);
    assert_eq!(
        fake.state.succeeded("add_tags")[0].body["external_id"],
        "vm-restart"
    );
    assert!(
        mgr.store()
            .pending_actions()
            .await
            .expect("pending")
            .is_empty()
    );
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_retried_until_applied_unless_superseded_or_cancelled() {
    let fake = start_fake().await;
    fake.state.fail_status.store(503, Ordering::SeqCst);
    let mut cfg = config(vec![nsx_action(&fake.url)]);
    cfg.quarantine.max_attempts = 0; // the default: until applied
    cfg.quarantine.overdue_secs = 0;
    let (manager, mgr) = start_manager_with(None, None, &cfg).await;
    for vm in ["vm-a", "vm-b", "vm-c"] {
        notify(
            &manager.url(),
            vec![detection(vm, &format!("ev-{vm}"), Action::Denied)],
        )
        .await;
    }
    // Far past the old give-up point (5 attempts), still retrying, and
    // the manager's health says so.
    assert!(
        eventually(Duration::from_secs(15), || async {
            fake.state.calls("add_tags").len() >= 3 * 8
        })
        .await,
        "NSX is retried"
    );
    let v = vm(&mgr, "vm-a").await;
    assert!(v.last_action.contains("retrying"), "{}", v.last_action);
    assert_eq!(
        mgr.store().pending_actions().await.expect("pending").len(),
        3
    );
    let health = mgr.health().await;
    assert!(
        health
            .iter()
            .any(|p| p.contains("has been pending") && p.contains("HTTP 503")),
        "{health:?}"
    );

    let mut op = operator_client(&manager.url(), &mgr).await;
    // vm-b's NSX object is gone for good: the operator cancels its tag.
    let resp = op
        .cancel_actions(CancelActionsRequest {
            vm_id: "vm-b".into(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(resp.cancelled, 1);
    // vm-c is released by hand while its tag still fails: the untag
    // supersedes the tag, which is then never applied.
    op.untag_vm(UntagVmRequest {
        vm_id: "vm-c".into(),
    })
    .await
    .expect("untag");

    // NSX recovers: vm-a is tagged, vm-c untagged, vm-b left alone.
    fake.state.fail_status.store(0, Ordering::SeqCst);
    let a = wait_vm(&mgr, "vm-a", |v| v.tagged).await;
    assert!(a.last_action.contains("nsx applied"), "{}", a.last_action);
    let c = wait_vm(&mgr, "vm-c", |v| {
        v.last_action.contains("untag") && v.last_action.contains("applied")
    })
    .await;
    assert!(!c.tagged);
    let ok_tags: Vec<_> = fake
        .state
        .succeeded("add_tags")
        .iter()
        .map(|c| {
            c.body["external_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(ok_tags, ["vm-a"], "only vm-a's tag was applied");
    assert_eq!(fake.state.succeeded("remove_tags").len(), 1);
    let status = |rows: Vec<giva_manager::store::ActionRow>| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{} {}", r.op, r.status))
            .collect()
    };
    assert_eq!(
        status(
            mgr.store()
                .actions(Some("vm-b"), 10)
                .await
                .expect("actions")
        ),
        ["tag cancelled"]
    );
    assert_eq!(
        status(
            mgr.store()
                .actions(Some("vm-c"), 10)
                .await
                .expect("actions")
        ),
        ["tag superseded", "untag applied"]
    );
    assert!(
        mgr.store()
            .pending_actions()
            .await
            .expect("pending")
            .is_empty()
    );
    assert!(mgr.health().await.is_empty());
    manager.stop().await;
}

fn write_script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = write(dir, name, format!("#!/bin/sh\n{body}\n").as_bytes());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_hook_gets_the_event_as_json_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let hook = write_script(dir.path(), "hook.sh", "cat >> \"$1\"\necho >> \"$1\"");
    let failing = write_script(
        dir.path(),
        "fail.sh",
        "echo no quarantine today >&2\nexit 3",
    );
    let cfg = config(vec![
        ActionConfig::Command(CommandConfig {
            program: hook,
            args: vec![out.display().to_string()],
            ..CommandConfig::default()
        }),
        ActionConfig::Command(CommandConfig {
            name: "failing".into(),
            program: failing,
            ..CommandConfig::default()
        }),
    ]);
    let (manager, mgr) = start_manager_with(None, None, &cfg).await;
    notify(
        &manager.url(),
        vec![detection("vm-cmd", "ev-c-1", Action::Reported)],
    )
    .await;
    let v = wait_vm(&mgr, "vm-cmd", |v| {
        v.last_action.contains("failing failed") && v.last_action.contains("command applied")
    })
    .await;
    assert!(
        v.last_action.contains("command applied"),
        "{}",
        v.last_action
    );
    assert!(
        v.last_action.contains("exit status 3: no quarantine today"),
        "{}",
        v.last_action
    );
    assert!(!v.tagged, "not every action applied the tag");

    operator_client(&manager.url(), &mgr)
        .await
        .untag_vm(UntagVmRequest {
            vm_id: "vm-cmd".into(),
        })
        .await
        .expect("untag");
    assert!(
        eventually(Duration::from_secs(15), || async {
            std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() >= 2)
        })
        .await
    );
    let docs: Vec<Value> = std::fs::read_to_string(&out)
        .expect("hook output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per run"))
        .collect();
    assert_eq!(docs[0]["op"], "tag");
    assert_eq!(docs[0]["vm_id"], "vm-cmd");
    assert_eq!(docs[0]["event_id"], "ev-c-1");
    assert_eq!(docs[0]["action"], "reported");
    assert_eq!(docs[0]["signatures"][0], "Win.Test.EICAR_HDB-1");
    assert_eq!(docs[1]["op"], "untag");
    assert_eq!(docs[1]["cause"], "untagged by operator");
    assert_eq!(vm(&mgr, "vm-cmd").await.state, "clean");
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbreak_is_tagged_concurrently_and_ingest_does_not_wait() {
    let fake = start_fake().await;
    fake.state.delay_ms.store(200, Ordering::SeqCst);
    let mut cfg = config(vec![nsx_action(&fake.url)]);
    cfg.quarantine.concurrency = 16;
    let (manager, mgr) = start_manager_with(None, None, &cfg).await;
    let n = 64;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            detection(
                &format!("vm-out-{i:03}"),
                &format!("ev-out-{i}"),
                Action::Denied,
            )
        })
        .collect();
    let started = std::time::Instant::now();
    notify(&manager.url(), events).await;
    // Acknowledged before the (slow) tag calls could have finished.
    assert!(started.elapsed() < Duration::from_millis(200 * 4));
    assert!(
        eventually(Duration::from_secs(30), || async {
            fake.state.succeeded("add_tags").len() >= n
        })
        .await
    );
    let max = fake.state.max_inflight.load(Ordering::SeqCst);
    assert!(max > 1, "tag calls ran concurrently ({max})");
    assert!(max <= 16, "the concurrency limit holds ({max})");
    for i in [0, n - 1] {
        wait_vm(&mgr, &format!("vm-out-{i:03}"), |v| v.tagged).await;
    }
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_decides_which_detections_quarantine() {
    // No action configured: the quarantine is recorded in the store only.
    let (manager, mgr) = start_manager().await;
    notify(
        &manager.url(),
        vec![detection("vm-rec", "ev-p-1", Action::Denied)],
    )
    .await;
    let v = vm(&mgr, "vm-rec").await;
    assert!(v.tagged && v.state == "infected");
    assert!(v.last_action.contains("no tagging action configured"));
    // A clean record of a scheduled scan, from an appliance the manager
    // does not authenticate, vouches for nothing.
    notify(&manager.url(), vec![clean_scan("vm-rec", "ev-p-2")]).await;
    let v = vm(&mgr, "vm-rec").await;
    assert!(v.tagged && v.state == "infected", "{v:?}");
    let t = mgr
        .store()
        .transitions(Some("vm-rec"), 10)
        .await
        .expect("transitions");
    assert!(
        t.last().is_some_and(|t| t.cause.contains("--client-ca")),
        "{t:?}"
    );
    // The operator releases it: recorded only, as the tag was.
    operator_client(&manager.url(), &mgr)
        .await
        .untag_vm(UntagVmRequest {
            vm_id: "vm-rec".into(),
        })
        .await
        .expect("untag");
    let v = vm(&mgr, "vm-rec").await;
    assert!(!v.tagged && v.state == "clean", "{v:?}");
    assert!(v.last_action.contains("no tagging action configured"));
    manager.stop().await;

    // Only detections the appliance could not deny.
    let mut cfg = Config::default();
    cfg.quarantine.tag_on = TagOn::Reported;
    let (manager, mgr) = start_manager_with(None, None, &cfg).await;
    notify(
        &manager.url(),
        vec![detection("vm-pol", "ev-p-3", Action::Denied)],
    )
    .await;
    let v = vm(&mgr, "vm-pol").await;
    assert!(
        !v.tagged && v.state == "clean",
        "a denied detection does not quarantine: {v:?}"
    );
    assert_eq!(v.detections, 1);
    notify(
        &manager.url(),
        vec![detection("vm-pol", "ev-p-4", Action::Reported)],
    )
    .await;
    assert!(vm(&mgr, "vm-pol").await.tagged);

    // An incomplete scan releases nothing.
    let mut partial = clean_scan("vm-pol", "ev-p-5");
    partial.scan.as_mut().unwrap().completed = false;
    notify(&manager.url(), vec![partial]).await;
    assert_eq!(vm(&mgr, "vm-pol").await.state, "infected");
    manager.stop().await;
}
