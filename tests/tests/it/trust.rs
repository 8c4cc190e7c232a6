//! The trust model (docs/security.md): what a guest, another guest or
//! anyone on the network may not do, each shown refused with real
//! services on loopback.

use std::time::Duration;

use giva_manager::quarantine::VmState;
use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{ScanRequest, VerdictKind};

use crate::common::{
    EICAR, config_with_manager, detections, eventually, shim_scan, start_appliance, start_manager,
};

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
