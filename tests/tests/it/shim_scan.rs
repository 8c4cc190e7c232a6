//! `giva-shim scan`, the full-scan walker: a nested tree walked in
//! parallel, symlinks not followed, every file reported once.

use giva_appliance::config::Config;
use giva_shim::scan::ScanConfig;

use crate::common::{EICAR, start_appliance, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_tree_is_walked_in_parallel_and_every_file_reported_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "not-followed.com", EICAR);
    let mut expected = Vec::new();
    for d in 0..6 {
        let sub = root.path().join(format!("d{d}")).join("inner");
        std::fs::create_dir_all(&sub).expect("mkdir");
        for f in 0..5 {
            expected.push(write(
                &sub,
                &format!("f{f}.txt"),
                format!("file {d}/{f}\n").as_bytes(),
            ));
        }
    }
    expected.push(write(root.path(), "top-eicar.com", EICAR));
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).expect("symlink");
    let (appliance, _app) = start_appliance(Config::default()).await;
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-scan-tree".into(),
        ..Default::default()
    };
    let mut config = ScanConfig::new(appliance.url(), vm, vec![root.path().to_path_buf()]);
    config.walkers = 3;
    config.concurrency = 4;
    let mut seen = Vec::new();
    let mut last_progress = (0, 0);
    let summary = giva_shim::scan::run(
        &config,
        |r| seen.push(r.clone()),
        |d, t| last_progress = (d, t),
    )
    .await
    .expect("scan");
    assert_eq!(summary.scanned, 31, "{summary:?}");
    assert_eq!(summary.infected, 1);
    assert_eq!(summary.failed, 0);
    assert_eq!(last_progress, (31, 31));
    let mut paths: Vec<_> = seen.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    expected.sort();
    assert_eq!(
        paths, expected,
        "each file once, nothing behind the symlink"
    );
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_full_scan_reaches_the_manager_as_completed() {
    let (manager, mgr) = crate::common::start_manager().await;
    // The record of a scan the guest started proves nothing: it rides the
    // heartbeat, made short here.
    let mut config = crate::common::config_with_manager(&manager.url());
    config.manager.heartbeat_interval_secs = 1;
    let (appliance, _app) = start_appliance(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "readme.txt", b"nothing to see here\n");
    let summary = crate::common::shim_scan(&appliance.url(), "vm-scan-done", dir.path()).await;
    assert_eq!(
        (summary.scanned, summary.infected, summary.failed),
        (1, 0, 0)
    );
    let filter = giva_manager::store::EventFilter {
        limit: 1000,
        ..Default::default()
    };
    let mut done = Vec::new();
    for _ in 0..250 {
        done = mgr
            .store()
            .events(&filter)
            .await
            .expect("store")
            .into_iter()
            .filter_map(|e| e.event)
            .filter(|e| e.kind == giva_proto::manager::EventKind::ScanCompleted as i32)
            .collect();
        if !done.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let scan = done
        .first()
        .and_then(|e| e.scan.clone())
        .expect("ScanCompleted reaches the manager");
    assert_eq!(
        (scan.files_scanned, scan.files_infected, scan.files_failed),
        (1, 0, 0)
    );
    assert!(scan.completed);
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_files_are_not_failures() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    write(&cache, "blob.bin", b"whatever is cached\n");
    write(root.path(), "notes.txt", b"plain notes\n");
    let mut config = crate::common::test_config();
    config.policy.exclude_prefixes = vec![format!("{}/", cache.display())];
    let (appliance, _app) = start_appliance(config).await;
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-excluded".into(),
        ..Default::default()
    };
    let config = ScanConfig::new(appliance.url(), vm, vec![root.path().to_path_buf()]);
    let mut lines = Vec::new();
    let summary = giva_shim::scan::run(&config, |r| lines.push(r.line()), |_, _| {})
        .await
        .expect("scan");
    assert_eq!(
        (
            summary.scanned,
            summary.excluded,
            summary.failed,
            summary.skipped
        ),
        (1, 1, 0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.exit_code(), 0, "an exclusion is not a failure");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("blob.bin: NOT SCANNED (excluded by policy)")),
        "{lines:?}"
    );
    appliance.stop().await;
}

/// The member paths of the detections the manager holds, sorted, once
/// there are `n` of them (or what there is after 5 s).
async fn members_once(mgr: &giva_manager::Manager, n: usize) -> Vec<String> {
    events_once(mgr, n, |e| vec![e.member]).await
}

/// The signature names of the detections the manager holds, sorted, once
/// there are `n` detections (or what there is after 5 s).
async fn signatures_once(mgr: &giva_manager::Manager, n: usize) -> Vec<String> {
    events_once(mgr, n, |e| e.signatures).await
}

/// What `pick` takes of each detection event the manager holds, sorted,
/// once there are `n` events (or after 5 s).
async fn events_once(
    mgr: &giva_manager::Manager,
    n: usize,
    pick: impl Fn(giva_proto::manager::Event) -> Vec<String> + Copy,
) -> Vec<String> {
    let events = || async {
        crate::common::detections(mgr)
            .await
            .into_iter()
            .filter_map(|e| e.event)
            .collect::<Vec<_>>()
    };
    crate::common::eventually(std::time::Duration::from_secs(5), || async {
        events().await.len() >= n
    })
    .await;
    let mut out: Vec<String> = events().await.into_iter().flat_map(pick).collect();
    out.sort();
    out
}

/// A manager, and an appliance reporting to it with the signatures in
/// `db`.
async fn with_database(
    db: &std::path::Path,
) -> (
    crate::common::Running,
    std::sync::Arc<giva_manager::Manager>,
    crate::common::Running,
) {
    let (manager, mgr) = crate::common::start_manager().await;
    let mut config = crate::common::config_with_manager(&manager.url());
    config.database.paths = vec![db.to_path_buf()];
    let (appliance, _app) = start_appliance(config).await;
    (manager, mgr, appliance)
}

/// Scans `dir` through the shim as VM `vm_id`.
async fn scan_as(appliance: &str, vm_id: &str, dir: &std::path::Path) -> giva_shim::scan::Summary {
    let vm = giva_proto::shim::VmIdentity {
        vm_id: vm_id.into(),
        ..Default::default()
    };
    let config = ScanConfig::new(appliance.to_string(), vm, vec![dir.to_path_buf()]);
    giva_shim::scan::run(&config, |_| {}, |_, _| {})
        .await
        .expect("scan")
}

/// A zip whose one stored entry, `secret.bin`, is marked encrypted.
fn encrypted_zip() -> Vec<u8> {
    use std::io::Write;
    let mut e = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    e.start_file("secret.bin", zip::write::SimpleFileOptions::default())
        .expect("zip");
    e.write_all(&[7u8; 64]).expect("zip");
    let mut enc = e.finish().expect("zip").into_inner();
    enc[6] |= 1;
    let cd = enc
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory");
    enc[cd + 8] |= 1;
    enc
}

/// A zipped and a gzipped EICAR through the shim are denied, and the
/// manager's detection event names the member; an encrypted member is not
/// scanned, and says so, never clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_opened_on_the_appliance_and_the_member_named() {
    use std::io::Write;
    let (manager, mgr) = crate::common::start_manager().await;
    let config = crate::common::config_with_manager(&manager.url());
    let (appliance, app) = start_appliance(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("docs/readme.txt", deflated).expect("zip");
    z.write_all(b"nothing to see here").expect("zip");
    z.start_file("bin/eicar.com", deflated).expect("zip");
    z.write_all(EICAR).expect("zip");
    write(
        dir.path(),
        "bundle.zip",
        &z.finish().expect("zip").into_inner(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(EICAR).expect("gzip");
    write(dir.path(), "eicar.com.gz", &gz.finish().expect("gzip"));
    write(dir.path(), "locked.zip", &encrypted_zip());

    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-archives".into(),
        ..Default::default()
    };
    let first = ScanConfig::new(appliance.url(), vm, vec![dir.path().to_path_buf()]);
    let mut seen = Vec::new();
    let summary = giva_shim::scan::run(&first, |r| seen.push(r.clone()), |_, _| {})
        .await
        .expect("scan");
    assert_eq!(summary.infected, 2, "{seen:?}");
    let locked = seen
        .iter()
        .find(|r| r.path.ends_with("locked.zip"))
        .expect("locked.zip reported");
    assert!(
        format!("{locked:?}").contains("encrypted"),
        "not clean, and why: {locked:?}"
    );
    let named = members_once(&mgr, 2).await;
    assert_eq!(
        named,
        ["bundle.zip!bin/eicar.com", "eicar.com.gz!eicar.com"]
    );
    app.stats.observe(&app.cache.stats(), &app.pool.stats());
    let metrics = app.stats.render();
    assert!(
        metrics.contains("giva_content_not_scanned_total{why=\"encrypted\"} 1"),
        "{metrics}"
    );

    // The same payload in a new wrapper: its verdict comes from the cache
    // by the member's digest, and the event still names the member.
    let cached_before = app.stats.content_members_cached.get();
    let later = tempfile::tempdir().expect("tempdir");
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("x/eicar.txt", zip::write::SimpleFileOptions::default())
        .expect("zip");
    z.write_all(EICAR).expect("zip");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&z.finish().expect("zip").into_inner())
        .expect("gzip");
    write(later.path(), "again.zip.gz", &gz.finish().expect("gzip"));
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-archives".into(),
        ..Default::default()
    };
    let config = ScanConfig::new(appliance.url(), vm, vec![later.path().to_path_buf()]);
    let summary = giva_shim::scan::run(&config, |_| {}, |_, _| {})
        .await
        .expect("scan");
    assert_eq!(summary.infected, 1);
    let named = members_once(&mgr, 3).await;
    assert_eq!(named.len(), 3, "{named:?}");
    assert!(
        named.contains(&"again.zip.gz!again.zip!x/eicar.txt".to_string()),
        "{named:?}"
    );
    assert_eq!(app.stats.content_members_cached.get(), cached_before + 1);

    // The first files again: answered from the cache, and still named.
    let hits = app.stats.cache_hits.get();
    let summary = giva_shim::scan::run(&first, |_| {}, |_, _| {})
        .await
        .expect("scan");
    assert_eq!(summary.infected, 2);
    assert!(app.stats.cache_hits.get() >= hits + 2);
    let named = members_once(&mgr, 5).await;
    assert_eq!(named.len(), 5, "{named:?}");
    assert_eq!(
        named
            .iter()
            .filter(|m| *m == "bundle.zip!bin/eicar.com")
            .count(),
        2,
        "{named:?}"
    );
    appliance.stop().await;
    manager.stop().await;
}

/// A typed signature (target 1, PE) applies to a file that starts with
/// `MZ`, alone or as a member, and not to the same bytes in another file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_signatures_apply_to_files_of_their_type() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = b"GIVA-TYPED-SHIM-MARK-0123456789";
    let hex: String = mark.iter().map(|b| format!("{b:02x}")).collect();
    let db = dir.path().join("typed.ndb");
    std::fs::write(&db, format!("Typed.Pe:1:*:{hex}\n")).expect("ndb");
    let mut config = Config::default();
    config.database.paths = vec![db];
    let (appliance, _app) = start_appliance(config).await;
    let files = tempfile::tempdir().expect("tempdir");
    let body = |head: &[u8]| {
        let mut v = head.to_vec();
        v.extend(std::iter::repeat_n(b'.', 40_000));
        v.extend_from_slice(mark);
        v.extend(std::iter::repeat_n(b'.', 300_000));
        v
    };
    write(files.path(), "tool.exe", &body(b"MZ"));
    write(files.path(), "notes.txt", &body(b"just text"));
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("setup/tool.exe", deflated).expect("zip");
    z.write_all(&body(b"MZ")).expect("zip");
    z.start_file("readme.txt", deflated).expect("zip");
    z.write_all(&body(b"text")).expect("zip");
    write(
        files.path(),
        "bundle.zip",
        &z.finish().expect("zip").into_inner(),
    );
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-typed".into(),
        ..Default::default()
    };
    let config = ScanConfig::new(appliance.url(), vm, vec![files.path().to_path_buf()]);
    let mut seen = Vec::new();
    let summary = giva_shim::scan::run(&config, |r| seen.push(r.clone()), |_, _| {})
        .await
        .expect("scan");
    let infected = |name: &str| {
        seen.iter()
            .find(|r| r.path.ends_with(name))
            .map(|r| format!("{r:?}").contains("Typed.Pe"))
    };
    assert_eq!(infected("tool.exe"), Some(true), "{seen:?}");
    assert_eq!(infected("bundle.zip"), Some(true), "{seen:?}");
    assert_eq!(infected("notes.txt"), Some(false), "{seen:?}");
    assert_eq!(summary.infected, 2);
    appliance.stop().await;
}

/// With the policy's alerts on, a file not scanned whole (a limit, an
/// encrypted member) is a detection named as ClamAV names it, denied and
/// reported with the member; without them, NOT_SCANNED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_can_alert_on_limits_and_encryption() {
    use std::io::Write;
    let (manager, mgr) = crate::common::start_manager().await;
    let mut config = crate::common::config_with_manager(&manager.url());
    config.limits.max_member_size = 1000;
    config.policy.alert_exceeds_max = true;
    config.policy.alert_encrypted = true;
    let (appliance, _app) = start_appliance(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "locked.zip", &encrypted_zip());
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("big.bin", zip::write::SimpleFileOptions::default())
        .expect("zip");
    z.write_all(&[b'a'; 5000]).expect("zip");
    write(
        dir.path(),
        "big.zip",
        &z.finish().expect("zip").into_inner(),
    );
    write(dir.path(), "fine.txt", b"nothing wrong here at all");
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-alerts".into(),
        ..Default::default()
    };
    let config = ScanConfig::new(appliance.url(), vm, vec![dir.path().to_path_buf()]);
    let mut seen = Vec::new();
    let summary = giva_shim::scan::run(&config, |r| seen.push(r.clone()), |_, _| {})
        .await
        .expect("scan");
    assert_eq!(summary.infected, 2, "{seen:?}");
    let said = |name: &str| {
        seen.iter()
            .find(|r| r.path.ends_with(name))
            .map(|r| format!("{r:?}"))
            .unwrap_or_default()
    };
    assert!(
        said("locked.zip").contains("Heuristics.Encrypted.Archive"),
        "{seen:?}"
    );
    assert!(
        said("big.zip").contains("Heuristics.Limits.Exceeded.MaxFileSize"),
        "{seen:?}"
    );
    assert_eq!(
        members_once(&mgr, 2).await,
        ["big.zip!big.bin", "locked.zip!secret.bin"]
    );
    appliance.stop().await;
    manager.stop().await;
}

/// Mail and documents through the appliance: an EICAR attached to a
/// message (base64) and one inside an RTF object are found, and the event
/// names the member.
/// An executable streamed to the appliance is kept whole, so that what
/// it carries is found: here a self-extractor's zip in its overlay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_executable_carries_is_opened_on_the_appliance() {
    use std::io::Write;
    let (manager, mgr) = crate::common::start_manager().await;
    let config = crate::common::config_with_manager(&manager.url());
    let (appliance, _app) = start_appliance(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // MZ, PE at 0x80, one section of 0x1000 bytes at 0x200, no optional
    // header: the image ends at 0x1200, and the overlay follows.
    let mut exe = vec![0u8; 0x1200];
    exe[..2].copy_from_slice(b"MZ");
    exe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    exe[0x80..0x84].copy_from_slice(b"PE\0\0");
    exe[0x86..0x88].copy_from_slice(&1u16.to_le_bytes());
    exe[0x98 + 16..0x98 + 20].copy_from_slice(&0x1000u32.to_le_bytes());
    exe[0x98 + 20..0x98 + 24].copy_from_slice(&0x200u32.to_le_bytes());
    for (i, b) in exe[0x200..].iter_mut().enumerate() {
        *b = (i * 31 % 253) as u8;
    }
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file(
        "payload.com",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .expect("zip");
    z.write_all(EICAR).expect("zip");
    exe.extend_from_slice(&z.finish().expect("zip").into_inner());
    write(dir.path(), "setup.exe", &exe);
    let summary = scan_as(&appliance.url(), "vm-exe", dir.path()).await;
    assert_eq!(summary.infected, 1);
    assert_eq!(members_once(&mgr, 1).await, ["setup.exe!@4608!payload.com"]);
    appliance.stop().await;
    manager.stop().await;
}

/// A streamed executable's structure is read on the appliance once the
/// file is whole: signatures at its entry point and in its sections, and
/// a logical signature keyed on the entry point, find this machine's own
/// `ls` sent through the shim, as `giva scan` finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executables_entry_point_and_sections_are_found_through_the_shim() {
    let Ok(ls) = std::fs::read("/bin/ls") else {
        eprintln!("SKIPPED: no /bin/ls");
        return;
    };
    let info = giva_content::exe_info(&ls, 6).expect("/bin/ls is an ELF giva reads");
    let hex = |at: u64| -> String {
        ls[at as usize..at as usize + 16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let (e, s1) = (info.entry, info.sections[1].raw);
    let db = tempfile::tempdir().expect("tempdir");
    write(
        db.path(),
        "exe.ndb",
        format!(
            "Exe.EntryPoint:6:EP+0:{}\nExe.Section:6:S1+0:{}\nExe.Elsewhere:6:EP+1:{}\n",
            hex(e),
            hex(s1),
            hex(e)
        )
        .as_bytes(),
    );
    write(
        db.path(),
        "exe.ldb",
        format!(
            "Exe.Logical;Engine:51-255,Target:6,EntryPoint:{e}-{e};0;EP-0:{}\n",
            hex(e)
        )
        .as_bytes(),
    );
    let (manager, mgr, appliance) = with_database(db.path()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ls", &ls);
    let summary = scan_as(&appliance.url(), "vm-elf", dir.path()).await;
    assert_eq!(summary.infected, 1);
    let found = signatures_once(&mgr, 1).await;
    // First match: the section's signature, which starts first in the
    // replay once the file is whole (.interp lies before the code).
    assert!(s1 < e);
    assert_eq!(found, ["Exe.Section.UNOFFICIAL"]);
    appliance.stop().await;
    manager.stop().await;
}

/// PCRE and byte-compare subsignatures run over the whole file once it is
/// scanned: the appliance keeps a streamed file whole when the database
/// has them, so they work through the shim as on a local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcre_and_byte_compare_subsignatures_work_on_streamed_files() {
    let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    let db = tempfile::tempdir().expect("tempdir");
    write(
        db.path(),
        "checks.ldb",
        format!(
            "Pcre.Sig;Engine:81-255,Target:0;0&1;{};0/secret-[0-9]{{4}}-payload/\n\
             Bcmp.Sig;Engine:81-255,Target:0;0&1;{};0(>>4#db4#>1000)\n",
            hex("GIVA-TRIGGER"),
            hex("LEN=")
        )
        .as_bytes(),
    );
    let (manager, mgr, appliance) = with_database(db.path()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Binary files of several chunks, neither containers nor executables:
    // the expression's match lies far from its trigger.
    // NULs and control bytes: binary, not text (which would be kept for
    // its normalized layer anyway).
    let binary = |n: usize| -> Vec<u8> { (0..n).map(|i| [0u8, 1, 0xA5, 7][i % 4]).collect() };
    let mut pcre = binary(300 << 10);
    pcre[10..22].copy_from_slice(b"GIVA-TRIGGER");
    pcre[200_000..200_019].copy_from_slice(b"secret-1234-payload");
    write(dir.path(), "pcre.bin", &pcre);
    let mut bcmp = binary(200 << 10);
    bcmp[150_000..150_008].copy_from_slice(b"LEN=4096");
    write(dir.path(), "bcmp.bin", &bcmp);
    let mut small = bcmp.clone();
    small[150_004..150_008].copy_from_slice(b"0999");
    write(dir.path(), "small.bin", &small);
    let summary = scan_as(&appliance.url(), "vm-checks", dir.path()).await;
    assert_eq!(summary.infected, 2, "{summary:?}");
    assert_eq!(
        signatures_once(&mgr, 2).await,
        ["Bcmp.Sig.UNOFFICIAL", "Pcre.Sig.UNOFFICIAL"]
    );
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_and_documents_are_opened_on_the_appliance() {
    let (manager, mgr) = crate::common::start_manager().await;
    let config = crate::common::config_with_manager(&manager.url());
    let (appliance, _app) = start_appliance(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for c in EICAR.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            b64.push(if i <= c.len() {
                B64[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    let mail = format!(
        "From: a@example.com\nTo: b@example.com\nSubject: invoice\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"X\"\n\n--X\nContent-Type: text/plain\n\nsee attached\n--X\nContent-Type: application/octet-stream; name=\"invoice.com\"\nContent-Transfer-Encoding: base64\n\n{b64}\n--X--\n"
    );
    write(dir.path(), "invoice.eml", mail.as_bytes());
    let hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
    write(
        dir.path(),
        "letter.rtf",
        format!("{{\\rtf1 hello {{\\object{{\\*\\objdata {hex}}}}}}}").as_bytes(),
    );
    let summary = scan_as(&appliance.url(), "vm-mail", dir.path()).await;
    assert_eq!(summary.infected, 2);
    assert_eq!(
        members_once(&mgr, 2).await,
        ["invoice.eml!invoice.com", "letter.rtf!objdata 1"]
    );
    appliance.stop().await;
    manager.stop().await;
}
