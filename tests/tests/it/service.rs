//! The appliance as a service for many VMs: storm control, reloads under
//! load, graceful shutdown, and identity conflicts.

use std::sync::Arc;
use std::time::Duration;

use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ContentChunk, EventKind, FileEvent, FileIdentity, FullScanFinished, FullScanRequest,
    RegisterRequest, VerdictKind, VmIdentity, appliance_message, guest_message,
};
use giva_shim::load::{LoadConfig, run};
use tonic::Code;

use crate::common::{EICAR, RawSession, Running, start_appliance, test_config, write};

/// An appliance with one full-scan slot and three VMs with open sessions.
async fn one_slot_three_vms(
    names: [&str; 3],
) -> (Running, Arc<giva_appliance::Appliance>, [RawSession; 3]) {
    let mut config = test_config();
    config.full_scan.max_concurrent = 1;
    let (appliance, app) = start_appliance(config).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let a = RawSession::open(&mut client, names[0]).await;
    let b = RawSession::open(&mut client, names[1]).await;
    let c = RawSession::open(&mut client, names[2]).await;
    (appliance, app, [a, b, c])
}

fn ask(id: u64) -> guest_message::Msg {
    guest_message::Msg::FullScanRequest(FullScanRequest {
        full_scan_id: id,
        reason: "test".into(),
        ..Default::default()
    })
}

fn finished(id: u64) -> guest_message::Msg {
    guest_message::Msg::FullScanFinished(FullScanFinished {
        full_scan_id: id,
        completed: true,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_scan_slots_are_respected_in_order() {
    let (appliance, _app, [mut a, mut b, mut c]) =
        one_slot_three_vms(["slot-a", "slot-b", "slot-c"]).await;
    a.send(ask(1)).await;
    let appliance_message::Msg::FullScanSlot(s) = a.next().await else {
        panic!("slot answer")
    };
    assert!(s.granted, "the first VM scans at once");
    b.send(ask(2)).await;
    let appliance_message::Msg::FullScanSlot(s) = b.next().await else {
        panic!("slot answer")
    };
    assert!(!s.granted);
    assert_eq!(s.queue_position, 1);
    c.send(ask(3)).await;
    let appliance_message::Msg::FullScanSlot(s) = c.next().await else {
        panic!("slot answer")
    };
    assert!(!s.granted);
    assert_eq!(s.queue_position, 2);

    // A finishes: B (first in line) gets the slot, C still waits.
    a.send(finished(1)).await;
    let appliance_message::Msg::FullScanSlot(s) = b.next().await else {
        panic!("grant")
    };
    assert!(s.granted && s.full_scan_id == 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.rx.message())
            .await
            .is_err(),
        "C is not granted while B scans"
    );
    // B's VM disconnects mid-scan: its slot goes to C at once (it used to
    // wait about 10 s for the transport to notice the closed stream).
    drop(b);
    let appliance_message::Msg::FullScanSlot(s) = c.next_within(Duration::from_secs(3)).await
    else {
        panic!("grant")
    };
    assert!(s.granted && s.full_scan_id == 3);
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_full_scan_that_finishes_gives_its_slot_to_the_next() {
    let (appliance, _app, [mut a, mut b, mut c]) =
        one_slot_three_vms(["fin-a", "fin-b", "fin-c"]).await;
    let granted = |m| matches!(m, appliance_message::Msg::FullScanSlot(s) if s.granted);
    a.send(ask(1)).await;
    assert!(granted(a.next().await));
    b.send(ask(2)).await;
    assert!(!granted(b.next().await));
    c.send(ask(3)).await;
    assert!(!granted(c.next().await));
    a.send(finished(1)).await;
    assert!(granted(b.next().await), "B is next");
    // B was queued before it was granted; its finish must free the slot
    // while its session stays open.
    b.send(finished(2)).await;
    assert!(
        granted(c.next_within(Duration::from_secs(3)).await),
        "C gets the slot B finished with"
    );
    drop((a, b, c));
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_vm_id_cannot_be_registered_twice() {
    let (appliance, _app) = start_appliance(test_config()).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let live = RawSession::open(&mut client, "vm-twin").await;
    let vm = VmIdentity {
        vm_id: "vm-twin".into(),
        ..Default::default()
    };
    let err = client
        .register(RegisterRequest {
            vm: Some(vm.clone()),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // Once its stream is gone, the VM may register again (a reboot).
    drop(live);
    let mut ok = false;
    for _ in 0..50 {
        if client
            .register(RegisterRequest {
                vm: Some(vm.clone()),
            })
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "re-registration after the stream closed");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_files_in_flight_and_refuses_new_ones() {
    let (appliance, app) = start_appliance(test_config()).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let mut s = RawSession::open(&mut client, "vm-drain").await;
    let event = |seq| {
        guest_message::Msg::Event(FileEvent {
            seq,
            kind: EventKind::Open as i32,
            path: format!("/f{seq}"),
            identity: Some(FileIdentity {
                size: EICAR.len() as u64,
                file_id: seq,
                ..Default::default()
            }),
            blocking: true,
            full_scan_id: 0,
        })
    };
    s.send(event(1)).await;
    let appliance_message::Msg::ContentRequest(r) = s.next().await else {
        panic!("content request")
    };
    assert_eq!(r.seq, 1);
    s.send(guest_message::Msg::Chunk(ContentChunk {
        seq: 1,
        offset: 0,
        data: EICAR[..20].to_vec(),
        last: false,
    }))
    .await;

    // Shutdown begins while the file is half sent.
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.send(event(2)).await;
    let appliance_message::Msg::Verdict(v) = s.next().await else {
        panic!("verdict")
    };
    assert_eq!(
        (v.seq, v.kind),
        (2, VerdictKind::Error as i32),
        "new work is refused"
    );
    assert!(v.reason.contains("shutting down"), "{}", v.reason);
    s.send(guest_message::Msg::Chunk(ContentChunk {
        seq: 1,
        offset: 20,
        data: EICAR[20..].to_vec(),
        last: true,
    }))
    .await;
    let appliance_message::Msg::Verdict(v) = s.next().await else {
        panic!("verdict")
    };
    assert_eq!(
        (v.seq, v.kind),
        (1, VerdictKind::Deny as i32),
        "the file in flight finishes"
    );
    // Then the appliance closes the session.
    let end = tokio::time::timeout(Duration::from_secs(5), s.rx.message())
        .await
        .expect("closes");
    assert!(matches!(end, Ok(None)), "{end:?}");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_verdict() {
    let image = tempfile::tempdir().expect("tempdir");
    write(image.path(), "eicar.com", EICAR);
    for i in 0..9 {
        let body: Vec<u8> = (0..30_000u32)
            .map(|b| (b.wrapping_mul(13) + i) as u8)
            .collect();
        write(image.path(), &format!("f{i}.bin"), &body);
    }
    let sigs = tempfile::tempdir().expect("tempdir");
    let db = sigs.path().join("s.hdb");
    std::fs::write(
        &db,
        "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
    )
    .expect("write");
    let mut config = test_config();
    config.database.paths = vec![db.clone()];
    config.database.watch_interval_secs = 0;
    // No sharing between VMs, so every VM really scans while reloads swap
    // the engine underneath.
    config.policy.share_cache = false;
    let (appliance, app) = start_appliance(config).await;
    let mut load = LoadConfig::new(appliance.url(), 40, image.path());
    load.concurrency = 16;
    load.connections = 2;
    load.duration = Duration::from_secs(120);
    // Each VM opens every file ten times, so the reloads land mid-load.
    load.opens_per_vm = Some(100);
    // Reload again and again for as long as the load runs.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let reloader = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !*done_rx.borrow_and_update() {
                let extra = format!("{:032x}:{}:Extra-{n}\n", n + 1, 1000 + n);
                std::fs::write(
                    &db,
                    format!("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n{extra}"),
                )
                .expect("write");
                app.reload("test").await.expect("reload");
                n += 1;
                tokio::select! {
                    _ = done_rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            n
        })
    };
    let report = tokio::time::timeout(Duration::from_secs(180), run(&load))
        .await
        .expect("finishes")
        .expect("load runs");
    let _ = done_tx.send(true);
    let reloads = reloader.await.expect("reloader");
    assert!(
        reloads >= 3,
        "only {reloads} reloads happened during the load"
    );
    assert_eq!(report.verdicts, 40 * 100, "{report:?}");
    assert_eq!(
        report.deny,
        40 * 10,
        "every open of EICAR denied across reloads: {report:?}"
    );
    assert_eq!(
        report.errors + report.verdict_errors + report.abandoned,
        0,
        "{report:?}"
    );
    appliance.stop().await;
}
