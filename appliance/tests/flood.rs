//! A flood against the running `giva serve` process: many connections and
//! thousands of stalled session streams from one peer. The caps hold what
//! the appliance takes, and its memory comes back once the flood ends.
//! The resident set is the process's own (`/proc/PID/status`), so nothing
//! the test itself allocates is counted.

mod common;
use common::free_port;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ContentChunk, EventKind, FileEvent, FileIdentity, GuestMessage, RegisterRequest, SessionOpen,
    VmIdentity, guest_message,
};

const MIB: u64 = 1024 * 1024;
/// Session streams the flood tries to open.
const STREAMS: usize = 10_000;
/// Streams per connection: the appliance's default cap.
const PER_CONNECTION: usize = 64;
/// How long one connection attempt, with its first call, may take.
const CONNECT: Duration = Duration::from_secs(10);
/// How long the flood keeps opening connections.
const FLOOD_BUDGET: Duration = Duration::from_secs(120);
/// How long the whole test may run before the watchdog ends it. It takes
/// about 20 s; a wait that never ends must fail the run, not hold it.
const TEST_LIMIT: Duration = Duration::from_secs(420);

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One metric's value from the admin endpoint's `/metrics`.
fn metric(admin: u16, name: &str) -> f64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

struct Serving(Child);

/// Where the test is, for the watchdog's message.
type Phase = Arc<Mutex<&'static str>>;

fn enter(phase: &Phase, name: &'static str) {
    *phase.lock().unwrap_or_else(|e| e.into_inner()) = name;
}

/// Kills the appliance `pid` and ends the test process if the test is still
/// running after [`TEST_LIMIT`], saying which phase it was in.
fn watchdog(pid: u32, phase: Phase) {
    std::thread::spawn(move || {
        std::thread::sleep(TEST_LIMIT);
        let at = *phase.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!(
            "flood: still running after {TEST_LIMIT:?}, in phase \"{at}\"; \
             killing the appliance and failing the test"
        );
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        std::process::exit(101);
    });
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Registers `vm_id`, opens its session, announces a 1 MiB file and sends
/// its first 64 KiB; then holds the stream open, sending nothing more,
/// until the task is aborted. Counts the session in `opened` once it opens.
async fn stalled_session(
    mut c: ShimServiceClient<tonic::transport::Channel>,
    vm_id: String,
    opened: Arc<AtomicUsize>,
) {
    let Ok(r) = c
        .register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: vm_id.clone(),
                ..VmIdentity::default()
            }),
        })
        .await
    else {
        return;
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let msgs = [
        guest_message::Msg::Open(SessionOpen {
            session_id: r.into_inner().session_id,
        }),
        guest_message::Msg::Event(FileEvent {
            seq: 1,
            kind: EventKind::Open as i32,
            path: format!("/flood/{vm_id}"),
            identity: Some(FileIdentity {
                size: MIB,
                ..FileIdentity::default()
            }),
            blocking: true,
            full_scan_id: 0,
        }),
        guest_message::Msg::Chunk(ContentChunk {
            seq: 1,
            offset: 0,
            data: vec![0x5a; 64 << 10],
            last: false,
        }),
    ];
    for m in msgs {
        let _ = tx.send(GuestMessage { msg: Some(m) }).await;
    }
    let Ok(response) = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    else {
        return;
    };
    opened.fetch_add(1, Ordering::Relaxed);
    let _inbound = response.into_inner();
    // Aborting the task drops the stream and its sender: the flood ends
    // for every session at once, however far each one got.
    std::future::pending::<()>().await;
    drop(tx);
}

/// 10,000 session streams from one address, 64 to a connection (157
/// connections): the appliance serves at most `max_connections_per_peer`
/// (16) of the connections and refuses the rest as they arrive, so at most
/// 16 × 64 sessions are open; 10 s after the flood ends the process holds
/// at most 64 MiB more than before it, and scans as before.
///
/// Every wait is bounded: a session still opening when the flood ends is
/// aborted with the rest, and a watchdog fails the test past its limit.
#[test]
fn a_flood_of_streams_is_capped_and_memory_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_giva"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--manager",
            &format!("http://127.0.0.1:{}", free_port()),
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start giva serve");
    let serving = Serving(child);
    let pid = serving.0.id();
    let phase: Phase = Arc::new(Mutex::new("start"));
    watchdog(pid, phase.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let guest = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        guest.path().join("eicar.com"),
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    )
    .expect("write");
    let scan_config = |vm: &str| {
        giva_shim::scan::ScanConfig::new(
            url.clone(),
            VmIdentity {
                vm_id: vm.into(),
                ..VmIdentity::default()
            },
            vec![guest.path().to_path_buf()],
        )
    };

    enter(&phase, "first scan");
    let config = scan_config("vm-before");
    let first = rt.block_on(async {
        for _ in 0..100 {
            let attempt = giva_shim::scan::run(&config, |_| {}, |_, _| {});
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(20), attempt).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the appliance did not come up");
    });
    assert_eq!(first.infected, 1);
    std::thread::sleep(Duration::from_secs(1));
    let before = rss(pid);

    enter(&phase, "flood");
    let opened = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (served, peak) = rt.block_on(async {
        let mut tasks = Vec::new();
        let mut served = 0;
        for conn in 0..STREAMS.div_ceil(PER_CONNECTION) {
            if started.elapsed() > FLOOD_BUDGET {
                eprintln!("flood: stopped opening connections at {conn} after {FLOOD_BUDGET:?}");
                break;
            }
            // A connection the appliance closed fails its first call.
            let first_call = async {
                let channel = tonic::transport::Endpoint::from_shared(url.clone())
                    .expect("url")
                    .connect()
                    .await
                    .ok()?;
                let mut c = ShimServiceClient::new(channel);
                c.register(RegisterRequest {
                    vm: Some(VmIdentity {
                        vm_id: format!("vm-flood-probe-{conn}"),
                        ..VmIdentity::default()
                    }),
                })
                .await
                .ok()?;
                Some(c)
            };
            let Ok(Some(c)) = tokio::time::timeout(CONNECT, first_call).await else {
                continue;
            };
            served += 1;
            for i in 0..PER_CONNECTION {
                tasks.push(tokio::spawn(stalled_session(
                    c.clone(),
                    format!("vm-flood-{conn:03}-{i:02}"),
                    opened.clone(),
                )));
            }
        }
        // Let the sessions open and hold their content, sampling the peak.
        let mut peak = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss(pid));
        }
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        (served, peak)
    });
    enter(&phase, "after the flood");
    let refused = metric(admin, "giva_connections_refused_total");
    let opened = opened.load(Ordering::Relaxed);
    eprintln!(
        "flood: {served} connections served, {refused} refused, {opened} sessions opened in {:?}; \
         RSS before {} MiB, peak {} MiB",
        started.elapsed(),
        before / MIB,
        peak / MIB
    );
    assert!(
        served <= 16,
        "{served} connections served past the cap of 16"
    );
    assert!(refused >= 1.0, "no connection was refused");
    assert!(opened <= 16 * PER_CONNECTION, "{opened} sessions opened");

    // The clients are gone; the appliance lets go of what they held.
    drop(rt);
    std::thread::sleep(Duration::from_secs(10));
    let after = rss(pid);
    eprintln!("flood: RSS 10 s after: {} MiB", after / MIB);
    assert!(
        after <= before + 64 * MIB,
        "RSS {} MiB 10 s after the flood, {} MiB before it",
        after / MIB,
        before / MIB
    );
    assert_eq!(metric(admin, "giva_sessions"), 0.0);

    enter(&phase, "scan after the flood");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = scan_config("vm-after");
    let summary = rt
        .block_on(async {
            let scan = giva_shim::scan::run(&config, |_| {}, |_, _| {});
            tokio::time::timeout(Duration::from_secs(60), scan).await
        })
        .expect("the scan after the flood took over 60 s")
        .expect("scan after the flood");
    assert_eq!(summary.infected, 1);
}
