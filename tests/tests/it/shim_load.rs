//! `giva-shim load` against an in-process appliance: an instant-clone storm
//! of VMs of one image, every verdict counted. Timings are printed, never
//! asserted.

use std::time::Duration;

use giva_appliance::config::Config;
use giva_shim::load::{LoadConfig, run};

use crate::common::{EICAR, start_appliance, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_of_50_clones_counts_every_verdict() {
    let image = tempfile::tempdir().expect("tempdir");
    write(image.path(), "eicar.com", EICAR);
    std::fs::create_dir(image.path().join("bin")).expect("mkdir");
    for i in 0..19 {
        let body: Vec<u8> = (0..(1000 + i * 3000)).map(|b| (b * 31 + i) as u8).collect();
        write(&image.path().join("bin"), &format!("tool{i:02}"), &body);
    }
    let mut aconfig = Config::default();
    for (vm, template) in [("load-vm-0000", true), ("load-vm-*", false)] {
        aconfig
            .inventory
            .push(giva_appliance::config::InventoryEntry {
                vm: vm.into(),
                image: "load-image".into(),
                template,
                ..Default::default()
            });
    }
    let (appliance, app) = start_appliance(aconfig).await;
    let mut config = LoadConfig::new(appliance.url(), 50, image.path());
    config.template = true;
    config.concurrency = 16;
    config.connections = 2;
    config.duration = Duration::from_secs(60);
    let report = tokio::time::timeout(Duration::from_secs(120), run(&config))
        .await
        .expect("load finishes by itself")
        .expect("load runs");
    println!("{}", report.text());
    let stats = app.stats.snapshot();
    println!(
        "appliance: {} bytes scanned for a {}-byte image ({:.2}x); cache hits {}",
        stats.bytes_scanned,
        report.image_bytes,
        stats.bytes_scanned as f64 / report.image_bytes as f64,
        report.cache_hits
    );
    assert_eq!(report.registered, 50, "{report:?}");
    assert_eq!(report.image_files, 20);
    assert_eq!(report.events, 50 * 20);
    assert_eq!(report.verdicts, 50 * 20, "{report:?}");
    assert_eq!(report.deny, 50, "every clone's EICAR is denied");
    assert_eq!(report.detections, 50);
    assert_eq!(
        report.errors + report.register_errors + report.abandoned,
        0,
        "{report:?}"
    );
    assert_eq!(report.verdict_latency.count, 50 * 20);
    assert!(!report.hit_duration_limit);
    // Everything not served from a cache was streamed.
    assert!(report.content_bytes > 0);
    let json = report.json();
    assert!(json.contains("\"verdict_latency\""));
    // The clones share verdicts: one image's bytes are scanned about once.
    assert!(
        stats.bytes_scanned as f64 <= 1.1 * report.image_bytes as f64,
        "bytes scanned {} > 1.1 x image {}",
        stats.bytes_scanned,
        report.image_bytes
    );
    appliance.stop().await;
}

/// Open loop: 20 clones × 10 files at 400 events/s take at least half a
/// second (the schedule), every event is answered, and the rate is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_load_keeps_to_its_rate() {
    let image = tempfile::tempdir().expect("tempdir");
    for i in 0..10u8 {
        write(image.path(), &format!("f{i}"), &[i; 512]);
    }
    let mut aconfig = Config::default();
    aconfig
        .inventory
        .push(giva_appliance::config::InventoryEntry {
            vm: "load-vm-*".into(),
            image: "load-image".into(),
            ..Default::default()
        });
    let (appliance, _app) = start_appliance(aconfig).await;
    let mut config = LoadConfig::new(appliance.url(), 20, image.path());
    config.rate = Some(400.0);
    config.duration = Duration::from_secs(60);
    let report = tokio::time::timeout(Duration::from_secs(120), run(&config))
        .await
        .expect("load finishes by itself")
        .expect("load runs");
    println!("{}", report.text());
    assert_eq!(report.verdicts, 200, "{report:?}");
    assert_eq!(report.errors + report.abandoned, 0, "{report:?}");
    assert_eq!(report.offered_rate, 400.0);
    // 10 events a VM, one every 50 ms: the last is due 450 ms in.
    assert!(report.open_secs >= 0.45, "{report:?}");
    assert!(report.text().contains("offered: 400 events/s"));
    appliance.stop().await;
}
