//! Containers made by Debian's archivers (`7z`, `gcab`, `cpio`, `zstd`,
//! `genisoimage`, `arj`), each wrapping a payload that one hash signature
//! detects: every format finds it in the member.
//!
//! Skipped (with a message) when an archiver is missing, unless
//! `GIVA_REQUIRE_ARCHIVERS=1` (CI sets it).

use std::path::Path;
use std::process::Command;

use giva_content::{Decomposer, Limits};
use giva_engine::{Engine, Limit, Outcome, ScanOptions};
use sha2::Digest;

mod common;
use common::have;

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
        ("7z", "7z a -bd -y -m0=PPMd c.7z in >/dev/null", "c.7z"),
        (
            "7z",
            "7z a -bd -y -tzip -mm=PPMd ppmd.zip in >/dev/null",
            "ppmd.zip",
        ),
        (
            "7z",
            "7z a -bd -y -tzip -mm=LZMA lzma.zip in >/dev/null",
            "lzma.zip",
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
        (
            "genisoimage",
            "genisoimage -quiet -o plain.iso in",
            "plain.iso",
        ),
        (
            "genisoimage",
            "genisoimage -quiet -J -R -o joliet.iso in",
            "joliet.iso",
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
                .is_some_and(|m| m.to_ascii_lowercase().ends_with("payload.bin")),
            "{archive}: {:?}",
            r.found[0].path
        );
        if *archive == "joliet.iso" {
            // Joliet's names, not the primary tree's upper-case 8.3 ones.
            assert_eq!(r.found[0].path, ["payload.bin"]);
        }
        tried += 1;
    }
    println!("{tried} archives opened");
    if have("arj") {
        // Every method ARJ has: stored, the three Huffman levels, and the
        // fast one; a member whose data is damaged fails its CRC and is
        // not scanned, never clean.
        for m in 0..=4 {
            let archive = format!("m{m}.arj");
            run(
                d,
                &format!("arj a -y -m{m} {archive} in/payload.bin in/readme.txt >/dev/null"),
            );
            let data = std::fs::read(d.join(&archive)).expect("arj");
            let r = decomposer.scan(&data, &archive);
            assert_eq!(r.result.outcome, Outcome::Infected, "{archive}: {r:?}");
            assert_eq!(r.found[0].path, ["in/payload.bin"], "{archive}");
            assert!(r.gaps.is_empty(), "{archive}: {:?}", r.gaps);
            if m > 0 {
                let mut bad = data.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0x55;
                let r = decomposer.scan(&bad, &archive);
                assert_eq!(
                    r.result.outcome,
                    Outcome::LimitExceeded(Limit::Unreadable),
                    "{archive} damaged: {r:?}"
                );
            }
        }
        run(d, "arj a -y -gsecret locked.arj in/payload.bin >/dev/null");
        let data = std::fs::read(d.join("locked.arj")).expect("arj");
        let r = decomposer.scan(&data, "locked.arj");
        assert_eq!(
            r.result.outcome,
            Outcome::LimitExceeded(Limit::Encrypted),
            "{r:?}"
        );
    }
}
