//! The scan pool: priorities, fairness between VMs, bounded queue, panics,
//! async handles, shutdown, and pool scans equal to direct scans.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use giva_engine::pool::{Busy, JobError, JobHandle, PoolConfig, Priority, ScanPool, SplitConfig};
use giva_engine::{Engine, Outcome, ScanOptions, ScanResult};
use giva_signatures::{BodyPattern, BodySignature, Database, DatabaseInfo, Offset, Part, Token};

/// Occupies every worker until the returned senders are dropped (or sent
/// to). Returns once all gate jobs run. The handles are kept with the
/// senders: a job whose handle is dropped before it starts never runs.
fn block_workers(pool: &ScanPool) -> Vec<(mpsc::Sender<()>, JobHandle<()>)> {
    let (started_tx, started_rx) = mpsc::channel();
    let mut gates = Vec::new();
    for _ in 0..pool.workers() {
        let (tx, rx) = mpsc::channel::<()>();
        let started = started_tx.clone();
        let handle = pool
            .submit("gate", Priority::OnAccess, move || {
                started.send(()).unwrap();
                let _ = rx.recv();
            })
            .unwrap();
        gates.push((tx, handle));
    }
    for _ in 0..pool.workers() {
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    gates
}

type Log = Arc<Mutex<Vec<(String, usize)>>>;

fn logger(log: &Log, vm: &str, i: usize) -> impl FnOnce() + Send + 'static {
    let log = log.clone();
    let vm = vm.to_owned();
    move || log.lock().unwrap().push((vm, i))
}

#[test]
fn on_access_runs_before_queued_background_work() {
    for workers in [1, 2] {
        let pool = ScanPool::new(PoolConfig {
            workers,
            queue_capacity: 4096,
        });
        let gates = block_workers(&pool);
        let log: Log = Arc::default();
        let mut handles = Vec::new();
        for i in 0..200 {
            handles.push(
                pool.submit("bulk", Priority::Background, logger(&log, "bg", i))
                    .unwrap(),
            );
        }
        for i in 0..5 {
            handles.push(
                pool.submit("bulk", Priority::OnDemand, logger(&log, "od", i))
                    .unwrap(),
            );
        }
        let urgent = pool
            .submit("guest", Priority::OnAccess, logger(&log, "oa", 0))
            .unwrap();
        assert_eq!(pool.stats().queued, [1, 5, 200]);
        drop(gates);
        urgent.wait().unwrap();
        for h in handles {
            h.wait().unwrap();
        }
        let log = log.lock().unwrap();
        // Strict order: with every worker free at once, the on-access job
        // starts first and the on-demand ones before any background job.
        // (With several workers, jobs started together may log in either
        // order, hence the slack of `workers - 1`.)
        let pos = |name: &str| log.iter().position(|(v, _)| v == name).unwrap();
        assert!(pos("oa") < workers, "{workers} workers: {:?}", &log[..8]);
        let last_od = log.iter().rposition(|(v, _)| v == "od").unwrap();
        assert!(last_od < 6 + workers - 1, "{:?}", &log[..10]);
    }
}

/// A steady flood of background work adds at most about one job's worth
/// of latency to an on-access job.
#[test]
fn on_access_latency_under_background_flood() {
    let pool = ScanPool::new(PoolConfig {
        workers: 2,
        queue_capacity: 100_000,
    });
    let job = Duration::from_millis(5);
    // Kept: dropping them would cancel the flood.
    let _flood: Vec<_> = (0..2000)
        .map(|_| {
            pool.submit("bulk", Priority::Background, move || {
                std::thread::sleep(job)
            })
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    for _ in 0..5 {
        let t = std::time::Instant::now();
        pool.submit("guest", Priority::OnAccess, || ())
            .unwrap()
            .wait()
            .unwrap();
        let waited = t.elapsed();
        // One job's worth (5 ms) plus scheduling noise on a loaded shared
        // machine; without priorities it would be ~5 s (2000 jobs / 2).
        assert!(waited < job * 100, "waited {waited:?}");
    }
    assert!(pool.stats().queued[2] > 1000);
}

#[test]
fn one_vm_flooding_does_not_starve_another() {
    let pool = ScanPool::new(PoolConfig {
        workers: 1,
        queue_capacity: 4096,
    });
    let gates = block_workers(&pool);
    let log: Log = Arc::default();
    let mut a = Vec::new();
    for i in 0..1000 {
        a.push(
            pool.submit("vm-a", Priority::OnDemand, logger(&log, "a", i))
                .unwrap(),
        );
    }
    let mut b = Vec::new();
    for i in 0..10 {
        b.push(
            pool.submit("vm-b", Priority::OnDemand, logger(&log, "b", i))
                .unwrap(),
        );
    }
    drop(gates);
    for h in a.into_iter().chain(b) {
        h.wait().unwrap();
    }
    let log = log.lock().unwrap();
    let last_b = log.iter().rposition(|(v, _)| v == "b").unwrap();
    let last_a = log.iter().rposition(|(v, _)| v == "a").unwrap();
    // Round robin: a, b, a, b, ... so B's tenth job is about the 20th run.
    assert!(last_b <= 21, "last B job ran at {last_b}");
    assert_eq!(last_a, 1009);
    // Each VM's own jobs keep their order.
    let a_order: Vec<usize> = log.iter().filter(|(v, _)| v == "a").map(|x| x.1).collect();
    assert!(a_order.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn full_queue_is_busy_at_once() {
    let pool = ScanPool::new(PoolConfig {
        workers: 1,
        queue_capacity: 4,
    });
    let gates = block_workers(&pool);
    let mut hs = Vec::new();
    for i in 0..4 {
        hs.push(pool.submit("vm", Priority::Background, move || i).unwrap());
    }
    let err = pool.submit("vm", Priority::OnAccess, || 0).unwrap_err();
    assert_eq!(err, Busy);
    assert_eq!(err.to_string(), "scan queue full");
    let st = pool.stats();
    assert_eq!(st.rejected, 1);
    assert_eq!(st.queued, [0, 0, 4]);
    assert_eq!(st.running, 1);
    drop(gates);
    let got: Vec<i32> = hs.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    // Room again.
    assert_eq!(
        pool.submit("vm", Priority::OnAccess, || 7).unwrap().wait(),
        Ok(7)
    );
    // A handle resolves just before its job is counted as completed.
    let t = std::time::Instant::now();
    while pool.stats().completed < 6 && t.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    let st = pool.stats();
    assert_eq!(st.completed, 6);
    assert_eq!(st.queued, [0, 0, 0]);
}

#[test]
fn a_panicking_job_does_not_kill_its_worker() {
    let pool = ScanPool::new(PoolConfig {
        workers: 1,
        queue_capacity: 16,
    });
    let h = pool.submit("vm", Priority::OnAccess, || -> u32 { panic!("boom") });
    assert_eq!(h.unwrap().wait(), Err(JobError::Panicked));
    let h = pool.submit("vm", Priority::OnAccess, || 42u32).unwrap();
    assert_eq!(h.wait(), Ok(42));
    assert_eq!(pool.workers(), 1);
}

#[test]
fn handles_can_be_awaited() {
    let pool = ScanPool::new(PoolConfig::default());
    assert!(pool.workers() >= 1);
    let hs: Vec<_> = (0..50u64)
        .map(|i| {
            pool.submit("vm", Priority::OnDemand, move || i * 2)
                .unwrap()
        })
        .collect();
    let sum = futures_executor::block_on(async {
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..50).map(|i| i * 2).sum::<u64>());
}

#[test]
fn dropping_the_pool_cancels_queued_jobs() {
    let pool = ScanPool::new(PoolConfig {
        workers: 1,
        queue_capacity: 16,
    });
    let gates = block_workers(&pool);
    let queued = pool.submit("vm", Priority::OnAccess, || 1).unwrap();
    let clone = pool.clone();
    drop(pool);
    // A clone keeps the pool alive.
    assert_eq!(clone.stats().queued, [1, 0, 0]);
    let dropper = std::thread::spawn(move || drop(clone));
    assert_eq!(queued.wait(), Err(JobError::Shutdown));
    drop(gates);
    dropper.join().unwrap();
}

/// A job whose handle is dropped before it starts never runs: a guest
/// that disconnects, or a caller that stops waiting, does not leave its
/// scans queued for nobody.
#[test]
fn a_job_whose_handle_is_dropped_before_it_starts_never_runs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pool = ScanPool::new(PoolConfig {
        workers: 1,
        queue_capacity: 16,
    });
    let gates = block_workers(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let dropped = pool
        .submit("vm", Priority::OnAccess, move || {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap();
    let kept = pool.submit("vm", Priority::OnAccess, || 7).unwrap();
    drop(dropped);
    drop(gates);
    // FIFO within the VM: the dropped job was dequeued before this one ran.
    assert_eq!(kept.wait(), Ok(7));
    assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");
    assert_eq!(pool.stats().abandoned, 1);
}

/// Two literal signatures, `evil ` and `vilex`, whose atoms [`near_misses`]
/// keep hitting without a match.
fn engine() -> Engine {
    let sig = |name: &str, bytes: &[u8]| BodySignature {
        name: name.into(),
        target: 0,
        offset: Offset::Any,
        pattern: BodyPattern {
            parts: vec![Part {
                tokens: bytes
                    .iter()
                    .map(|&value| Token::Byte { value, mask: 0xff })
                    .collect(),
            }],
            gaps: vec![],
            left_anchor: None,
            right_anchor: None,
            start_assertion: None,
            end_assertion: None,
        },
    };
    let sigs = vec![sig("Test.Evil", b"evil "), sig("Test.Vile", b"vilex")];
    let db = Database::from_parts(DatabaseInfo::default(), sigs, vec![], vec![], vec![]);
    Engine::new(&db).unwrap()
}

#[test]
fn pool_scan_equals_direct_scan() {
    let pool = ScanPool::new(PoolConfig {
        workers: 2,
        queue_capacity: 64,
    });
    let e = engine();
    let opts = ScanOptions::default();
    for data in [&b"some evil bytes"[..], b"clean bytes", b"ev", b"evil"] {
        let buf: Arc<[u8]> = data.into();
        let got = pool
            .scan_bytes(&e, buf, &opts, "vm", Priority::OnAccess)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(got, e.scan_bytes(data, &opts));
    }
    // Any shared byte container works.
    let v = b"xx evil xx".to_vec();
    let got = pool
        .scan_bytes(&e, v.clone(), &opts, "vm", Priority::Background)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got, e.scan_bytes(&v, &opts));
}

#[test]
fn pool_is_send_sync_clone() {
    fn ok<T: Send + Sync + Clone>() {}
    ok::<ScanPool>();
    fn send<T: Send>() {}
    send::<giva_engine::pool::JobHandle<u8>>();
}

/// A pool that splits every buffer into segments of `segment` bytes.
fn splitting_pool(workers: usize, segment: usize) -> ScanPool {
    ScanPool::with_split(
        PoolConfig {
            workers,
            queue_capacity: 4096,
        },
        SplitConfig {
            threshold: 0,
            segment,
            ..SplitConfig::default()
        },
    )
}

/// `len` clean bytes, `evilevil…`, with a near miss of one of [`engine`]'s
/// atoms every 4 bytes: a real key of the index (`evil` or `vile`, the
/// first 4 bytes of an atom) at a position it looks up, whichever of the
/// two parities a scan's window starts at. Each costs a table probe and a
/// compare, so a scan of them lasts long enough (tens of ms in a release
/// build) for a job submitted after it starts to arrive while it still
/// runs. Plain `x`s scanned too fast for that, and so do near misses of a
/// 4-byte atom: the filter holds all 4 of its bytes.
fn near_misses(len: usize) -> Arc<[u8]> {
    b"evil".repeat(len / 4).into()
}

/// Starts an all-match scan of `data` as VM `bulk`'s background work.
fn background_scan(pool: &ScanPool, e: &Engine, data: Arc<[u8]>) -> JobHandle<ScanResult> {
    let all = ScanOptions {
        all_match: true,
        ..ScanOptions::default()
    };
    pool.scan_bytes(e, data, &all, "bulk", Priority::Background)
        .unwrap()
}

/// Waits (up to 10 s) until the pool has scanned `segments` segments.
fn wait_for_segments(pool: &ScanPool, segments: u64) {
    let t = std::time::Instant::now();
    while pool.stats().segments < segments {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the scan never started"
        );
        std::thread::yield_now();
    }
}

/// A split scan's runner gives its worker to an on-access job of another
/// VM between two segments: with one worker, the on-access job submitted
/// while a background scan of 1024 segments runs does not wait for the
/// whole scan.
#[test]
fn a_split_scan_yields_its_worker_between_segments() {
    let pool = splitting_pool(1, 16 << 10);
    let e = engine();
    let data = near_misses(16 << 20);
    let scan = background_scan(&pool, &e, data);
    wait_for_segments(&pool, 1);
    let p = pool.clone();
    let seen = pool
        .submit("guest", Priority::OnAccess, move || p.stats().segments)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(scan.wait().unwrap().outcome, Outcome::Clean);
    let st = pool.stats();
    assert_eq!(st.segments, 1024);
    assert!(seen < 1024, "the on-access job waited for the whole scan");
    assert!(st.yields >= 1);
}

/// Work stealing between the runners of one split scan: a runner that
/// yields its worker to an on-access job (which then blocks) leaves the
/// segments in its deque, and the other worker's runner steals them, so
/// the scan completes while the on-access job still holds the first
/// worker. (A runner may yield with an empty deque, leaving nothing to
/// steal: then the scenario is tried again.)
#[test]
fn an_idle_runner_steals_the_segments_of_a_runner_that_yielded() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pool = splitting_pool(2, 4 << 10);
    let e = engine();
    let data = near_misses(4 << 20);
    for _ in 0..10 {
        let before = pool.stats();
        let scan = background_scan(&pool, &e, data.clone());
        wait_for_segments(&pool, before.segments + 2);
        let (gate, gate_rx) = mpsc::channel::<()>();
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let guest = pool
            .submit("guest", Priority::OnAccess, move || {
                // Held until the scan is done (or 10 s, a safety net).
                let _ = gate_rx.recv_timeout(Duration::from_secs(10));
                flag.store(true, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(scan.wait().unwrap().outcome, Outcome::Clean);
        let done_first = !released.load(Ordering::SeqCst);
        drop(gate);
        guest.wait().unwrap();
        let st = pool.stats();
        assert_eq!(st.segments, before.segments + 1024);
        if st.yields > before.yields && st.stolen > before.stolen {
            assert!(done_first, "the scan waited for the yielded runner");
            return;
        }
    }
    panic!(
        "no runner yielded with segments left to steal: {:?}",
        pool.stats()
    );
}

/// Dropping the handle of a split scan stops it at its next segment, and
/// the pool lets go of its buffer.
#[test]
fn dropping_a_split_scan_stops_it_and_frees_its_buffer() {
    let pool = splitting_pool(1, 16 << 10);
    let e = engine();
    let data = near_misses(16 << 20);
    let scan = background_scan(&pool, &e, data.clone());
    wait_for_segments(&pool, 1);
    drop(scan);
    // The next job of the same VM and class queues behind the runner, which
    // yields to nothing (no other VM waits): it runs once the runner stops.
    let after = pool.submit("bulk", Priority::Background, || ()).unwrap();
    after.wait().unwrap();
    let st = pool.stats();
    assert!(
        st.segments < 1024,
        "all {} segments were scanned",
        st.segments
    );
    assert_eq!(st.abandoned, 1);
    // Only this test holds the buffer now.
    let t = std::time::Instant::now();
    while Arc::strong_count(&data) > 1 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the buffer is still held"
        );
        std::thread::yield_now();
    }
}
