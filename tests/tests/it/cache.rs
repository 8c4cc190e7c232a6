//! The verdict cache: clones of one image share their template's verdicts
//! without sending content, sharing follows the policy and the operator's
//! inventory (never a guest's word), a new database makes old verdicts
//! stale, and an instant-clone storm scans one image's bytes once.

use std::time::Duration;

use giva_proto::shim::VmIdentity;
use giva_shim::load::{LoadConfig, run};
use giva_shim::scan::{FileResult, ScanConfig};

use giva_appliance::config::{Config, InventoryEntry};

use crate::common::{EICAR, start_appliance, test_config, write};

/// The test configuration with an inventory: `template` is the template of
/// `image`, and every VM named `prefix*` belongs to `image`.
fn with_image(mut config: Config, template: &str, prefix: &str, image: &str) -> Config {
    config.inventory.push(InventoryEntry {
        vm: template.into(),
        image: image.into(),
        template: true,
        ..InventoryEntry::default()
    });
    config.inventory.push(InventoryEntry {
        vm: format!("{prefix}*"),
        image: image.into(),
        ..InventoryEntry::default()
    });
    config
}

fn clone_vm(id: &str, image: &str) -> VmIdentity {
    VmIdentity {
        vm_id: id.into(),
        name: id.into(),
        image_id: image.into(),
        ..Default::default()
    }
}

async fn scan_as(url: &str, vm: VmIdentity, dir: &std::path::Path) -> Vec<FileResult> {
    let mut out = Vec::new();
    let config = ScanConfig::new(url, vm, vec![dir.to_path_buf()]);
    giva_shim::scan::run(&config, |r| out.push(r.clone()), |_, _| {})
        .await
        .expect("scan");
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn image_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "eicar.com", EICAR);
    for i in 0..5 {
        let body: Vec<u8> = (0..20_000u32)
            .map(|b| (b.wrapping_mul(7) + i) as u8)
            .collect();
        write(dir.path(), &format!("lib{i}.so"), &body);
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_verdicts_without_content_and_policy_can_turn_it_off() {
    let image = image_dir();
    let mut config = with_image(test_config(), "clone-1", "clone-", "img-A");
    config.inventory.push(InventoryEntry {
        vm: "other-*".into(),
        image: "img-B".into(),
        ..InventoryEntry::default()
    });
    let (appliance, app) = start_appliance(config).await;
    let first = scan_as(&appliance.url(), clone_vm("clone-1", "img-A"), image.path()).await;
    assert!(first.iter().all(|r| !r.from_cache), "{first:?}");
    let scanned = app.stats.snapshot().bytes_scanned;
    assert!(scanned > 100_000);

    let second = scan_as(&appliance.url(), clone_vm("clone-2", "img-A"), image.path()).await;
    assert!(
        second.iter().all(|r| r.from_cache),
        "every verdict from the cache: {second:?}"
    );
    let eicar = second
        .iter()
        .find(|r| r.path.ends_with("eicar.com"))
        .expect("eicar");
    assert_eq!(
        eicar.status, "found",
        "a cached detection is still a detection"
    );
    assert_eq!(eicar.signatures, vec!["Eicar-Test-Signature".to_string()]);
    assert_eq!(
        app.stats.snapshot().bytes_scanned,
        scanned,
        "no content moved"
    );

    // Another image does not share the first image's verdicts, and saying
    // otherwise at registration changes nothing.
    let other = scan_as(&appliance.url(), clone_vm("other-1", "img-A"), image.path()).await;
    assert!(other.iter().all(|r| !r.from_cache), "{other:?}");
    appliance.stop().await;

    // With sharing off, each VM keeps its own verdicts.
    let mut config = with_image(test_config(), "solo-1", "solo-", "img-A");
    config.policy.share_cache = false;
    let (appliance, _app) = start_appliance(config).await;
    scan_as(&appliance.url(), clone_vm("solo-1", "img-A"), image.path()).await;
    let solo = scan_as(&appliance.url(), clone_vm("solo-2", "img-A"), image.path()).await;
    assert!(
        solo.iter().all(|r| !r.from_cache),
        "not shared across VMs: {solo:?}"
    );
    let again = scan_as(&appliance.url(), clone_vm("solo-2", "img-A"), image.path()).await;
    assert!(
        again.iter().all(|r| r.from_cache),
        "but kept for the same VM"
    );
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_makes_cached_verdicts_stale() {
    let image = image_dir();
    let sigs = tempfile::tempdir().expect("tempdir");
    let db = sigs.path().join("s.ndb");
    std::fs::write(&db, "Test.Alpha:0:*:414c5048412d4d41524b4552\n").expect("write");
    let mut config = with_image(test_config(), "v1", "v", "img");
    config.database.paths = vec![db.clone()];
    config.database.watch_interval_secs = 0;
    let (appliance, app) = start_appliance(config).await;
    let first = scan_as(&appliance.url(), clone_vm("v1", "img"), image.path()).await;
    assert!(
        first.iter().all(|r| r.status == "ok"),
        "EICAR is not in this database: {first:?}"
    );
    let cached = scan_as(&appliance.url(), clone_vm("v2", "img"), image.path()).await;
    assert!(cached.iter().all(|r| r.from_cache));

    // The new database knows EICAR; the clean verdicts of the old one must
    // not hide it.
    let new_db = format!(
        "Test.Alpha:0:*:414c5048412d4d41524b4552\nEicar.Body:0:*:{}\n",
        "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e44415244"
    );
    std::fs::write(&db, new_db).expect("write");
    app.reload("test").await.expect("reload");
    let after = scan_as(&appliance.url(), clone_vm("v3", "img"), image.path()).await;
    let eicar = after
        .iter()
        .find(|r| r.path.ends_with("eicar.com"))
        .expect("eicar");
    assert!(!eicar.from_cache);
    assert_eq!(eicar.status, "found", "{after:?}");
    assert_eq!(eicar.signatures, vec!["Eicar.Body.UNOFFICIAL".to_string()]);
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_clone_storm_of_500_vms_scans_one_image_once() {
    let image = image_dir();
    let image_bytes: u64 = std::fs::read_dir(image.path())
        .expect("read")
        .map(|e| e.expect("entry").metadata().expect("md").len())
        .sum();
    let (appliance, app) =
        start_appliance(with_image(test_config(), "load-vm-0000", "load-vm-", "img")).await;
    let mut config = LoadConfig::new(appliance.url(), 500, image.path());
    config.template = true;
    config.concurrency = 64;
    config.connections = 4;
    config.duration = Duration::from_secs(120);
    let report = tokio::time::timeout(Duration::from_secs(180), run(&config))
        .await
        .expect("the storm finishes by itself")
        .expect("load runs");
    println!("{}", report.text());
    assert_eq!(report.registered, 500, "{report:?}");
    assert_eq!(report.verdicts, 500 * 6, "{report:?}");
    assert_eq!(report.deny, 500, "every clone's EICAR is denied");
    assert_eq!(
        report.errors + report.register_errors + report.abandoned,
        0,
        "{report:?}"
    );
    let scanned = app.stats.snapshot().bytes_scanned;
    println!(
        "bytes scanned {scanned} for a {image_bytes}-byte image: {:.3}x",
        scanned as f64 / image_bytes as f64
    );
    assert!(
        scanned as f64 <= 1.1 * image_bytes as f64,
        "bytes scanned {scanned} > 1.1 x image {image_bytes}"
    );
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_cannot_poison_the_verdicts_other_clones_read() {
    use giva_proto::shim::{
        ContentChunk, EventKind, FileEvent, FileIdentity, VerdictKind, appliance_message,
        guest_message,
    };
    let (appliance, _app) =
        start_appliance(with_image(test_config(), "gold", "clone-", "img")).await;
    let mut client =
        giva_proto::shim::shim_service_client::ShimServiceClient::connect(appliance.url())
            .await
            .expect("connect");
    let event = |seq, image: &str| {
        guest_message::Msg::Event(FileEvent {
            seq,
            kind: EventKind::Open as i32,
            path: "/usr/bin/tool".into(),
            identity: Some(FileIdentity {
                size: EICAR.len() as u64,
                mtime_ns: 7,
                file_id: 7,
                image_id: image.into(),
                ..Default::default()
            }),
            blocking: true,
            full_scan_id: 0,
        })
    };
    // The attacker, a clone, sends harmless bytes under the identity the
    // victim's file has, and even claims to be of another image.
    async fn answer(s: &mut crate::common::RawSession, data: &[u8]) -> giva_proto::shim::Verdict {
        loop {
            match s.next().await {
                appliance_message::Msg::ContentRequest(r) => {
                    s.send(guest_message::Msg::Chunk(ContentChunk {
                        seq: r.seq,
                        offset: 0,
                        data: data.to_vec(),
                        last: true,
                    }))
                    .await;
                }
                appliance_message::Msg::Verdict(v) => return v,
                _ => {}
            }
        }
    }
    let harmless = b"X5O-harmless-bytes-of-the-same-length-as-the-eicar-test-file-0000000";
    assert_eq!(harmless.len(), EICAR.len());
    let mut attacker = crate::common::RawSession::open(&mut client, "clone-evil").await;
    attacker.send(event(1, "img")).await;
    let v = answer(&mut attacker, harmless).await;
    assert_eq!(v.kind, VerdictKind::Allow as i32);
    // The victim's file of that identity is EICAR: it is scanned, not
    // answered from the attacker's verdict.
    let mut victim = crate::common::RawSession::open(&mut client, "clone-victim").await;
    victim.send(event(1, "img")).await;
    let v = answer(&mut victim, EICAR).await;
    assert_eq!(v.kind, VerdictKind::Deny as i32, "{v:?}");
    assert!(!v.from_cache);
    appliance.stop().await;
}
