//! The on-access watcher (`giva-shim watch`), for real: fanotify permission
//! events on a temp directory (as root), against an in-process appliance,
//! and the inotify fallback with its vault.
//!
//! The fanotify tests need root (CAP_SYS_ADMIN). Where fanotify is not
//! available they print `SKIPPED: fanotify unavailable: <reason>` and return,
//! unless `GIVA_REQUIRE_FANOTIFY=1`, in which case they fail.
//!
//! The watcher runs in this test process and the "guest" opens come from
//! this process too (on plain threads), so `skip_own_pid` is off; the
//! watcher never opens watched files by path, only reads through the event
//! descriptors, so it cannot block itself.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_appliance::config::Config;
use giva_proto::shim::shim_service_server::{ShimService, ShimServiceServer};
use giva_proto::shim::{
    ApplianceMessage, GuestMessage, Policy, RegisterRequest, RegisterResponse, ScanRequest,
    ScanResponse, ShimReport, guest_message,
};
use giva_shim::watch::{ActiveBackend, Backend, MarkScope, WatchConfig, WatchError, Watcher};
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::common::{EICAR, start_appliance, write};

/// Polls `f` until it returns true or `timeout` passes.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const CLEAN: &[u8] = b"just an ordinary text file, nothing to see\n";
/// Slack on top of a decision deadline before we call it a hang.
const MARGIN: Duration = Duration::from_millis(1500);

fn vm(id: &str) -> giva_proto::shim::VmIdentity {
    giva_proto::shim::VmIdentity {
        vm_id: id.into(),
        name: id.into(),
        image_id: "img-watch".into(),
        ..Default::default()
    }
}

fn fanotify_config(url: String, id: &str, dir: &Path) -> WatchConfig {
    let mut c = WatchConfig::new(url, vm(id), vec![dir.to_path_buf()]);
    c.backend = Backend::Fanotify;
    c.mark = MarkScope::Inode;
    c.skip_own_pid = false;
    c.backoff_min = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(300);
    c
}

/// Starts a fanotify watcher, or says why the test is skipped.
async fn start_or_skip(config: WatchConfig) -> Option<Watcher> {
    match Watcher::start(config).await {
        Ok(w) => {
            assert_eq!(w.backend(), &ActiveBackend::Fanotify);
            Some(w)
        }
        Err(WatchError::FanotifyUnavailable(reason)) => {
            if std::env::var("GIVA_REQUIRE_FANOTIFY").as_deref() == Ok("1") {
                panic!("GIVA_REQUIRE_FANOTIFY=1 but fanotify is unavailable: {reason}");
            }
            // Straight to stderr, past the test harness's capture, so a
            // skip is always visible.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: fanotify unavailable: {reason}");
            None
        }
        Err(e) => panic!("watcher failed to start: {e}"),
    }
}

/// Opens `path` the way a guest process would, on its own thread, and
/// returns the outcome and how long the open was held. Panics (after
/// `limit`) if the open hangs.
async fn guest_open(path: &Path, limit: Duration) -> (Result<(), std::io::Error>, Duration) {
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = std::fs::File::open(&path).map(|_| ());
        let _ = tx.send((r, t.elapsed()));
    });
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(v)) => v,
        _ => panic!("the guest's open hung for more than {limit:?}"),
    }
}

fn assert_eperm(r: &Result<(), std::io::Error>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(1), "{what}: expected EPERM, got {e}"),
        Ok(()) => panic!("{what}: expected EPERM, the open succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_denies_eicar_allows_clean_and_fails_open_without_appliance() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Files are written before the watch starts.
    let eicar = write(dir.path(), "eicar.com", EICAR);
    let clean = write(dir.path(), "clean.txt", CLEAN);
    let (appliance, app) = start_appliance(Config::default()).await;
    let mut config = fanotify_config(appliance.url(), "vm-fan-open", dir.path());
    let deadline = Duration::from_millis(1000);
    config.overrides.decision_timeout = Some(deadline);
    let Some(watcher) = start_or_skip(config).await else {
        return;
    };
    assert!(
        eventually(Duration::from_secs(5), || watcher.is_connected()).await,
        "the watcher registers with the appliance"
    );

    let (r, held) = guest_open(&eicar, deadline + MARGIN).await;
    assert_eperm(&r, "opening EICAR");
    println!("EICAR open denied with EPERM after {held:?}");
    let (r, held) = guest_open(&clean, deadline + MARGIN).await;
    r.expect("a clean file opens");
    println!("clean open allowed after {held:?}");
    // The counters move just after the kernel is answered.
    assert!(
        eventually(Duration::from_secs(2), || {
            let s = watcher.stats();
            s.denied >= 1 && s.allowed >= 1
        })
        .await,
        "{:?}",
        watcher.stats()
    );
    let s = watcher.stats();
    assert!(s.bytes_sent >= (EICAR.len() + CLEAN.len()) as u64, "{s:?}");
    assert_eq!(s.fail_open + s.fail_closed, 0, "{s:?}");
    assert!(app.stats.snapshot().verdicts_deny >= 1);

    // The appliance goes away: the policy (fail-open) decides, at once.
    appliance.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || !watcher.is_connected()).await,
        "the watcher notices the appliance is gone"
    );
    for p in [&clean, &eicar] {
        let (r, held) = guest_open(p, deadline + MARGIN).await;
        r.expect("fail-open allows without an appliance");
        assert!(held < deadline + MARGIN, "held {held:?}");
        println!(
            "without appliance, fail-open allowed {} after {held:?}",
            p.display()
        );
    }
    let s = watcher.stop().await;
    assert!(s.fail_open >= 2, "{s:?}");
    println!("watcher stats: {s:?}");
    // The marks are gone: nothing is held any more.
    let (r, _) = guest_open(&eicar, Duration::from_secs(2)).await;
    r.expect("no marks after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_fail_closed_policy_denies_without_appliance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eicar = write(dir.path(), "eicar.com", EICAR);
    let clean = write(dir.path(), "clean.txt", CLEAN);
    let mut ac = Config::default();
    ac.policy.fail_open = false;
    ac.policy.decision_timeout_ms = 800;
    let (appliance, _app) = start_appliance(ac).await;
    let deadline = Duration::from_millis(800);
    let Some(watcher) = start_or_skip(fanotify_config(
        appliance.url(),
        "vm-fan-closed",
        dir.path(),
    ))
    .await
    else {
        return;
    };
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    let (r, _) = guest_open(&eicar, deadline + MARGIN).await;
    assert_eperm(&r, "opening EICAR");
    let (r, _) = guest_open(&clean, deadline + MARGIN).await;
    r.expect("a clean file opens");

    appliance.stop().await;
    assert!(eventually(Duration::from_secs(5), || !watcher.is_connected()).await);
    let (r, held) = guest_open(&clean, deadline + MARGIN).await;
    assert_eperm(&r, "fail-closed without an appliance");
    assert!(held < deadline + MARGIN, "held {held:?}");
    println!("without appliance, fail-closed denied the clean file after {held:?}");
    let s = watcher.stop().await;
    assert!(s.fail_closed >= 1, "{s:?}");
    let (r, _) = guest_open(&clean, Duration::from_secs(2)).await;
    r.expect("no marks after stop");
}

/// An appliance that registers VMs and opens sessions but never answers an
/// event: every held access runs into its deadline.
#[derive(Clone)]
struct Silent {
    registers: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
    reports: Arc<Mutex<Vec<ShimReport>>>,
    fail_open: bool,
    /// Ends every session (as a crash would) when set.
    kill: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Silent {
    /// A fresh server (not killed) sharing the counters.
    fn restarted(&self) -> Silent {
        Silent {
            kill: Arc::new(tokio::sync::watch::channel(false).0),
            ..self.clone()
        }
    }

    fn kill(&self) {
        self.kill.send_replace(true);
    }
}

type Out = Pin<Box<dyn Stream<Item = Result<ApplianceMessage, Status>> + Send>>;

#[tonic::async_trait]
impl ShimService for Silent {
    async fn register(
        &self,
        _r: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.registers.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RegisterResponse {
            session_id: "silent".into(),
            policy: Some(Policy {
                scan_on_open: true,
                scan_on_exec: true,
                scan_on_close_write: true,
                fail_open: self.fail_open,
                decision_timeout_ms: 300,
                deny_on_detection: true,
                ..Default::default()
            }),
            database_version: "none".into(),
            appliance_id: "silent".into(),
        }))
    }

    type SessionStream = Out;

    async fn enroll(
        &self,
        _r: Request<giva_proto::shim::EnrollRequest>,
    ) -> Result<Response<giva_proto::shim::EnrollResponse>, Status> {
        Err(Status::unimplemented("a silent appliance enrolls no one"))
    }

    async fn session(
        &self,
        request: Request<Streaming<GuestMessage>>,
    ) -> Result<Response<Out>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ApplianceMessage, Status>>(4);
        let me = self.clone();
        let mut kill = self.kill.subscribe();
        tokio::spawn(async move {
            let _keep = tx;
            loop {
                let m = tokio::select! {
                    m = inbound.message() => m,
                    _ = kill.wait_for(|k| *k) => break,
                };
                let Ok(Some(m)) = m else { break };
                match m.msg {
                    Some(guest_message::Msg::Event(_)) => {
                        me.events.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(guest_message::Msg::Report(r)) => me.reports.lock().unwrap().push(r),
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn scan(&self, _r: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Err(Status::unimplemented("silent"))
    }
}

async fn serve_silent(
    listener: TcpListener,
    svc: Silent,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(ShimServiceServer::new(svc))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await;
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_late_verdict_is_decided_at_the_deadline_counted_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = write(dir.path(), "clean.txt", CLEAN);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = Silent {
        registers: Arc::default(),
        events: Arc::default(),
        reports: Arc::default(),
        fail_open: false, // fail-closed, 300 ms
        kill: Arc::new(tokio::sync::watch::channel(false).0),
    };
    let (stop, task) = serve_silent(listener, silent.clone()).await;
    let Some(watcher) = start_or_skip(fanotify_config(
        format!("http://{addr}"),
        "vm-fan-late",
        dir.path(),
    ))
    .await
    else {
        let _ = stop.send(());
        return;
    };
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    let deadline = Duration::from_millis(300);
    let (r, held) = guest_open(&clean, deadline + MARGIN).await;
    assert_eperm(&r, "no verdict in time, fail-closed");
    assert!(
        held >= deadline - Duration::from_millis(50) && held < deadline + MARGIN,
        "held {held:?} for a {deadline:?} deadline"
    );
    println!("late verdict: fail-closed after {held:?} (deadline {deadline:?})");
    assert_eq!(silent.events.load(Ordering::SeqCst), 1);
    // The decision is reported on the session.
    assert!(
        eventually(Duration::from_secs(5), || {
            silent
                .reports
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.fail_closed_decisions)
                .sum::<u64>()
                >= 1
        })
        .await,
        "a ShimReport with the fail-closed decision arrives"
    );

    // The appliance restarts on the same address: the watcher reconnects
    // and registers again.
    silent.kill();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(eventually(Duration::from_secs(5), || !watcher.is_connected()).await);
    let (r, held) = guest_open(&clean, deadline + MARGIN).await;
    assert_eperm(&r, "disconnected, fail-closed");
    assert!(
        held < deadline,
        "decided at once while disconnected: {held:?}"
    );
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let silent = silent.restarted();
    let (stop, task) = serve_silent(listener, silent.clone()).await;
    assert!(
        eventually(Duration::from_secs(5), || watcher.is_connected()).await,
        "the watcher reconnects"
    );
    assert!(silent.registers.load(Ordering::SeqCst) >= 2);
    assert!(
        eventually(Duration::from_secs(5), || {
            silent
                .reports
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.fail_closed_decisions)
                .sum::<u64>()
                >= 2
        })
        .await,
        "the decision taken while disconnected is reported after reconnecting"
    );
    let s = watcher.stop().await;
    assert!(s.fail_closed >= 2 && s.sessions >= 2, "{s:?}");
    silent.kill();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_fallback_moves_eicar_into_the_vault_and_keeps_clean_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let vault = dir.path().join("vault");
    let (appliance, _app) = start_appliance(Config::default()).await;
    let mut config = WatchConfig::new(appliance.url(), vm("vm-notify"), vec![watched.clone()]);
    config.backend = Backend::Notify;
    config.vault = vault.clone();
    let watcher = Watcher::start(config).await.expect("fallback starts");
    assert!(matches!(watcher.backend(), ActiveBackend::Notify { .. }));
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&vault)
        .expect("vault exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let eicar = write(&watched, "eicar.com", EICAR);
    let clean = write(&watched, "clean.txt", CLEAN);
    assert!(
        eventually(Duration::from_secs(10), || !eicar.exists()).await,
        "EICAR is moved out of the watched directory"
    );
    let in_vault: Vec<PathBuf> = std::fs::read_dir(&vault)
        .expect("read vault")
        .map(|e| e.expect("entry").path())
        .collect();
    let moved = in_vault
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "quarantined"))
        .expect("the file is in the vault");
    assert_eq!(std::fs::read(moved).expect("read"), EICAR);
    let record = in_vault
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a record");
    let record = std::fs::read_to_string(record).expect("record");
    assert!(record.contains("Eicar-Test-Signature"), "{record}");
    assert!(record.contains("eicar.com"), "{record}");
    // The clean file got its verdict and stays.
    assert!(eventually(Duration::from_secs(5), || watcher.stats().verdicts >= 2).await);
    assert!(clean.exists());
    let s = watcher.stop().await;
    assert_eq!(s.vaulted, 1, "{s:?}");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_denies_executing_an_infected_file_and_runs_a_clean_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let eicar = write(dir.path(), "eicar.sh", EICAR);
    let clean = write(dir.path(), "clean.sh", b"#!/bin/sh\nexit 0\n");
    for p in [&eicar, &clean] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let (appliance, _app) = start_appliance(Config::default()).await;
    let Some(watcher) =
        start_or_skip(fanotify_config(appliance.url(), "vm-fan-exec", dir.path())).await
    else {
        return;
    };
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    let run = |p: PathBuf| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::process::Command::new(&p).status());
        });
        rx
    };
    let r = tokio::time::timeout(Duration::from_secs(10), run(eicar.clone()))
        .await
        .expect("exec does not hang")
        .expect("thread");
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(1), "exec of EICAR: {e}"),
        Ok(s) => panic!("exec of EICAR ran: {s}"),
    }
    let r = tokio::time::timeout(Duration::from_secs(10), run(clean.clone()))
        .await
        .expect("exec does not hang")
        .expect("thread");
    assert!(r.expect("the clean script runs").success());
    let s = watcher.stop().await;
    assert!(s.denied >= 1 && s.allowed >= 1, "{s:?}");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_applies_policy_exclusions_without_asking_the_appliance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eicar = write(dir.path(), "eicar.skipme", EICAR);
    let mut ac = Config::default();
    ac.policy.exclude_extensions = vec!["skipme".into()];
    let (appliance, app) = start_appliance(ac).await;
    let Some(watcher) =
        start_or_skip(fanotify_config(appliance.url(), "vm-fan-excl", dir.path())).await
    else {
        return;
    };
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    let (r, _) = guest_open(&eicar, Duration::from_secs(5)).await;
    r.expect("an excluded file opens unscanned");
    let s = watcher.stop().await;
    assert_eq!((s.skipped, s.sent), (1, 0), "{s:?}");
    assert_eq!(app.stats.snapshot().events, 0, "the appliance saw nothing");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanotify_scans_a_file_after_it_is_written_and_denies_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (appliance, app) = start_appliance(Config::default()).await;
    let Some(watcher) =
        start_or_skip(fanotify_config(appliance.url(), "vm-fan-write", dir.path())).await
    else {
        return;
    };
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    // A "download" lands: its open for writing is held and scanned (empty,
    // allowed), then its close-after-write is reported and scanned.
    let path = dir.path().join("download.com");
    let p = path.clone();
    let written = tokio::task::spawn_blocking(move || std::fs::write(&p, EICAR));
    tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("the write is not held for long")
        .expect("thread")
        .expect("the write succeeds");
    assert!(
        eventually(Duration::from_secs(5), || watcher.stats().detections >= 1).await,
        "the close-after-write scan finds EICAR: {:?}",
        watcher.stats()
    );
    assert!(app.stats.snapshot().verdicts_deny >= 1);
    let (r, _) = guest_open(&path, Duration::from_secs(5)).await;
    assert_eperm(&r, "opening the written EICAR");
    watcher.stop().await;
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scan_asked_for_by_the_manager_runs_on_the_watch_session_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(watched.join("sub")).expect("mkdir");
    write(&watched, "eicar.com", EICAR);
    for i in 0..3 {
        write(&watched.join("sub"), &format!("clean{i}.txt"), CLEAN);
    }
    // An excluded directory is not even entered.
    std::fs::create_dir_all(watched.join("skipped")).expect("mkdir");
    write(&watched.join("skipped"), "eicar.com", EICAR);
    let (manager, mgr) = crate::common::start_manager().await;
    let mut aconfig = crate::common::config_with_manager(&manager.url());
    aconfig.policy.full_scan_roots = vec![watched.display().to_string()];
    aconfig
        .policy
        .exclude_prefixes
        .push(format!("{}/", watched.join("skipped").display()));
    let (appliance, app) = start_appliance(aconfig).await;
    let mut config = WatchConfig::new(appliance.url(), vm("vm-fullscan"), vec![watched.clone()]);
    config.backend = Backend::Notify;
    config.vault = dir.path().join("vault");
    let watcher = Watcher::start(config).await.expect("watcher starts");
    assert!(eventually(Duration::from_secs(5), || watcher.is_connected()).await);
    assert!(app.registry.send_full_scan_command(
        "vm-fullscan",
        giva_appliance::fullscan::ScanOrder {
            ordered_by: giva_appliance::fullscan::OrderedBy::Schedule,
            order_id: String::new(),
            reason: "test".into(),
            roots: Vec::new(),
            recheck: Vec::new(),
        }
    ));
    let completed = || async {
        let filter = giva_manager::store::EventFilter {
            limit: 1000,
            ..Default::default()
        };
        mgr.store()
            .events(&filter)
            .await
            .expect("store")
            .into_iter()
            .filter_map(|e| e.event)
            .filter(|e| e.kind == giva_proto::manager::EventKind::ScanCompleted as i32)
            .collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    for _ in 0..500 {
        found = completed().await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = found.first().expect("the manager hears the scan completed");
    assert_eq!(ev.vm_id, "vm-fullscan");
    let scan = ev.scan.clone().expect("a scan summary");
    assert_eq!(
        (scan.files_scanned, scan.files_infected, scan.files_failed),
        (4, 1, 0)
    );
    assert!(scan.completed);
    assert_eq!(scan.ordered_by, "schedule");
    assert_eq!(scan.roots, [watched.display().to_string()]);
    assert_eq!(scan.blockers, ["1 infected"], "the appliance's own count");
    let s = watcher.stop().await;
    assert!(s.verdicts >= 4 && s.detections >= 1, "{s:?}");
    appliance.stop().await;
    manager.stop().await;
}
