//! Detection reporting under faults: the manager down, the appliance
//! crashed, the manager restarted, a flapping network, a full disk quota.
//! Every case checks that each detection reaches the manager exactly once.

use std::collections::HashSet;
use std::time::Duration;

use giva_proto::manager::StoredEvent;

use crate::common::{
    CrashableAppliance, FlakyProxy, Tmpfs, config_with_manager, detections, eventually, free_addr,
    shim_scan, start_appliance, start_manager_at, write_eicars,
};

fn ids(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.event.as_ref().map(|e| e.event_id.clone()))
        .collect()
}

fn assert_exactly_once(events: &[StoredEvent], expected: usize) {
    let ids = ids(events);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event stored twice: {ids:?}");
    assert_eq!(ids.len(), expected, "every detection stored: {ids:?}");
}

/// Waits until the manager holds `n` detections (or 20 s pass).
async fn wait_for(mgr: &giva_manager::Manager, n: usize) -> Vec<StoredEvent> {
    eventually(Duration::from_secs(20), || async {
        detections(mgr).await.len() >= n
    })
    .await;
    // Let a stray duplicate arrive, if one were coming.
    tokio::time::sleep(Duration::from_millis(300)).await;
    detections(mgr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_down_at_detection_gets_the_event_once_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let (appliance, _app) = start_appliance(config_with_manager(&format!("http://{addr}"))).await;
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 3);
    let summary = shim_scan(&appliance.url(), "vm-down", &files).await;
    assert_eq!(summary.infected, 3, "verdicts do not wait for the manager");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (manager, mgr) = start_manager_at(addr, &dir.path().join("m.sqlite")).await;
    let stored = wait_for(&mgr, 3).await;
    assert_exactly_once(&stored, 3);
    appliance.stop().await;
    manager.stop().await;
}

#[test]
fn appliance_crash_after_deny_delivers_after_restart() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 2);
    let addr = rt.block_on(free_addr());
    let mut config = config_with_manager(&format!("http://{addr}"));
    config.outbox.path = dir.path().join("outbox.sqlite");
    config.appliance_id = "crashy".into();

    // The manager is down; the guest gets its DENY; then the appliance dies.
    let appliance = CrashableAppliance::start(config.clone());
    let summary = rt.block_on(shim_scan(&appliance.url(), "vm-crash", &files));
    assert_eq!(summary.infected, 2);
    appliance.crash();

    // Manager back, appliance restarted on the same outbox.
    rt.block_on(async {
        let (manager, mgr) = start_manager_at(addr, &dir.path().join("m.sqlite")).await;
        let restarted = CrashableAppliance::start(config);
        let stored = wait_for(&mgr, 2).await;
        assert_exactly_once(&stored, 2);
        for e in &stored {
            assert_eq!(e.event.as_ref().map(|e| e.vm_id.as_str()), Some("vm-crash"));
        }
        restarted.crash();
        manager.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_restart_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("m.sqlite");
    let addr = free_addr().await;
    let (manager, _mgr) = start_manager_at(addr, &db).await;
    let (appliance, _app) = start_appliance(config_with_manager(&manager.url())).await;
    let mut expected = 0;
    let mut manager = Some(manager);
    for round in 0..4 {
        let files = dir.path().join(format!("round-{round}"));
        std::fs::create_dir(&files).expect("mkdir");
        write_eicars(&files, 5);
        expected += 5;
        let summary = shim_scan(&appliance.url(), "vm-restart", &files).await;
        assert_eq!(summary.infected, 5);
        if round == 1 {
            // Restart while events of this round may still be in flight.
            if let Some(m) = manager.take() {
                m.stop().await;
            }
            manager = Some(start_manager_at(addr, &db).await.0);
        }
    }
    let m = manager.take().expect("manager");
    m.stop().await;
    let (manager, mgr) = start_manager_at(addr, &db).await;
    let stored = wait_for(&mgr, expected).await;
    assert_exactly_once(&stored, expected);
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_network_delivers_in_order_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maddr = free_addr().await;
    let (manager, mgr) = start_manager_at(maddr, &dir.path().join("m.sqlite")).await;
    let proxy = FlakyProxy::start(maddr).await;
    let (appliance, _app) = start_appliance(config_with_manager(&proxy.url())).await;
    let mut expected = 0;
    for round in 0..6 {
        let files = dir.path().join(format!("round-{round}"));
        std::fs::create_dir(&files).expect("mkdir");
        write_eicars(&files, 3);
        expected += 3;
        // Alternate: cut connections mid-stream, and stay down for a while.
        proxy.cut(round % 2 == 1);
        let summary = shim_scan(&appliance.url(), "vm-flap", &files).await;
        assert_eq!(summary.infected, 3);
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.restore();
    }
    let stored = wait_for(&mgr, expected).await;
    assert_exactly_once(&stored, expected);
    // In order: the appliance's event ids end in a per-boot counter.
    let seqs: Vec<u64> = ids(&stored)
        .iter()
        .map(|id| {
            id.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("numbered id")
        })
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "events arrive in the order they happened");
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_keeps_detections_and_drops_low_value_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let mut config = config_with_manager(&format!("http://{addr}"));
    config.outbox.path = dir.path().join("outbox.sqlite");
    config.outbox.quota_bytes = 600; // a handful of events
    let (appliance, app) = start_appliance(config).await;
    // Many registrations (low value), then detections, with the manager down.
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 4);
    for i in 0..20 {
        let empty = dir.path().join(format!("empty-{i}"));
        std::fs::create_dir(&empty).expect("mkdir");
        shim_scan(&appliance.url(), &format!("vm-noise-{i}"), &empty).await;
    }
    let summary = shim_scan(&appliance.url(), "vm-quota", &files).await;
    assert_eq!(summary.infected, 4);
    let dropped = app.stats.snapshot().outbox_dropped;
    assert!(dropped > 0, "low-value events were dropped and counted");

    let (manager, mgr) = start_manager_at(addr, &dir.path().join("m.sqlite")).await;
    let stored = wait_for(&mgr, 4).await;
    assert_exactly_once(&stored, 4);
    appliance.stop().await;
    manager.stop().await;
}

/// The outbox's disk fills up while the manager is down: the detections
/// are still committed (in the space set aside at start), the appliance
/// says its disk filled up, and after a graceful stop and a restart the
/// manager gets each detection once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_survives_a_full_disk_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 24) else {
        return;
    };
    let addr = free_addr().await;
    let mut config = config_with_manager(&format!("http://{addr}"));
    config.outbox.path = disk.0.join("outbox.sqlite");
    let (appliance, app) = start_appliance(config.clone()).await;
    assert!(app.problems().is_empty(), "{:?}", app.problems());
    // Fill what the reserve left free.
    disk.fill();
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 2);
    let summary = shim_scan(&appliance.url(), "vm-full", &files).await;
    assert_eq!(summary.infected, 2);
    let problems = app.problems();
    assert!(
        problems.iter().any(|p| p.contains("disk filled up")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("held in memory")),
        "the detections reached the disk: {problems:?}"
    );
    appliance.stop().await;

    // Back up, with the manager: each detection once.
    disk.unfill();
    let (manager, mgr) = start_manager_at(addr, &dir.path().join("m.sqlite")).await;
    let (appliance, _app) = start_appliance(config).await;
    let stored = wait_for(&mgr, 2).await;
    assert_exactly_once(&stored, 2);
    appliance.stop().await;
    manager.stop().await;
}

/// An outbox file found empty at start (0 bytes) is moved aside, not
/// silently reused: the appliance starts on a fresh outbox, keeps
/// detecting, and its health says what happened until the moved file is
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_outbox_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let mut config = config_with_manager(&format!("http://{addr}"));
    config.outbox.path = dir.path().join("outbox.sqlite");
    std::fs::write(&config.outbox.path, b"").expect("empty outbox");
    let (appliance, app) = start_appliance(config).await;
    let health = app.health().await;
    assert!(
        health
            .iter()
            .any(|p| p.contains("empty") && p.contains("moved aside")),
        "{health:?}"
    );
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 1);
    assert_eq!(
        shim_scan(&appliance.url(), "vm-empty", &files)
            .await
            .infected,
        1
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let s = p.to_string_lossy().into_owned();
            s.contains(".damaged-") && !s.ends_with("-wal") && !s.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    std::fs::remove_file(&aside[0]).expect("acknowledge");
    assert!(
        app.health()
            .await
            .iter()
            .all(|p| !p.contains("moved aside"))
    );
    appliance.stop().await;
}

/// With no reserve and a full disk, a detection cannot be committed: the
/// guest still gets DENY, the appliance says the event is held in memory
/// only (health 503), and a graceful stop (SIGTERM) writes it to the
/// outbox once there is room, so the manager gets it after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_held_in_memory_is_written_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 8) else {
        return;
    };
    let addr = free_addr().await;
    let mut config = config_with_manager(&format!("http://{addr}"));
    config.outbox.path = disk.0.join("outbox.sqlite");
    config.outbox.reserve_bytes = 0;
    let (appliance, app) = start_appliance(config.clone()).await;
    disk.fill();
    let files = dir.path().join("guest");
    std::fs::create_dir(&files).expect("mkdir");
    write_eicars(&files, 2);
    let summary = shim_scan(&appliance.url(), "vm-held", &files).await;
    assert_eq!(summary.infected, 2, "DENY even though the disk is full");
    let health = app.health().await;
    assert!(
        health.iter().any(|p| p.contains("held in memory")),
        "{health:?}"
    );
    // Room again, then the graceful stop writes what memory held. (Until
    // this was fixed, the outbox's connection was left inside a
    // transaction by the failed writes, and this write was lost.)
    disk.unfill();
    // A detection after the disk has room again is committed as usual.
    let later = dir.path().join("later");
    std::fs::create_dir(&later).expect("mkdir");
    std::fs::write(later.join("again.com"), crate::common::EICAR).expect("write");
    assert_eq!(
        shim_scan(&appliance.url(), "vm-held-2", &later)
            .await
            .infected,
        1
    );
    appliance.stop().await;
    assert!(app.problems().is_empty(), "{:?}", app.problems());
    let (manager, mgr) = start_manager_at(addr, &dir.path().join("m.sqlite")).await;
    let (appliance, app) = start_appliance(config).await;
    let stored = wait_for(&mgr, 3).await;
    assert_exactly_once(&stored, 3);
    assert!(app.problems().is_empty(), "{:?}", app.problems());
    appliance.stop().await;
    manager.stop().await;
}

/// The manager's store on a disk that fills up: a write fails, and once
/// there is room again the next write is committed for good. (Before, the
/// failed write left its connection inside a transaction, and the pool's
/// later writes on it failed or were lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_store_writes_again_once_its_disk_has_room() {
    use giva_manager::quarantine::Rules;
    use giva_manager::store::{EventFilter, Store};
    use giva_proto::manager::{Event, EventKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 8) else {
        return;
    };
    let path = disk.0.join("manager.sqlite");
    let rules = Rules {
        policy: giva_manager::config::QuarantineConfig::default(),
        actions: Vec::new(),
    };
    let detection = |id: String| Event {
        event_id: id,
        kind: EventKind::Detection as i32,
        vm_id: "vm-store".into(),
        appliance_id: "a".into(),
        signatures: vec!["Eicar-Test-Signature".into()],
        detected_at_us: 10,
        detail: "x".repeat(2000),
        ..Event::default()
    };
    let store = Store::open(&path).await.expect("store");
    disk.fill();
    let mut failures = 0;
    for i in 0..2000 {
        if store
            .insert_events(&[detection(format!("full-{i}"))], 100, &rules, false)
            .await
            .is_err()
        {
            failures += 1;
            if failures == 8 {
                break;
            }
        }
    }
    assert!(failures > 0, "the full disk never refused a write");
    disk.unfill();
    for i in 0..8 {
        store
            .insert_events(&[detection(format!("after-{i}"))], 100, &rules, false)
            .await
            .expect("a write once the disk has room");
    }
    store.close().await;
    let store = Store::open(&path).await.expect("store reopened");
    let filter = EventFilter {
        limit: 10_000,
        ..EventFilter::default()
    };
    let ids: Vec<String> = store
        .events(&filter)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.event.map(|e| e.event_id))
        .collect();
    for i in 0..8 {
        assert!(
            ids.contains(&format!("after-{i}")),
            "after-{i} lost: {} events stored",
            ids.len()
        );
    }
    store.close().await;
}
