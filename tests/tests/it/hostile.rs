//! Hostile input (issue 11): guests that break the session protocol,
//! signature files built to exhaust the compiler, damaged database files.
//! Every test is bounded in time; where memory matters it reads the test
//! process's RSS (`VmRSS`) before and after. The bounds are generous because
//! other tests of this binary run in the same process at the same time; the
//! hostile tests take a lock among themselves so at least they do not add
//! up. Each test that attacks an appliance then checks that another VM still
//! gets its EICAR detected.
//!
//! The soak test is opt-in: `cargo run -p giva-bench --release -- soak`
//! runs it (600 s, 200 VMs) and writes its figures into `bench/results/`;
//! or `GIVA_SOAK_SECS=600 cargo test -p giva-tests --release -- --ignored
//! soak --nocapture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use giva_appliance::config::Config;
use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ApplianceMessage, ContentChunk, EventKind, FileEvent, FileIdentity, GuestMessage,
    NotScannedReason, RegisterRequest, SessionOpen, Verdict, VerdictKind, VmIdentity,
    appliance_message, guest_message,
};
use giva_signatures::{BuildError, CompileError, Compiler, Database};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::common::{EICAR, shim_scan, start_appliance, test_config, write_eicars};

/// Hostile tests run one at a time, so RSS deltas are their own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

const MIB: u64 = 1024 * 1024;

/// A VM speaking the raw session protocol.
struct RawVm {
    tx: mpsc::Sender<GuestMessage>,
    inbound: Streaming<ApplianceMessage>,
}

async fn client(url: &str) -> ShimServiceClient<Channel> {
    ShimServiceClient::connect(url.to_string())
        .await
        .expect("connect to the appliance")
}

async fn register(client: &mut ShimServiceClient<Channel>, vm_id: &str) -> String {
    client
        .register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: vm_id.into(),
                name: vm_id.into(),
                ..VmIdentity::default()
            }),
        })
        .await
        .expect("register")
        .into_inner()
        .session_id
}

/// With `GIVA_TEST_TRACE` set, the appliance's logs go to stderr.
fn trace() {
    if std::env::var_os("GIVA_TEST_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,h2=info,hyper=info,tower=info,sqlx=debug")
            .with_test_writer()
            .try_init();
    }
}

impl RawVm {
    async fn open(url: &str, vm_id: &str) -> RawVm {
        trace();
        let mut c = client(url).await;
        RawVm::open_on(&mut c, vm_id).await
    }

    async fn open_on(c: &mut ShimServiceClient<Channel>, vm_id: &str) -> RawVm {
        let session_id = register(c, vm_id).await;
        RawVm::attach(c.clone(), session_id).await
    }

    /// Opens the session stream of a registered VM.
    async fn attach(mut c: ShimServiceClient<Channel>, session_id: String) -> RawVm {
        let (tx, rx) = mpsc::channel(64);
        tx.send(GuestMessage {
            msg: Some(guest_message::Msg::Open(SessionOpen { session_id })),
        })
        .await
        .expect("queue open");
        let inbound = c
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("session opens")
            .into_inner();
        RawVm { tx, inbound }
    }

    async fn send(&self, m: guest_message::Msg) {
        // The appliance may already have ended the stream: that is what
        // some tests expect, and they read the status next.
        let _ = self.tx.send(GuestMessage { msg: Some(m) }).await;
    }

    async fn event(&self, seq: u64, path: &str, size: u64) {
        self.send(guest_message::Msg::Event(FileEvent {
            seq,
            kind: EventKind::Open as i32,
            path: path.into(),
            identity: Some(FileIdentity {
                size,
                ..FileIdentity::default()
            }),
            blocking: true,
            full_scan_id: 0,
        }))
        .await;
    }

    async fn chunk(&self, seq: u64, offset: u64, data: &[u8], last: bool) {
        self.send(guest_message::Msg::Chunk(ContentChunk {
            seq,
            offset,
            data: data.to_vec(),
            last,
        }))
        .await;
    }

    /// The next message, or the status that ended the stream.
    async fn next(&mut self) -> Result<Option<ApplianceMessage>, Status> {
        tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
            .await
            .expect("the appliance answers within 20 s")
    }

    /// The next verdict (content requests are skipped).
    async fn verdict(&mut self) -> Verdict {
        loop {
            match self.next().await {
                Ok(Some(ApplianceMessage {
                    msg: Some(appliance_message::Msg::Verdict(v)),
                })) => return v,
                Ok(Some(m)) => {
                    if std::env::var_os("GIVA_TEST_TRACE").is_some() {
                        eprintln!("skipped {m:?}");
                    }
                    continue;
                }
                other => panic!("expected a verdict, got {other:?}"),
            }
        }
    }

    /// Reads until the stream ends with an error status and returns it.
    async fn status(&mut self) -> Status {
        loop {
            match self.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without an error status"),
                Err(s) => return s,
            }
        }
    }

    /// Sends EICAR as event `seq` and expects DENY.
    async fn expect_eicar_denied(&mut self, seq: u64) {
        self.event(seq, "/tmp/eicar.com", EICAR.len() as u64).await;
        self.chunk(seq, 0, EICAR, true).await;
        let v = self.verdict().await;
        assert_eq!(v.seq, seq);
        assert_eq!(v.kind, VerdictKind::Deny as i32, "EICAR not denied: {v:?}");
    }
}

/// Another VM scans a directory with one EICAR file through the real shim
/// and must still get it detected.
async fn other_vm_still_detects(url: &str, vm_id: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_eicars(dir.path(), 1);
    let summary = tokio::time::timeout(Duration::from_secs(30), shim_scan(url, vm_id, dir.path()))
        .await
        .expect("the other VM's scan finishes in time");
    assert_eq!(summary.infected, 1, "another VM lost its detection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bigger_than_declared_ends_the_stream_with_invalid_argument() {
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(test_config()).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-bigger").await;
    vm.event(1, "/tmp/small", 10).await;
    vm.chunk(1, 0, &[b'x'; 8], false).await;
    vm.chunk(1, 8, &[b'x'; 8], true).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("declared size"), "{s:?}");
    other_vm_still_detects(&appliance.url(), "vm-bigger-other").await;
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_out_of_order_end_the_stream_with_invalid_argument() {
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(test_config()).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-order").await;
    vm.event(1, "/tmp/f", 100).await;
    vm.chunk(1, 50, &[b'x'; 50], true).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("out of order"), "{s:?}");

    // Content for a file that was never announced is refused the same way.
    let mut vm = RawVm::open(&appliance.url(), "vm-order-2").await;
    vm.chunk(9, 0, b"unasked", true).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

    // A file that ends short of its declared size gets an ERROR verdict,
    // and the session goes on.
    let mut vm = RawVm::open(&appliance.url(), "vm-order-3").await;
    vm.event(1, "/tmp/short", 100).await;
    vm.chunk(1, 0, &[b'x'; 10], true).await;
    let v = vm.verdict().await;
    assert_eq!(v.kind, VerdictKind::Error as i32, "{v:?}");
    vm.expect_eicar_denied(2).await;

    other_vm_still_detects(&appliance.url(), "vm-order-other").await;
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_never_finished_gets_an_error_verdict_after_the_content_timeout() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.content_timeout_secs = 1;
    let (appliance, app) = start_appliance(config).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-stall").await;
    let started = Instant::now();
    vm.event(1, "/tmp/stalled", 1000).await;
    vm.chunk(1, 0, &[b'x'; 100], false).await;
    let v = vm.verdict().await;
    assert_eq!(v.seq, 1);
    assert_eq!(v.kind, VerdictKind::Error as i32, "{v:?}");
    assert!(v.reason.contains("no content"), "{v:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "time-out after {took:?}"
    );
    // The session goes on.
    vm.expect_eicar_denied(2).await;
    // The file's resources are released: a late chunk for it is dropped
    // (the guest may have been slow rather than hostile), and the file is
    // then forgotten, so the next one is refused.
    vm.chunk(1, 100, &[b'x'; 100], false).await;
    vm.chunk(1, 200, &[b'x'; 100], false).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("no content request open"), "{s:?}");
    assert!(
        crate::common::eventually(Duration::from_secs(5), || async {
            app.stats.inflight.get() == 0
        })
        .await,
        "files still counted in flight"
    );
    other_vm_still_detects(&appliance.url(), "vm-stall-other").await;
    appliance.stop().await;
}

/// A file whose content never comes gives its slot back at the time-out:
/// with two slots per VM, two stalled files do not make the VM's next file
/// "appliance busy", and the appliance stops without waiting for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_file_frees_its_slot() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.content_timeout_secs = 1;
    config.server.max_inflight_per_vm = 2;
    let (appliance, app) = start_appliance(config).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-slots").await;
    for seq in [1, 2] {
        vm.event(seq, &format!("/tmp/stalled-{seq}"), 1000).await;
        vm.chunk(seq, 0, &[b'x'; 100], false).await;
    }
    for _ in 0..2 {
        let v = vm.verdict().await;
        assert_eq!(v.kind, VerdictKind::Error as i32, "{v:?}");
        assert!(v.reason.contains("no content"), "{v:?}");
    }
    // Both slots are free again (the session learns it as the tasks end).
    assert!(
        crate::common::eventually(Duration::from_secs(5), || async {
            app.stats.inflight.get() == 0
        })
        .await,
        "files still counted in flight"
    );
    // Two files at once: both slots.
    let clean = b"nothing to see here, twice over";
    vm.event(3, "/tmp/eicar.com", EICAR.len() as u64).await;
    vm.event(4, "/tmp/clean.txt", clean.len() as u64).await;
    vm.chunk(3, 0, EICAR, true).await;
    vm.chunk(4, 0, clean, true).await;
    let mut kinds = [vm.verdict().await, vm.verdict().await].map(|v| {
        (
            v.seq,
            VerdictKind::try_from(v.kind).expect("a verdict kind"),
        )
    });
    kinds.sort_by_key(|k| k.0);
    assert_eq!(kinds, [(3, VerdictKind::Deny), (4, VerdictKind::Allow)]);
    let started = Instant::now();
    appliance.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping waited {:?} for files that were given up",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_file_does_not_hold_up_the_same_vms_other_files() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.content_timeout_secs = 1;
    let (appliance, _app) = start_appliance(config).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-stall-2").await;
    vm.event(1, "/tmp/stalled", 1000).await;
    vm.chunk(1, 0, &[b'x'; 100], false).await;
    // While file 1 waits for content, file 2 is scanned.
    vm.expect_eicar_denied(2).await;
    let v = vm.verdict().await;
    assert_eq!(v.seq, 1);
    assert_eq!(v.kind, VerdictKind::Error as i32, "{v:?}");
    other_vm_still_detects(&appliance.url(), "vm-stall-2-other").await;
    appliance.stop().await;
}

/// One connection holds at most `server.max_streams_per_connection` calls
/// at once: a client that opens more waits for a slot, holding nothing on
/// the appliance, and gets one when a stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_capped() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.max_streams_per_connection = 4;
    let (appliance, _app) = start_appliance(config).await;
    let mut c = client(&appliance.url()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(register(&mut c, &format!("vm-cap-{i}")).await);
    }
    let open = |session_id: String| RawVm::attach(c.clone(), session_id);
    let mut held = Vec::new();
    for id in &ids[..4] {
        held.push(open(id.clone()).await);
    }
    // The fifth waits for a free stream on this connection...
    let fifth = tokio::spawn(open(ids[4].clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth stream opened past the cap of 4"
    );
    // ...and opens once one of the four ends.
    drop(held.pop());
    let mut fifth = tokio::time::timeout(Duration::from_secs(10), fifth)
        .await
        .expect("the fifth stream opens once a slot is free")
        .expect("task");
    fifth.expect_eicar_denied(1).await;
    held[0].expect_eicar_denied(1).await;
    appliance.stop().await;
}

/// One peer holds at most `server.max_connections_per_peer` connections:
/// one more is closed as soon as it is accepted (and counted), and one
/// closing makes room. A session stream that never sends its `open` is
/// ended with DEADLINE_EXCEEDED rather than held for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_peer_are_capped_and_a_silent_stream_ends() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.max_connections_per_peer = 3;
    let (appliance, app) = start_appliance(config).await;
    let url = appliance.url();
    // A stream that says nothing, on the first connection.
    let mut first = client(&url).await;
    register(&mut first, "vm-conn-0").await;
    let silent_started = Instant::now();
    let silent = {
        let mut c = first.clone();
        tokio::spawn(async move {
            let (_tx, rx) = mpsc::channel::<GuestMessage>(1);
            c.session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(|_| ())
        })
    };
    let mut held = vec![first];
    for i in 1..3 {
        let mut c = client(&url).await;
        register(&mut c, &format!("vm-conn-{i}")).await;
        held.push(c);
    }
    // The fourth connection from this address is closed at once.
    let fourth = async {
        let mut c = ShimServiceClient::connect(url.clone()).await.ok()?;
        c.register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: "vm-conn-3".into(),
                ..VmIdentity::default()
            }),
        })
        .await
        .ok()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), fourth)
            .await
            .expect("the refusal is prompt")
            .is_none(),
        "a fourth connection was served past the cap of 3"
    );
    assert!(app.stats.connections_refused.get() >= 1);
    // The three still work; one closing makes room for a new one.
    register(&mut held[1], "vm-conn-1b").await;
    held.pop();
    assert!(
        crate::common::eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                match ShimServiceClient::connect(url).await {
                    Ok(mut c) => c
                        .register(RegisterRequest {
                            vm: Some(VmIdentity {
                                vm_id: "vm-conn-4".into(),
                                ..VmIdentity::default()
                            }),
                        })
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await,
        "no room after a connection closed"
    );
    let s = tokio::time::timeout(Duration::from_secs(20), silent)
        .await
        .expect("the silent stream ends")
        .expect("task")
        .expect_err("a stream without `open` was accepted");
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(silent_started.elapsed() >= Duration::from_secs(9));
    drop(held);
    other_vm_still_detects(&url, "vm-conn-other").await;
    appliance.stop().await;
}

/// A session's content waiting for its scans is capped
/// (`server.max_pending_content_bytes`): while the scan pool is held up,
/// the appliance takes no more than the cap (and the one chunk waiting
/// for room) from a guest that sends many files, and stops reading its
/// stream; once the pool runs, every file gets its verdict and the
/// budget is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_content_per_session_is_capped() {
    let _serial = SERIAL.lock().await;
    const FILES: u64 = 24;
    const SIZE: usize = 4 << 20;
    const CHUNK: usize = 1 << 20;
    const CAP: usize = 4 << 20;
    let mut config = test_config();
    config.server.max_pending_content_bytes = CAP;
    config.pool.workers = 1;
    let (appliance, app) = start_appliance(config).await;
    // The pool's one worker is held until `release` is dropped.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let blocker = app
        .pool
        .submit("test-blocker", giva_engine::Priority::OnAccess, move || {
            let _ = held.recv_timeout(Duration::from_secs(60));
        })
        .expect("submit the blocker");
    let mut vm = RawVm::open(&appliance.url(), "vm-pending").await;
    for seq in 1..=FILES {
        vm.event(seq, &format!("/tmp/pending-{seq}"), SIZE as u64)
            .await;
    }
    let sender = {
        let tx = vm.tx.clone();
        tokio::spawn(async move {
            for seq in 1..=FILES {
                for offset in (0..SIZE).step_by(CHUNK) {
                    let data: Vec<u8> = (offset..offset + CHUNK)
                        .map(|b| (b as u64 * 31 + seq) as u8)
                        .collect();
                    let _ = tx
                        .send(GuestMessage {
                            msg: Some(guest_message::Msg::Chunk(ContentChunk {
                                seq,
                                offset: offset as u64,
                                data,
                                last: offset + CHUNK == SIZE,
                            })),
                        })
                        .await;
                }
            }
        })
    };
    // The budget fills, and then the appliance reads no further.
    assert!(
        crate::common::eventually(Duration::from_secs(20), || async {
            app.stats.content_buffered.get() == CAP as i64
        })
        .await,
        "the budget never filled: {} bytes buffered",
        app.stats.content_buffered.get()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = app.stats.content_received.get();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.stats.content_received.get(),
        received,
        "the appliance went on reading past its budget"
    );
    assert!(
        received <= (CAP + CHUNK) as u64,
        "{received} bytes taken in with a budget of {CAP}"
    );
    assert!(!sender.is_finished(), "the guest was not held back");
    // The pool runs again: every file is scanned, the budget given back.
    drop(release);
    blocker.await.expect("the blocker ran");
    let mut answered = std::collections::HashSet::new();
    while answered.len() < FILES as usize {
        let v = vm.verdict().await;
        assert_eq!(v.kind, VerdictKind::Allow as i32, "{v:?}");
        answered.insert(v.seq);
    }
    sender.await.expect("sender");
    assert_eq!(app.stats.content_buffered.get(), 0);
    other_vm_still_detects(&appliance.url(), "vm-pending-other").await;
    appliance.stop().await;
}

/// Registrations are capped: past `server.max_registered_vms`, Register
/// answers RESOURCE_EXHAUSTED; a VM that registered and never opened its
/// session is forgotten after `server.registration_ttl_secs`, and one
/// that did is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_capped_and_unused_ones_age_out() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.server.max_registered_vms = 10;
    config.server.registration_ttl_secs = 1;
    let (appliance, app) = start_appliance(config).await;
    let mut c = client(&appliance.url()).await;
    // One VM with a session, nine without.
    let mut live = RawVm::open_on(&mut c, "vm-reg-live").await;
    for i in 0..9 {
        register(&mut c, &format!("vm-reg-{i}")).await;
    }
    let refused = c
        .register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: "vm-reg-extra".into(),
                ..VmIdentity::default()
            }),
        })
        .await
        .expect_err("an eleventh VM was registered past the cap of 10");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_registered_vms"),
        "{refused:?}"
    );
    // A VM already registered may register again.
    register(&mut c, "vm-reg-3").await;
    // After the time-out, the unused registrations are gone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    register(&mut c, "vm-reg-extra").await;
    let listed: Vec<String> = app
        .registry
        .vm_infos()
        .into_iter()
        .map(|v| v.vm_id)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&"vm-reg-live".to_string()), "{listed:?}");
    live.expect_eicar_denied(1).await;
    appliance.stop().await;
}

/// How many VMs register in `many_vms_and_streams_stay_bounded`.
const MANY_VMS: usize = 10_000;
/// How many of them hold a session stream open at once.
const MANY_STREAMS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_vms_and_streams_stay_bounded() {
    let _serial = SERIAL.lock().await;
    // Past the default cap of registrations (4,096), which bounds them.
    let mut config = test_config();
    config.server.max_registered_vms = MANY_VMS + 10;
    // Its 30 connections all come from loopback.
    config.server.max_connections_per_peer = 64;
    let (appliance, app) = start_appliance(config).await;
    let url = appliance.url();
    let before = rss();
    let started = Instant::now();

    // 10,000 registrations over 8 connections.
    let mut tasks = Vec::new();
    for c in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = client(&url).await;
            for i in (c..MANY_VMS).step_by(8) {
                register(&mut client, &format!("vm-many-{i:05}")).await;
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            t.await.expect("registration task");
        }
    })
    .await
    .expect("10,000 registrations within 60 s");
    let registered = started.elapsed();

    // 1,000 of them hold a stream open at once, over 20 connections (50
    // streams each, under the default cap of 64 per connection), and each
    // gets a verdict for a clean file.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(client(&url).await);
    }
    let mut vms = Vec::new();
    let opening = async {
        for i in 0..MANY_STREAMS {
            let c = &mut clients[i % 20];
            vms.push(RawVm::open_on(c, &format!("vm-many-{i:05}")).await);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), opening)
        .await
        .expect("1,000 streams open within 60 s");
    for (i, vm) in vms.iter().enumerate() {
        let data = format!("clean file number {i}, nothing to see");
        vm.event(1, "/tmp/clean", data.len() as u64).await;
        vm.chunk(1, 0, data.as_bytes(), true).await;
    }
    let answers = async {
        for vm in &mut vms {
            let v = vm.verdict().await;
            assert_eq!(v.kind, VerdictKind::Allow as i32, "{v:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), answers)
        .await
        .expect("1,000 verdicts within 60 s");
    let during = rss();
    assert_eq!(app.stats.sessions.get(), MANY_STREAMS as i64);

    // One VM cannot hold two streams: every further attempt is refused.
    let mut c = client(&url).await;
    for _ in 0..100 {
        let (tx, rx) = mpsc::channel(1);
        let session_id = "not-a-session".to_string();
        tx.send(GuestMessage {
            msg: Some(guest_message::Msg::Open(SessionOpen { session_id })),
        })
        .await
        .expect("queue");
        let r = c
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        assert_eq!(r.expect_err("refused").code(), Code::NotFound);
    }
    let rereg = c
        .register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: "vm-many-00000".into(),
                ..VmIdentity::default()
            }),
        })
        .await
        .expect_err("a live VM cannot register twice");
    assert_eq!(rereg.code(), Code::AlreadyExists, "{rereg:?}");

    other_vm_still_detects(&url, "vm-many-other").await;
    drop(vms);
    assert!(
        crate::common::eventually(Duration::from_secs(10), || async {
            app.stats.sessions.get() == 0
        })
        .await,
        "sessions not released"
    );
    let grown = during.saturating_sub(before);
    eprintln!(
        "{MANY_VMS} VMs registered in {registered:?}; {MANY_STREAMS} streams: RSS +{} MiB",
        grown / MIB
    );
    assert!(
        grown < 512 * MIB,
        "RSS grew by {} MiB for {MANY_VMS} VMs and {MANY_STREAMS} streams",
        grown / MIB
    );
    appliance.stop().await;
}

/// Sends one event whose path makes the message just over the appliance's
/// 1 MiB message limit and returns what ends the stream.
///
/// A 1 GiB path is refused the same way: the gRPC layer checks the length
/// prefix of a message against `max_message_bytes` before it buffers the
/// body, so a message just over the limit shows the refusal without the
/// test allocating 1 GiB.
async fn send_path_over_the_limit(
    url: &str,
    vm_id: &str,
) -> Result<Option<ApplianceMessage>, Status> {
    let mut vm = RawVm::open(url, vm_id).await;
    vm.event(1, &"/a".repeat(MIB as usize / 2 + 16), 10).await;
    loop {
        match vm.next().await {
            Ok(Some(_)) => continue,
            other => return other,
        }
    }
}

fn config_with_1_mib_messages() -> Config {
    let mut config = test_config();
    config.server.max_message_bytes = MIB as usize;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_over_the_message_limit_is_refused_without_a_crash() {
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(config_with_1_mib_messages()).await;
    let before = rss();
    // The stream ends (see the ignored test below for its status).
    let _ = send_path_over_the_limit(&appliance.url(), "vm-path").await;

    // A path under the message limit but over `max_path_len` (4096).
    let mut vm = RawVm::open(&appliance.url(), "vm-path-2").await;
    vm.event(1, &"/b".repeat(3000), 10).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("path"), "{s:?}");

    // The unary scan has the same message limit.
    let mut c = client(&appliance.url()).await;
    let r = c
        .scan(giva_proto::shim::ScanRequest {
            vm_id: "vm-path".into(),
            name: "big".into(),
            data: vec![0u8; MIB as usize + 1],
        })
        .await;
    let s = r.expect_err("a scan request over the limit was accepted");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(rss().saturating_sub(before) < 256 * MIB);
    other_vm_still_detects(&appliance.url(), "vm-path-other").await;
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_message_over_the_limit_ends_the_stream_with_an_error_status() {
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(config_with_1_mib_messages()).await;
    let end = send_path_over_the_limit(&appliance.url(), "vm-path-status").await;
    let s = end.expect_err("the stream must end with an error status, not OK");
    assert!(
        matches!(
            s.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{s:?}"
    );
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_size_over_the_limit_is_not_scanned_and_not_read() {
    let _serial = SERIAL.lock().await;
    let (appliance, app) = start_appliance(test_config()).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-bomb").await;
    // A zip-bomb sized file: 1 TiB declared, and u64::MAX.
    for (seq, size) in [(1u64, 1u64 << 40), (2, u64::MAX)] {
        vm.event(seq, "/tmp/bomb.zip", size).await;
        let m = vm.next().await.expect("stream").expect("a message");
        let Some(appliance_message::Msg::Verdict(v)) = m.msg else {
            panic!("expected a verdict without a content request, got {m:?}");
        };
        assert_eq!(v.seq, seq);
        assert_eq!(v.kind, VerdictKind::NotScanned as i32, "{v:?}");
        assert_eq!(
            v.not_scanned,
            NotScannedReason::FileTooLarge as i32,
            "{v:?}"
        );
    }
    assert_eq!(app.stats.bytes_scanned.get(), 0);
    vm.expect_eicar_denied(3).await;
    other_vm_still_detects(&appliance.url(), "vm-bomb-other").await;
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_stream_is_scanned_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(test_config()).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-large").await;
    const SIZE: u64 = 256 * MIB;
    const CHUNK: usize = 1 << 20;
    let before = rss();
    let started = Instant::now();
    vm.event(1, "/tmp/large.bin", SIZE).await;
    let chunk = vec![0x41u8; CHUNK];
    let mut off = 0u64;
    let mut peak = 0u64;
    while off < SIZE {
        let last = off + CHUNK as u64 == SIZE;
        vm.chunk(1, off, &chunk, last).await;
        off += CHUNK as u64;
        if off.is_multiple_of(16 * MIB) {
            peak = peak.max(rss());
        }
    }
    let v = vm.verdict().await;
    assert_eq!(v.kind, VerdictKind::Allow as i32, "{v:?}");
    let grown = peak.saturating_sub(before);
    eprintln!(
        "256 MiB streamed in {:?}; peak RSS +{} MiB",
        started.elapsed(),
        grown / MIB
    );
    assert!(
        grown < 192 * MIB,
        "streaming 256 MiB grew RSS by {} MiB",
        grown / MIB
    );
    other_vm_still_detects(&appliance.url(), "vm-large-other").await;
    appliance.stop().await;
}

/// A file past the scan's byte limit is not transferred whole: the
/// appliance asks for one byte past the limit, answers NOT_SCANNED at the
/// limit, and drops what a shim that ignores the request sends beyond it;
/// the real shim sends no more than asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_stops_the_transfer() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.limits.max_scan_bytes = MIB;
    let (appliance, app) = start_appliance(config).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-limit").await;
    vm.event(1, "/tmp/huge.bin", 10 * MIB).await;
    let asked = match vm.next().await {
        Ok(Some(ApplianceMessage {
            msg: Some(appliance_message::Msg::ContentRequest(r)),
        })) => r,
        other => panic!("expected a content request, got {other:?}"),
    };
    assert_eq!((asked.seq, asked.offset, asked.length), (1, 0, MIB + 1));
    // A shim that ignores the length and sends everything: the appliance
    // answers at the limit, and drops the rest, sent after its verdict,
    // without ending the session.
    let chunk = vec![0x41u8; MIB as usize];
    for i in 0..2u64 {
        vm.chunk(1, i * MIB, &chunk, false).await;
    }
    let v = vm.verdict().await;
    assert_eq!(v.kind, VerdictKind::NotScanned as i32, "{v:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 2..10u64 {
        vm.chunk(1, i * MIB, &chunk, i == 9).await;
    }
    vm.expect_eicar_denied(2).await;

    // The real shim sends no more than asked for.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("huge.bin"), vec![0x42u8; 10 * MIB as usize]).expect("write");
    let before = app.stats.content_received.get();
    let summary = shim_scan(&appliance.url(), "vm-limit-shim", dir.path()).await;
    assert_eq!(summary.skipped, 1, "{summary:?}");
    let moved = app.stats.content_received.get() - before;
    assert!(
        moved <= MIB + 2 * (4 << 20),
        "{moved} bytes crossed the wire for a limit of {MIB}"
    );
    appliance.stop().await;
}

/// `RegisterRequest` and `GuestMessage` as bytes on the wire, so that a
/// test can send what a typed client cannot: a string that is not UTF-8.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VmIdentity {
        #[prost(bytes = "vec", tag = "1")]
        pub vm_id: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegisterRequest {
        #[prost(message, optional, tag = "1")]
        pub vm: Option<VmIdentity>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionOpen {
        #[prost(bytes = "vec", tag = "1")]
        pub session_id: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileEvent {
        #[prost(uint64, tag = "1")]
        pub seq: u64,
        #[prost(bytes = "vec", tag = "3")]
        pub path: Vec<u8>,
    }
    /// `GuestMessage` with its `open` (1) and `event` (2) arms.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GuestMessage {
        #[prost(message, optional, tag = "1")]
        pub open: Option<SessionOpen>,
        #[prost(message, optional, tag = "2")]
        pub event: Option<FileEvent>,
    }
}

/// One status code per fault, whether it comes in a unary call or on a
/// session (the table in `shim.proto`): a message over the size limit is
/// RESOURCE_EXHAUSTED, one that does not decode INVALID_ARGUMENT, and so
/// are a chunk over 4 MiB and content out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_and_sessions_answer_faults_with_the_same_codes() {
    use tonic::codegen::http::uri::PathAndQuery;
    let _serial = SERIAL.lock().await;
    let (appliance, _app) = start_appliance(config_with_1_mib_messages()).await;
    let url = appliance.url();
    let channel = Channel::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");

    // Over the size limit: unary, then on a session.
    let mut c = client(&url).await;
    let s = c
        .scan(giva_proto::shim::ScanRequest {
            vm_id: "vm-codes".into(),
            name: "big".into(),
            data: vec![0u8; MIB as usize + 1],
        })
        .await
        .expect_err("a scan request over the limit was accepted");
    assert_eq!(s.code(), Code::ResourceExhausted, "unary: {s:?}");
    let s = send_path_over_the_limit(&url, "vm-codes-1")
        .await
        .expect_err("the session went on");
    assert_eq!(s.code(), Code::ResourceExhausted, "session: {s:?}");

    // Not UTF-8: unary, then on a session.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let bad = raw::RegisterRequest {
        vm: Some(raw::VmIdentity {
            vm_id: vec![b'v', 0xff, 0xfe],
        }),
    };
    let s = grpc
        .unary(
            tonic::Request::new(bad),
            PathAndQuery::from_static("/giva.shim.v1.ShimService/Register"),
            tonic_prost::ProstCodec::<raw::RegisterRequest, giva_proto::shim::RegisterResponse>::default(),
        )
        .await
        .expect_err("a register request that is not UTF-8 was accepted");
    assert_eq!(s.code(), Code::InvalidArgument, "unary: {s:?}");
    let session_id = register(&mut c, "vm-codes-2").await;
    let msgs = vec![
        raw::GuestMessage {
            open: Some(raw::SessionOpen {
                session_id: session_id.into_bytes(),
            }),
            event: None,
        },
        raw::GuestMessage {
            open: None,
            event: Some(raw::FileEvent {
                seq: 1,
                path: vec![b'/', 0xff],
            }),
        },
    ];
    grpc.ready().await.expect("ready");
    let mut inbound = grpc
        .streaming(
            tonic::Request::new(tokio_stream::StreamExt::chain(
                tokio_stream::iter(msgs),
                tokio_stream::pending(),
            )),
            PathAndQuery::from_static("/giva.shim.v1.ShimService/Session"),
            tonic_prost::ProstCodec::<raw::GuestMessage, ApplianceMessage>::default(),
        )
        .await
        .expect("session opens")
        .into_inner();
    let s = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(s.code(), Code::InvalidArgument, "session: {s:?}");

    // A chunk over 4 MiB, under the message limit.
    let mut config = test_config();
    config.server.max_message_bytes = 8 << 20;
    appliance.stop().await;
    let (appliance, _app) = start_appliance(config).await;
    let mut vm = RawVm::open(&appliance.url(), "vm-codes-3").await;
    vm.event(1, "/tmp/big", 6 << 20).await;
    vm.chunk(1, 0, &vec![0u8; 6 << 20], true).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("4194304"), "{s:?}");
    // Content out of order.
    let mut vm = RawVm::open(&appliance.url(), "vm-codes-4").await;
    vm.event(1, "/tmp/f", 100).await;
    vm.chunk(1, 50, &[0u8; 50], true).await;
    let s = vm.status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    appliance.stop().await;
}

/// Runs `f` on a thread of its own (default 2 MiB stack, like a worker)
/// with a time bound.
async fn bounded<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    bounded_peak(secs, what, f).await.0
}

/// Like [`bounded`], and also returns the highest RSS seen while `f` ran
/// (sampled every 5 ms).
async fn bounded_peak<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, u64) {
    let h = std::thread::Builder::new()
        .stack_size(2 * MIB as usize)
        .spawn(f)
        .expect("thread");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut peak = rss();
    while !h.is_finished() {
        assert!(Instant::now() < deadline, "{what}: not done in {secs} s");
        tokio::time::sleep(Duration::from_millis(5)).await;
        peak = peak.max(rss());
    }
    (
        h.join().unwrap_or_else(|_| panic!("{what}: panicked")),
        peak,
    )
}

fn limit_error(r: &Result<Database, BuildError>) -> bool {
    matches!(r, Err(BuildError::Compile(CompileError::Limit { .. })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_file_with_a_100_mb_line_is_refused_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for ext in ["ndb", "ldb", "hdb"] {
        let path = dir.path().join(format!("long.{ext}"));
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
            let first: &[u8] = match ext {
                "ldb" => b"Ok.Sig;Engine:51-255,Target:0;0;6576696c\n",
                "hdb" => b"44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
                _ => b"Ok.Sig:0:*:6576696c\n",
            };
            f.write_all(first).expect("write");
            let prefix: &[u8] = match ext {
                "ldb" => b"Long.Sig;Engine:51-255,Target:0;0;",
                "hdb" => b"",
                _ => b"Long.Sig:0:*:",
            };
            f.write_all(prefix).expect("write");
            let block = vec![b'a'; MIB as usize];
            for _ in 0..100 {
                f.write_all(&block).expect("write");
            }
            f.write_all(b"\n").expect("write");
        }
        let before = rss();
        let p = path.clone();
        let (r, peak) = bounded_peak(60, "100 MB line", move || {
            let mut c = Compiler::new();
            match c.add_file(&p) {
                Ok(()) => c.build(),
                Err(e) => Err(BuildError::from(e)),
            }
        })
        .await;
        let grown = peak.saturating_sub(before);
        assert!(limit_error(&r), ".{ext}: expected a limit error, got {r:?}");
        let msg = r.expect_err("refused").to_string();
        assert!(msg.contains(&format!("long.{ext}")), "{msg}");
        eprintln!(
            ".{ext} with a 100 MB line: {msg}; peak RSS +{} MiB",
            grown / MIB
        );
        // The file itself is 100 MB; allow a few copies but not more.
        assert!(grown < 512 * MIB, "RSS grew by {} MiB", grown / MIB);
    }
}

/// giva's default limits with lines as long as 1 MiB (ClamAV refuses a
/// line of 8,191 bytes or more, and so does giva by default).
fn long_lines() -> giva_signatures::Limits {
    giva_signatures::Limits {
        max_line_len: 1 << 20,
        ..giva_signatures::Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_alternations_compile_and_scan_in_bounded_time() {
    let _serial = SERIAL.lock().await;
    // 4096 branches; 15 nested levels (ClamAV's limit) of 2 branches each
    // (2^15 paths); an alternation of wide branches followed by gaps; and
    // negated alternations in a row.
    let wide: Vec<String> = (0..4096).map(|i| format!("{:04x}", i)).collect();
    let mut nested = String::from("41");
    for _ in 0..15 {
        nested = format!("({nested}|42)");
    }
    let sigs = vec![
        format!("Alt.Wide:0:*:6162({})6364\n", wide.join("|")),
        format!("Alt.Nested:0:*:6162{nested}6364\n"),
        format!(
            "Alt.Gaps:0:*:{}\n",
            (0..30)
                .map(|_| "(41|42|43)4444{0-8}")
                .collect::<Vec<_>>()
                .join("")
                + "4545"
        ),
        format!(
            "Alt.Neg:0:*:6162{}6364\n",
            (0..64).map(|_| "!(41|42)").collect::<String>()
        ),
        "Alt.Stars:0:*:4141*4141*4141*4141*4141*4141*4141*4141*4141*4141*4141*4141\n".to_string(),
        format!(
            "Alt.TooMany:0:*:6162({})\n",
            (0..5000)
                .map(|i| format!("{:04x}", i))
                .collect::<Vec<_>>()
                .join("|")
        ),
    ];
    let mut db = None;
    for s in &sigs {
        let s2 = s.clone();
        let r = bounded(30, "pathological alternation", move || {
            // Beyond ClamAV's line length: giva's own limits are tested.
            let mut c = Compiler::with_limits(long_lines());
            c.add_source("alt.ndb", &s2, false);
            c.build()
        })
        .await;
        match &r {
            Ok(_) => {}
            Err(e) => eprintln!("refused: {e}"),
        }
        if s.starts_with("Alt.TooMany") {
            assert!(limit_error(&r), "5000 branches must hit the limit: {r:?}");
        }
    }
    let all: String = sigs[..5].concat();
    let r = bounded(60, "all alternations", move || {
        let mut c = Compiler::with_limits(long_lines());
        c.add_source("alt.ndb", &all, false);
        c.build()
    })
    .await;
    if let Ok(d) = r {
        db = Some(d);
    }
    let db = db.expect("the loadable pathological signatures compile together");
    // Scanning 4 MiB of the worst-case bytes (every atom hits) stays bounded.
    let took = bounded(120, "scanning with pathological alternations", move || {
        let engine = giva_engine::Engine::new(&db).expect("engine");
        let mut data = Vec::with_capacity(4 << 20);
        while data.len() < 4 << 20 {
            data.extend_from_slice(b"ab414243AAAA");
        }
        let started = Instant::now();
        let opts = giva_engine::ScanOptions {
            all_match: true,
            ..Default::default()
        };
        let _ = engine.scan_bytes(&data, &opts);
        started.elapsed()
    })
    .await;
    eprintln!("4 MiB against pathological alternations: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_100_000_deep_is_refused_without_overflowing_the_stack() {
    let _serial = SERIAL.lock().await;
    const DEPTH: usize = 100_000;
    let cases = vec![
        (
            "deep.ndb",
            format!(
                "Deep.Alt:0:*:{}41{}\n",
                "(".repeat(DEPTH),
                ")".repeat(DEPTH)
            ),
        ),
        (
            "deep.ndb",
            format!(
                "Deep.Alt2:0:*:6162{}\n",
                "(41|".repeat(DEPTH) + "42" + &")".repeat(DEPTH)
            ),
        ),
        (
            "deep.ldb",
            format!(
                "Deep.Expr;Engine:51-255,Target:0;{}0{};6576696c\n",
                "(".repeat(DEPTH),
                ")".repeat(DEPTH)
            ),
        ),
        (
            "deep.ldb",
            format!(
                "Deep.Expr2;Engine:51-255,Target:0;{}0{};6576696c\n",
                "(0&".repeat(DEPTH),
                ")".repeat(DEPTH)
            ),
        ),
    ];
    for (name, text) in cases {
        let r = bounded(30, name, move || {
            let mut c = Compiler::new();
            c.add_source(name, &text, false);
            c.build()
        })
        .await;
        let e = r.expect_err("100,000-deep nesting must be refused");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_truncated_or_flipped_anywhere_is_refused() {
    let _serial = SERIAL.lock().await;
    let (small, bundled) = bounded(120, "truncation", || {
        let mut c = Compiler::new();
        c.add_source(
            "t.ndb",
            "Test.Evil:0:*:6576696c\nTest.Gap:0:0:4d5a{2-8}5045\n",
            false,
        );
        c.add_source(
            "t.ldb",
            "Test.Logical;Engine:51-255,Target:0;0&1;6576696c;676f6f64::i\n",
            false,
        );
        c.add_source(
            "t.hdb",
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
            false,
        );
        let small = c.build().expect("compiles").to_bytes();
        for at in 0..small.len() {
            assert!(
                Database::from_bytes(&small[..at]).is_err(),
                "truncated at {at} accepted"
            );
        }
        for at in 0..small.len() {
            let mut b = small.clone();
            b[at] ^= 0x01;
            assert!(Database::from_bytes(&b).is_err(), "flip at {at} accepted");
        }
        let bundled = giva_signatures::bundled().to_bytes();
        for at in 0..bundled.len() {
            assert!(
                Database::from_bytes(&bundled[..at]).is_err(),
                "bundled database truncated at {at} accepted"
            );
        }
        (small.len(), bundled.len())
    })
    .await;
    eprintln!("truncated at every offset: {small} + {bundled} bytes");
}

// ---------------------------------------------------------------------------
// Soak

/// `GIVA_SOAK_SECS` (default 600).
fn soak_secs() -> u64 {
    std::env::var("GIVA_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

/// 200 simulated VMs against one appliance whose manager restarts every
/// minute, and whose outbox's disk (a 64 MiB tmpfs) is full, with the
/// manager down, for the middle sixth of the run: zero lost detections,
/// no duplicate events, flat RSS.
///
/// Opt-in: `GIVA_SOAK_SECS=600 cargo test -p giva-tests --release --
/// --ignored soak --nocapture`. `GIVA_SOAK_VMS` and
/// `GIVA_SOAK_RESTART_SECS` change the defaults (200, 60);
/// `GIVA_SOAK_REPORT=FILE` writes the figures to FILE as JSON (`giva-bench
/// soak` runs this test so, and writes them into `bench/results/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test, minutes long: run with --ignored soak"]
async fn soak_200_vms_with_manager_restarts() {
    let _serial = SERIAL.lock().await;
    let secs = soak_secs();
    let vms: usize = std::env::var("GIVA_SOAK_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let restart_every = Duration::from_secs(
        std::env::var("GIVA_SOAK_RESTART_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let mgr_db = state.path().join("manager.sqlite");
    let mgr_addr = crate::common::free_addr().await;
    let (manager, _) = crate::common::start_manager_at(mgr_addr, &mgr_db).await;
    let mut manager = Some(manager);
    let mut config: Config = crate::common::config_with_manager(&format!("http://{mgr_addr}"));
    // Every simulated VM connects from loopback.
    config.server.max_connections_per_peer = vms + 16;
    let disk = crate::common::Tmpfs::mount(&state.path().join("disk"), 64);
    config.outbox.path = match &disk {
        Some(d) => d.0.join("outbox.sqlite"),
        None => state.path().join("outbox.sqlite"),
    };
    let (appliance, app) = start_appliance(config).await;
    let url = appliance.url();

    let sent = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let allowed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for v in 0..vms {
        let (url, sent, denied, allowed, stopping) = (
            url.clone(),
            sent.clone(),
            denied.clone(),
            allowed.clone(),
            stopping.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = client(&url).await;
            let mut vm = RawVm::open_on(&mut c, &format!("soak-{v:03}")).await;
            let mut seq = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                // One infected file and three clean ones, then a pause.
                seq += 1;
                let path = format!("/soak/{v}/{seq}.com");
                vm.event(seq, &path, EICAR.len() as u64).await;
                vm.chunk(seq, 0, EICAR, true).await;
                sent.fetch_add(1, Ordering::Relaxed);
                let verdict = vm.verdict().await;
                assert_eq!(verdict.kind, VerdictKind::Deny as i32, "{verdict:?}");
                denied.fetch_add(1, Ordering::Relaxed);
                for _ in 0..3 {
                    seq += 1;
                    let data = format!("clean {v} {seq} nothing here");
                    vm.event(seq, &format!("/soak/{v}/{seq}.txt"), data.len() as u64)
                        .await;
                    vm.chunk(seq, 0, data.as_bytes(), true).await;
                    let verdict = vm.verdict().await;
                    assert_eq!(verdict.kind, VerdictKind::Allow as i32, "{verdict:?}");
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500 + (v as u64 % 10) * 50)).await;
            }
        }));
    }

    let mut samples = Vec::new();
    let mut next_restart = Instant::now() + restart_every;
    let mut restarts = 0;
    let begun = Instant::now();
    let full_from = begun + Duration::from_secs(secs * 5 / 12);
    let full_until = begun + Duration::from_secs(secs * 7 / 12);
    let (mut filled, mut full_reported) = (false, false);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5)).await;
        samples.push((Instant::now(), rss()));
        // The disk is full while the manager is down, so that the outbox
        // must grow (with the manager up it holds few events, in space it
        // already has).
        if let Some(d) = &disk {
            let now = Instant::now();
            if !filled && now >= full_from && now < full_until {
                if let Some(m) = manager.take() {
                    m.stop().await;
                }
                d.fill();
                filled = true;
                eprintln!("soak: the manager is down and the outbox's disk is full");
            } else if filled && now >= full_until {
                d.unfill();
                filled = false;
                eprintln!("soak: the outbox's disk has room again");
            }
            if filled {
                full_reported |= app
                    .problems()
                    .iter()
                    .any(|p| p.contains("disk filled up") || p.contains("held in memory"));
            }
        }
        if !filled && Instant::now() >= next_restart {
            if let Some(m) = manager.take() {
                m.stop().await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (m, _) = crate::common::start_manager_at(mgr_addr, &mgr_db).await;
            manager = Some(m);
            restarts += 1;
            next_restart = Instant::now() + restart_every;
        }
    }
    stopping.store(true, Ordering::Relaxed);
    stop.notify_waiters();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a VM stops in time")
            .expect("a VM task failed");
    }
    if let Some(m) = manager.take() {
        m.stop().await;
    }
    let (manager, mgr) = crate::common::start_manager_at(mgr_addr, &mgr_db).await;
    let sent = sent.load(Ordering::Relaxed);
    // Every detection reaches the manager once the outbox drains.
    let all_in = crate::common::eventually(Duration::from_secs(120), || {
        let mgr = mgr.clone();
        async move { crate::common::detections(&mgr).await.len() as u64 >= sent }
    })
    .await;
    let stored = crate::common::detections(&mgr).await;
    let mut keys: Vec<(String, String)> = stored
        .iter()
        .filter_map(|e| e.event.as_ref())
        .map(|e| (e.vm_id.clone(), e.path.clone()))
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    let first = samples.get(samples.len() / 4).map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let disk_full = match &disk {
        Some(_) => format!(
            "full, with the manager down, from {} s to {} s of the run; the appliance reported it: {full_reported}",
            secs * 5 / 12,
            secs * 7 / 12
        ),
        None => "not filled (no tmpfs could be mounted)".to_string(),
    };
    let figures: Vec<(String, String)> = vec![
        (
            "run".into(),
            format!("{secs} s, {vms} VMs, {restarts} manager restarts"),
        ),
        ("outbox disk".into(), disk_full),
        ("infected files sent".into(), sent.to_string()),
        (
            "denied / clean allowed".into(),
            format!(
                "{} / {}",
                denied.load(Ordering::Relaxed),
                allowed.load(Ordering::Relaxed)
            ),
        ),
        (
            "detections stored / distinct".into(),
            format!("{total} / {}", keys.len()),
        ),
        (
            "RSS at 1/4 / at end / peak (the test process: appliance, manager and VMs)".into(),
            format!("{} / {} / {} MiB", first / MIB, last / MIB, peak / MIB),
        ),
        (
            "verdict cache at end (bounded by cache.max_bytes, 100 MiB): entries / bytes".into(),
            {
                let cache = app.cache.stats();
                format!("{} / {} MiB", cache.entries, cache.bytes >> 20)
            },
        ),
        (
            "outbox at end: pending / low-value dropped".into(),
            format!(
                "{} / {}",
                app.reporter.pending().await,
                app.stats.outbox_dropped.get()
            ),
        ),
    ];
    for (what, value) in &figures {
        eprintln!("soak: {what}: {value}");
    }
    // For `giva-bench soak`, which writes them into bench/results/.
    if let Ok(path) = std::env::var("GIVA_SOAK_REPORT") {
        let json = serde_json::to_string(&figures).expect("figures as JSON");
        std::fs::write(&path, json).expect("write the soak figures");
    }
    if disk.is_some() {
        assert!(full_reported, "the full outbox disk was not reported");
    }
    assert!(all_in, "lost detections: {sent} sent, {total} stored");
    assert_eq!(keys.len(), total, "duplicate detection events stored");
    assert_eq!(
        total as u64, sent,
        "stored detections differ from those sent"
    );
    assert!(
        last < first + first / 2 + 64 * MIB,
        "RSS not flat: {} MiB at 1/4 of the run, {} MiB at the end",
        first / MIB,
        last / MIB
    );
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_signature_update_is_refused_and_scanning_goes_on() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("main.hdb"),
        "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
    )
    .expect("write");
    let mut config = test_config();
    config.database.paths = vec![dir.path().to_path_buf()];
    config.database.watch_interval_secs = 0;
    let (appliance, app) = start_appliance(config).await;
    let version = app.signatures.version();
    let hostile = [
        (
            "deep.ndb",
            format!(
                "Deep:0:*:{}41{}\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        ("long.ndb", format!("Long:0:*:{}\n", "61".repeat(2 << 20))),
        (
            "alt.ndb",
            format!(
                "Alt:0:*:6162({})\n",
                (0..5000)
                    .map(|i| format!("{i:04x}"))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        ),
    ];
    for (name, text) in hostile {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let r = tokio::time::timeout(Duration::from_secs(60), app.reload("hostile update"))
            .await
            .expect("a reload finishes in time");
        let e = r.expect_err("a hostile signature file must be refused");
        assert!(e.to_string().contains(name), "{name}: {e}");
        assert_eq!(app.signatures.version(), version, "the old database stays");
        other_vm_still_detects(&appliance.url(), &format!("vm-update-{name}")).await;
        std::fs::remove_file(&path).expect("remove");
    }
    // An update that empties the database (the signature file truncated to
    // nothing) would make every verdict clean: refused, the old one stays.
    std::fs::write(dir.path().join("main.hdb"), b"").expect("truncate");
    let e = app
        .reload("emptied")
        .await
        .expect_err("an empty database must be refused");
    assert!(
        e.to_string().contains("main.hdb") && e.to_string().contains("empty"),
        "{e}"
    );
    assert_eq!(app.signatures.version(), version, "the old database stays");
    other_vm_still_detects(&appliance.url(), "vm-update-emptied").await;
    appliance.stop().await;
}
