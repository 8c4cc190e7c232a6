//! The trust model (docs/security.md): what a guest, another guest or
//! anyone on the network may not do, each shown refused with real
//! services on loopback.

use std::time::Duration;

use giva_manager::quarantine::VmState;
use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{ListVmsRequest, RequestScanRequest, UntagVmRequest};
use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{ScanRequest, VerdictKind};

use crate::common::{
    EICAR, RawSession, config_with_manager, detections, eventually, operator_client, shim_scan,
    start_appliance, start_manager,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_lift_its_own_quarantine_without_the_operator_token() {
    let (manager, mgr) = start_manager().await;
    let (appliance, _app) = start_appliance(config_with_manager(&manager.url())).await;
    let guest = tempfile::tempdir().expect("tempdir");
    std::fs::write(guest.path().join("eicar.com"), EICAR).expect("write");
    let summary = shim_scan(&appliance.url(), "vm-bad", guest.path()).await;
    assert_eq!(summary.infected, 1);
    let tagged = || async {
        mgr.store()
            .vm("vm-bad")
            .await
            .ok()
            .flatten()
            .is_some_and(|v| v.tagged && VmState::of(&v) == VmState::Infected)
    };
    assert!(
        eventually(Duration::from_secs(10), tagged).await,
        "quarantined"
    );

    // The guest reaches the manager's port and asks, without a token, or
    // with a guessed one, to be released or to have a scan scheduled.
    let mut anon = ManagerServiceClient::connect(manager.url())
        .await
        .expect("connect");
    let untag = anon
        .untag_vm(UntagVmRequest {
            vm_id: "vm-bad".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(untag.code(), tonic::Code::Unauthenticated, "{untag:?}");
    let scan = anon
        .request_scan(RequestScanRequest {
            vm_id: "vm-bad".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(scan.code(), tonic::Code::Unauthenticated, "{scan:?}");
    let list = anon.list_vms(ListVmsRequest {}).await.expect_err("refused");
    assert_eq!(list.code(), tonic::Code::Unauthenticated, "{list:?}");
    let mut req = tonic::Request::new(UntagVmRequest {
        vm_id: "vm-bad".into(),
    });
    req.metadata_mut().insert(
        "authorization",
        "Bearer 0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .expect("header"),
    );
    let guess = anon.untag_vm(req).await.expect_err("refused");
    assert_eq!(guess.code(), tonic::Code::Unauthenticated, "{guess:?}");
    assert!(tagged().await, "still quarantined");

    // The operator, with the token, can.
    operator_client(&manager.url(), &mgr)
        .await
        .untag_vm(UntagVmRequest {
            vm_id: "vm-bad".into(),
        })
        .await
        .expect("the operator releases the VM");
    let v = mgr
        .store()
        .vm("vm-bad")
        .await
        .expect("store")
        .expect("known");
    assert_eq!(VmState::of(&v), VmState::Clean, "{v:?}");
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_scan_that_claims_another_vm_quarantines_nobody() {
    let (manager, mgr) = start_manager().await;
    let (appliance, _app) = start_appliance(config_with_manager(&manager.url())).await;
    // The victim: a VM with a clean file system.
    let clean = tempfile::tempdir().expect("tempdir");
    std::fs::write(clean.path().join("notes.txt"), b"nothing here\n").expect("write");
    let summary = shim_scan(&appliance.url(), "victim", clean.path()).await;
    assert_eq!(summary.infected, 0);
    // The attacker scans an EICAR buffer and claims to be the victim.
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let verdict = client
        .scan(ScanRequest {
            vm_id: "victim".into(),
            name: "planted".into(),
            data: EICAR.to_vec(),
        })
        .await
        .expect("scan")
        .into_inner()
        .verdict
        .expect("verdict");
    assert_eq!(
        verdict.kind,
        VerdictKind::Deny as i32,
        "the buffer is infected"
    );
    // The detection is recorded, quoting the claim, and attributed to no VM.
    assert!(
        eventually(Duration::from_secs(10), || async {
            detections(&mgr).await.iter().any(|d| {
                d.event.as_ref().is_some_and(|e| {
                    e.vm_id.is_empty() && e.detail.contains("claimed to be VM victim")
                })
            })
        })
        .await,
        "the unary detection reaches the manager"
    );
    // The victim is not quarantined (the manager may not even know it yet:
    // its own clean scan rides the heartbeat).
    if let Some(victim) = mgr.store().vm("victim").await.expect("store") {
        assert_eq!(VmState::of(&victim), VmState::Clean, "{victim:?}");
        assert!(!victim.tagged);
    }
    assert!(
        detections(&mgr)
            .await
            .iter()
            .all(|d| d.event.as_ref().is_some_and(|e| e.vm_id != "victim")),
        "no detection is the victim's"
    );
    appliance.stop().await;
    manager.stop().await;
}

/// Sends one file's content on `s` as a guest would, after its event;
/// returns the verdict kind.
async fn send_file(
    s: &mut RawSession,
    seq: u64,
    path: &str,
    data: &[u8],
    full_scan_id: u64,
) -> i32 {
    use giva_proto::shim::{
        ContentChunk, EventKind as ShimKind, FileEvent, FileIdentity, appliance_message,
        guest_message,
    };
    s.send(guest_message::Msg::Event(FileEvent {
        seq,
        kind: if full_scan_id == 0 {
            ShimKind::Open
        } else {
            ShimKind::FullScanItem
        } as i32,
        path: path.into(),
        identity: Some(FileIdentity {
            size: data.len() as u64,
            mtime_ns: seq as i64,
            file_id: seq,
            ..Default::default()
        }),
        blocking: false,
        full_scan_id,
    }))
    .await;
    loop {
        match s.next().await {
            appliance_message::Msg::ContentRequest(r) if r.seq == seq => {
                s.send(guest_message::Msg::Chunk(ContentChunk {
                    seq,
                    offset: 0,
                    data: data.to_vec(),
                    last: true,
                }))
                .await;
            }
            appliance_message::Msg::Verdict(v) if v.seq == seq => return v.kind,
            _ => {}
        }
    }
}

/// Waits on `s` for the appliance's next `FullScanCommand`.
async fn next_command(s: &mut RawSession) -> giva_proto::shim::FullScanCommand {
    loop {
        if let giva_proto::shim::appliance_message::Msg::FullScanCommand(c) = s.next().await {
            return c;
        }
    }
}

/// Runs full scan `id` on `s`: asks for a slot with `token` over `roots`,
/// sends `files`, and says it is over with `absent` paths gone.
async fn run_scan(
    s: &mut RawSession,
    id: u64,
    token: &str,
    roots: &[String],
    files: &[(&str, &[u8])],
    absent: &[String],
) {
    use giva_proto::shim::{FullScanFinished, FullScanRequest, appliance_message, guest_message};
    s.send(guest_message::Msg::FullScanRequest(FullScanRequest {
        full_scan_id: id,
        reason: "ordered".into(),
        scan_token: token.into(),
        roots: roots.to_vec(),
    }))
    .await;
    loop {
        if let appliance_message::Msg::FullScanSlot(slot) = s.next().await
            && slot.full_scan_id == id
            && slot.granted
        {
            break;
        }
    }
    for (i, (path, data)) in files.iter().enumerate() {
        send_file(s, id * 100 + i as u64, path, data, id).await;
    }
    s.send(guest_message::Msg::FullScanFinished(FullScanFinished {
        full_scan_id: id,
        completed: true,
        absent_paths: absent.to_vec(),
        ..FullScanFinished::default()
    }))
    .await;
}

/// The causes of `vm_id`'s transitions.
async fn causes(mgr: &giva_manager::Manager, vm_id: &str) -> Vec<String> {
    mgr.store()
        .transitions(Some(vm_id), 100)
        .await
        .expect("transitions")
        .into_iter()
        .map(|t| t.cause)
        .collect()
}

async fn order(manager_url: &str, mgr: &giva_manager::Manager, vm_id: &str) {
    let delivered = operator_client(manager_url, mgr)
        .await
        .request_scan(RequestScanRequest {
            vm_id: vm_id.into(),
        })
        .await
        .expect("scan ordered")
        .into_inner()
        .delivered;
    assert!(delivered);
}

async fn wait_cause(mgr: &giva_manager::Manager, vm_id: &str, needle: &str) {
    let seen = eventually(Duration::from_secs(10), || async {
        causes(mgr, vm_id).await.iter().any(|c| c.contains(needle))
    })
    .await;
    assert!(
        seen,
        "no transition says {needle:?}: {:?}",
        causes(mgr, vm_id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_ordered_scan_over_the_policys_roots_releases_and_an_order_serves_once() {
    let (manager, mgr) = start_manager().await;
    let mut config = config_with_manager(&manager.url());
    config.policy.full_scan_roots = vec!["/srv".into()];
    // Records of scans the guest starts ride the heartbeat: a short one.
    config.manager.heartbeat_interval_secs = 1;
    let (appliance, _app) = start_appliance(config).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let mut s = RawSession::open(&mut client, "vm-h").await;
    let eicar = "/srv/eicar.com";
    assert_eq!(
        send_file(&mut s, 1, eicar, EICAR, 0).await,
        VerdictKind::Deny as i32
    );
    let infected = || async {
        mgr.store()
            .vm("vm-h")
            .await
            .ok()
            .flatten()
            .is_some_and(|v| VmState::of(&v) == VmState::Infected)
    };
    assert!(eventually(Duration::from_secs(10), infected).await);

    // A scan the guest starts by itself, however clean, releases nothing.
    let srv = vec!["/srv".to_string()];
    run_scan(
        &mut s,
        10,
        "",
        &srv,
        &[("/srv/ok.txt", b"fine text\n")],
        &[eicar.into()],
    )
    .await;
    wait_cause(&mgr, "vm-h", "started by the guest").await;

    // Nor does a token the appliance never issued.
    run_scan(&mut s, 11, "feedface", &srv, &[], &[eicar.into()]).await;
    wait_cause(&mgr, "vm-h", "started by the guest").await;

    // An ordered scan that walks somewhere else releases nothing.
    order(&manager.url(), &mgr, "vm-h").await;
    let cmd = next_command(&mut s).await;
    assert_eq!(cmd.roots, srv, "the policy's roots");
    assert_eq!(cmd.recheck_paths, [eicar], "the detected path, to re-read");
    run_scan(
        &mut s,
        12,
        &cmd.scan_token,
        &["/tmp/empty".into()],
        &[],
        &[eicar.into()],
    )
    .await;
    wait_cause(&mgr, "vm-h", "policy's roots").await;

    // One that skips the detected path (neither clean nor gone) neither.
    order(&manager.url(), &mgr, "vm-h").await;
    let cmd = next_command(&mut s).await;
    run_scan(&mut s, 13, &cmd.scan_token, &srv, &[], &[]).await;
    wait_cause(&mgr, "vm-h", "neither found clean nor gone").await;
    // A token serves once.
    run_scan(&mut s, 14, &cmd.scan_token, &srv, &[], &[eicar.into()]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            causes(&mgr, "vm-h")
                .await
                .iter()
                .filter(|c| c.contains("started by the guest"))
                .count()
                >= 3
        })
        .await
    );
    let quarantined = mgr.store().vm("vm-h").await.expect("store").expect("known");
    assert!(
        quarantined.tagged && VmState::of(&quarantined) != VmState::Clean,
        "still quarantined: {quarantined:?}"
    );

    // The order's scan over the roots, with the detected path gone,
    // releases. (The shim walks the file system, so a shim that lies
    // about it can still pass; docs/security.md says so.)
    order(&manager.url(), &mgr, "vm-h").await;
    let cmd = next_command(&mut s).await;
    run_scan(
        &mut s,
        15,
        &cmd.scan_token,
        &srv,
        &[("/srv/ok.txt", b"fine text\n")],
        &[eicar.into()],
    )
    .await;
    wait_cause(&mgr, "vm-h", "clean full scan ordered by the manager").await;

    // Re-infected, then a forged record reusing that order: refused.
    assert_eq!(
        send_file(&mut s, 2, "/srv/again.com", EICAR, 0).await,
        VerdictKind::Deny as i32
    );
    assert!(eventually(Duration::from_secs(10), infected).await);
    let used = mgr
        .store()
        .events(&giva_manager::store::EventFilter {
            vm_id: Some("vm-h".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.event)
        .find(|e| e.detail.contains("found the VM clean"))
        .expect("the releasing record");
    let mut forged = used.clone();
    forged.event_id = "forged-1".into();
    if let Some(r) = forged.scan.as_mut() {
        r.started_at_us = giva_proto::now_us();
        r.rechecked = vec![eicar.into(), "/srv/again.com".into()];
    }
    ManagerServiceClient::connect(manager.url())
        .await
        .expect("connect")
        .notify(giva_proto::manager::NotifyRequest {
            appliance_id: used.appliance_id.clone(),
            events: vec![forged],
        })
        .await
        .expect("notify");
    wait_cause(&mgr, "vm-h", "used already").await;
    assert!(infected().await, "still quarantined");
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_stalls_a_shared_scan_cannot_make_another_wait() {
    use giva_proto::shim::{
        ContentChunk, EventKind as ShimKind, FileEvent, FileIdentity, appliance_message,
        guest_message,
    };
    // The attacker is the template of the victim's image (a compromised
    // parent): its scans are the ones clones wait for.
    let mut config = crate::common::test_config();
    for (vm, template) in [("vm-attacker", true), ("vm-victim", false)] {
        config
            .inventory
            .push(giva_appliance::config::InventoryEntry {
                vm: vm.into(),
                image: "gold".into(),
                template,
                ..Default::default()
            });
    }
    let (appliance, app) = start_appliance(config).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let mut attacker = RawSession::open(&mut client, "vm-attacker").await;
    let mut victim = RawSession::open(&mut client, "vm-victim").await;
    // Both claim the same file of the same image: the second waits for
    // the first one's scan.
    let event = |seq| {
        guest_message::Msg::Event(FileEvent {
            seq,
            kind: ShimKind::Open as i32,
            path: "/usr/bin/shared-tool".into(),
            identity: Some(FileIdentity {
                size: EICAR.len() as u64,
                mtime_ns: 42,
                file_id: 42,
                image_id: "gold".into(),
                ..Default::default()
            }),
            blocking: true,
            full_scan_id: 0,
        })
    };
    attacker.send(event(1)).await;
    assert!(matches!(
        attacker.next().await,
        appliance_message::Msg::ContentRequest(_)
    ));
    // The attacker never sends the content.
    let asked = std::time::Instant::now();
    victim.send(event(1)).await;
    let verdict = loop {
        match victim.next_within(Duration::from_secs(5)).await {
            appliance_message::Msg::ContentRequest(r) => {
                victim
                    .send(guest_message::Msg::Chunk(ContentChunk {
                        seq: r.seq,
                        offset: 0,
                        data: EICAR.to_vec(),
                        last: true,
                    }))
                    .await;
            }
            appliance_message::Msg::Verdict(v) => break v,
            _ => {}
        }
    };
    let took = asked.elapsed();
    assert_eq!(verdict.kind, VerdictKind::Deny as i32, "{verdict:?}");
    assert!(
        took < Duration::from_secs(3),
        "the victim's verdict came {took:?} after its event"
    );
    app.stats.observe(&app.cache.stats(), &app.pool.stats());
    assert!(
        app.stats
            .render()
            .contains("giva_shared_scan_fallbacks_total{why=\"stalled\"} 1")
    );
    drop(attacker);
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_empted_event_id_cannot_erase_a_detection() {
    use giva_proto::manager::{Action, Event, EventKind, NotifyRequest};
    let (manager, mgr) = start_manager().await;
    let mut c = ManagerServiceClient::connect(manager.url())
        .await
        .expect("connect");
    let id = "app-1-18c2f-7";
    // The forger stores the appliance's next id first, as a harmless event.
    let harmless = Event {
        event_id: id.into(),
        kind: EventKind::VmRegistered as i32,
        appliance_id: "app-1".into(),
        vm_id: "vm-e".into(),
        detected_at_us: giva_proto::now_us(),
        ..Event::default()
    };
    let notify = |ev: Event| NotifyRequest {
        appliance_id: "app-1".into(),
        events: vec![ev],
    };
    c.notify(notify(harmless)).await.expect("notify");
    // The real detection comes with that id: acknowledged, and applied.
    let detection = Event {
        event_id: id.into(),
        kind: EventKind::Detection as i32,
        appliance_id: "app-1".into(),
        vm_id: "vm-e".into(),
        path: "/tmp/eicar.com".into(),
        signatures: vec!["Eicar-Test-Signature".into()],
        action: Action::Denied as i32,
        detected_at_us: giva_proto::now_us(),
        ..Event::default()
    };
    for _ in 0..2 {
        // Sent twice, as after a lost acknowledgement: stored once.
        let acked = c
            .notify(notify(detection.clone()))
            .await
            .expect("notify")
            .into_inner()
            .acked_event_ids;
        assert_eq!(acked, [id]);
    }
    let v = mgr.store().vm("vm-e").await.expect("store").expect("known");
    assert_eq!(VmState::of(&v), VmState::Infected, "{v:?}");
    assert_eq!(v.detections, 1);
    assert_eq!(detections(&mgr).await.len(), 1);
    assert!(
        mgr.render_metrics()
            .contains("giva_manager_event_id_collisions_total 1"),
        "{}",
        mgr.render_metrics()
    );
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_known_by_its_vsock_cid_cannot_be_claimed_over_tcp() {
    let mut config = crate::common::test_config();
    config
        .inventory
        .push(giva_appliance::config::InventoryEntry {
            vm: "vm-vsock".into(),
            cid: Some(42),
            ..Default::default()
        });
    let (appliance, _app) = start_appliance(config).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let e = client
        .register(giva_proto::shim::RegisterRequest {
            vm: Some(giva_proto::shim::VmIdentity {
                vm_id: "vm-vsock".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("vsock CID 42"), "{e:?}");
    appliance.stop().await;
}
