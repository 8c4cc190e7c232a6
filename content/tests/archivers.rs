//! Containers made by Debian's archivers (`7z`, `gcab`, `cpio`, `zstd`,
//! `arj`), each wrapping a payload that one hash signature detects: every
//! format giva opens finds it in the member; ARJ, which giva does not open,
//! is reported as not scanned inside, never clean.
//!
//! Skipped (with a message) when an archiver is missing, unless
//! `GIVA_REQUIRE_ARCHIVERS=1` (CI sets it).

use std::path::Path;
use std::process::Command;

use giva_content::{Decomposer, Limits};
use giva_engine::{Engine, Limit, Outcome, ScanOptions};
use sha2::Digest;

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("GIVA_REQUIRE_ARCHIVERS").as_deref() != Ok("1"),
            "{tool} not installed and GIVA_REQUIRE_ARCHIVERS=1"
        );
        eprintln!("SKIPPED: {tool} not installed");
    }
    ok
}

fn run(dir: &Path, cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn containers_made_by_debians_archivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let payload: Vec<u8> = (0..40_000u32)
        .map(|i| (i * 17 % 251) as u8 ^ 0x33)
        .collect();
    std::fs::create_dir(d.join("in")).expect("mkdir");
    std::fs::write(d.join("in/payload.bin"), &payload).expect("write");
    std::fs::write(d.join("in/readme.txt"), b"nothing here").expect("write");
    let hsb = d.join("t.hsb");
    let digest: String = sha2::Sha256::digest(&payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &hsb,
        format!("{digest}:{}:Archiver.Payload\n", payload.len()),
    )
    .expect("hsb");
    let (_, engine) = Engine::load(&[&hsb]).expect("engine");
    let decomposer = Decomposer::new(engine, ScanOptions::default(), Limits::default());

    // (tool, command run in the directory, the archive it makes)
    let cases: &[(&str, &str, &str)] = &[
        ("7z", "7z a -bd -y a.7z in >/dev/null", "a.7z"),
        (
            "7z",
            "7z a -bd -y -mx=9 -m0=BZip2 b.7z in >/dev/null",
            "b.7z",
        ),
        (
            "gcab",
            "gcab -c -z a.cab in/payload.bin in/readme.txt",
            "a.cab",
        ),
        ("gcab", "gcab -c b.cab in/payload.bin", "b.cab"),
        (
            "cpio",
            "ls in/* | cpio -o -H newc > newc.cpio 2>/dev/null",
            "newc.cpio",
        ),
        (
            "cpio",
            "ls in/* | cpio -o -H odc > odc.cpio 2>/dev/null",
            "odc.cpio",
        ),
        (
            "cpio",
            "ls in/* | cpio -o -H bin > bin.cpio 2>/dev/null",
            "bin.cpio",
        ),
        (
            "zstd",
            "zstd -q -o payload.bin.zst in/payload.bin",
            "payload.bin.zst",
        ),
    ];
    let mut tried = 0;
    for (tool, cmd, archive) in cases {
        if !have(tool) {
            continue;
        }
        run(d, cmd);
        let data = std::fs::read(d.join(archive)).expect("archive");
        let r = decomposer.scan(&data, archive);
        assert_eq!(r.result.outcome, Outcome::Infected, "{archive}: {r:?}");
        assert!(
            r.found[0]
                .path
                .last()
                .is_some_and(|m| m.ends_with("payload.bin")),
            "{archive}: {:?}",
            r.found[0].path
        );
        tried += 1;
    }
    println!("{tried} archives opened");
    if have("arj") {
        run(d, "arj a -y a.arj in/payload.bin >/dev/null");
        let data = std::fs::read(d.join("a.arj")).expect("arj");
        let r = decomposer.scan(&data, "a.arj");
        assert_eq!(
            r.result.outcome,
            Outcome::LimitExceeded(Limit::Unsupported),
            "ARJ is not opened, and says so: {r:?}"
        );
    }
}
