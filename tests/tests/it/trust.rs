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
    EICAR, config_with_manager, detections, eventually, operator_client, shim_scan,
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
    let victim = mgr
        .store()
        .vm("victim")
        .await
        .expect("store")
        .expect("the victim is known");
    assert_eq!(VmState::of(&victim), VmState::Clean, "{victim:?}");
    assert!(!victim.tagged);
    appliance.stop().await;
    manager.stop().await;
}
