//! Containers built here with the crates' writers (and by hand for cpio
//! and ar), each wrapping a payload that one body signature and one hash
//! signature detect; nested containers; ClamAV's own test files; and the
//! bombs, which must end in bounded time with the limit named.

use std::path::{Path, PathBuf};
use std::time::Instant;

use giva_content::{Decomposer, Limits, Report};
use giva_engine::{Engine, Limit, Outcome, ScanOptions};
use sha2::Digest;

mod common;
use common::{bzip2, gzip, hex, tar_of, xz, zip_of};

const MARK: &[u8] = b"GIVA-CONTENT-TEST-PAYLOAD-MARK";

fn payload() -> Vec<u8> {
    let mut p: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    p[5000..5000 + MARK.len()].copy_from_slice(MARK);
    p
}

/// An engine with one body signature on the mark, or one SHA-256 hash
/// signature of the payload.
fn engine(dir: &Path, hash: bool) -> (Engine, PathBuf) {
    let p = payload();
    let (file, text) = if hash {
        (
            "t.hsb",
            format!(
                "{}:{}:Test.Payload.Hash\n",
                hex(&sha2::Sha256::digest(&p)),
                p.len()
            ),
        )
    } else {
        ("t.ndb", format!("Test.Payload.Body:0:*:{}\n", hex(MARK)))
    };
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write");
    let (_, e) = Engine::load(&[&path]).expect("engine");
    (e, path)
}

fn decomposer(engine: Engine, limits: Limits) -> Decomposer {
    Decomposer::new(engine, ScanOptions::default(), limits)
}

/// A cpio archive, "new" ASCII format.
fn cpio_newc(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |name: &str, mode: u32, data: &[u8]| {
        let namesize = name.len() + 1;
        out.extend_from_slice(
            format!(
                "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
                1, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, 0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (name, data) in members {
        put(name, 0o100644, data);
    }
    put("TRAILER!!!", 0, &[]);
    out
}

/// An `ar` archive (as a Debian package is).
fn ar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        out.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                format!("{name}/"),
                0,
                0,
                0,
                644,
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// Every container type wraps the payload; each is found by the body
/// signature and by the hash signature, at the member that holds it.
#[test]
fn every_container_type_is_opened_and_its_member_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = payload();
    let m: &[(&str, &[u8])] = &[("readme.txt", b"nothing to see here"), ("p.exe", &p)];
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "stored.zip",
            zip_of(m, zip::CompressionMethod::Stored),
            vec!["p.exe"],
        ),
        (
            "deflate.zip",
            zip_of(m, zip::CompressionMethod::Deflated),
            vec!["p.exe"],
        ),
        (
            "bzip2.zip",
            zip_of(m, zip::CompressionMethod::Bzip2),
            vec!["p.exe"],
        ),
        (
            "xz.zip",
            zip_of(m, zip::CompressionMethod::Xz),
            vec!["p.exe"],
        ),
        ("p.exe.gz", gzip(&p), vec!["p.exe"]),
        ("p.exe.bz2", bzip2(&p), vec!["p.exe"]),
        ("p.exe.xz", xz(&p), vec!["p.exe"]),
        ("a.tar", tar_of(m), vec!["p.exe"]),
        ("a.tgz", gzip(&tar_of(m)), vec!["a.tar", "p.exe"]),
        ("a.cpio", cpio_newc(m), vec!["p.exe"]),
        ("a.deb", ar_of(m), vec!["p.exe"]),
        (
            "outer.zip",
            zip_of(
                &[(
                    "mid.tar.gz",
                    &gzip(&tar_of(&[(
                        "in.zip",
                        &zip_of(m, zip::CompressionMethod::Deflated),
                    )])),
                )],
                zip::CompressionMethod::Stored,
            ),
            vec!["mid.tar.gz", "mid.tar", "in.zip", "p.exe"],
        ),
    ];
    for hash in [false, true] {
        let (e, _) = engine(dir.path(), hash);
        let d = decomposer(e, Limits::default());
        for (name, data, at) in &cases {
            let r = d.scan(data, name);
            assert_eq!(
                r.result.outcome,
                Outcome::Infected,
                "{name} (hash: {hash}): {r:?}"
            );
            assert_eq!(r.found.len(), 1, "{name}");
            // A hash names the member itself; a body signature may match
            // sooner, in a layer that holds the member's bytes as they are
            // (a stored zip, a tar), as it does in ClamAV.
            if hash {
                assert_eq!(r.found[0].path, *at, "{name}");
            } else {
                let got: Vec<&str> = r.found[0].path.iter().map(String::as_str).collect();
                assert!(at.starts_with(&got), "{name}: {got:?}");
            }
            assert!(r.gaps.is_empty(), "{name}: {:?}", r.gaps);
            let expected = if hash {
                "Test.Payload.Hash"
            } else {
                "Test.Payload.Body"
            };
            assert!(r.result.detections[0].name.starts_with(expected), "{name}");
        }
        // The same members without the payload: clean, with nothing skipped.
        let clean: &[(&str, &[u8])] = &[("readme.txt", b"nothing to see here, really")];
        for (name, data) in [
            ("c.zip", zip_of(clean, zip::CompressionMethod::Deflated)),
            ("c.tgz", gzip(&tar_of(clean))),
            ("c.cpio", cpio_newc(clean)),
        ] {
            let r = d.scan(&data, name);
            assert_eq!(r.result.outcome, Outcome::Clean, "{name}: {r:?}");
            assert!(r.members >= 1, "{name}");
        }
    }
    assert_eq!(
        Report::joined("outer.zip", &["mid.zip".into(), "p.exe".into()]),
        "outer.zip!mid.zip!p.exe"
    );
}

/// A container that cannot be read, or only partly, is never clean.
#[test]
fn truncated_and_encrypted_members_are_not_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (e, _) = engine(dir.path(), false);
    let d = decomposer(e, Limits::default());
    let p = payload();
    let gz = gzip(&p);
    let r = d.scan(&gz[..gz.len() / 2], "cut.gz");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Unreadable),
        "{r:?}"
    );
    // A stored zip entry marked encrypted (general purpose bit 0).
    let mut z = zip_of(
        &[("secret.bin", &[0u8; 64])],
        zip::CompressionMethod::Stored,
    );
    z[6] |= 1;
    let cd = z
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory");
    z[cd + 8] |= 1;
    let r = d.scan(&z, "enc.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Encrypted),
        "{r:?}"
    );
    assert_eq!(r.gaps[0].path, vec!["secret.bin".to_string()]);
    // A method giva does not decode (zstd, 93): said so.
    let mut z = zip_of(&[("p.bin", b"some bytes")], zip::CompressionMethod::Stored);
    z[8..10].copy_from_slice(&93u16.to_le_bytes());
    let cd = z
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory");
    z[cd + 10..cd + 12].copy_from_slice(&93u16.to_le_bytes());
    let r = d.scan(&z, "ppmd.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Unsupported),
        "{r:?}"
    );
    // A damaged ARJ header is unreadable, not clean.
    let r = d.scan(b"\x60\xea\x2c\x00 an ARJ header and the rest", "a.arj");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Unreadable),
        "{r:?}"
    );
    // A 7z that is not whole is unreadable, not clean.
    let r = d.scan(b"7z\xbc\xaf\x27\x1c\0\x04 and the rest", "a.7z");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Unreadable),
        "{r:?}"
    );
}

/// The bombs end in bounded time and memory, each with its limit named.
#[test]
fn bombs_stop_at_their_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (e, _) = engine(dir.path(), false);
    let d = decomposer(e.clone(), Limits::default());

    // 1 GiB of zeros, gzipped (1,024 members of 1 MiB each): stopped at
    // the member size limit, 100 MB, and never held in memory.
    let one = gzip(&vec![0u8; 1 << 20]);
    let bomb: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1024).collect();
    let t = Instant::now();
    let r = d.scan(&bomb, "zeros.gz");
    println!(
        "1 GiB of zeros gzipped ({} bytes): {:?} in {:?}",
        bomb.len(),
        r.gaps,
        t.elapsed()
    );
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::FileSize),
        "{r:?}"
    );

    // 40 levels of zips inside zips: stopped at 17.
    let mut nested = zip_of(&[("clean.txt", b"nothing")], zip::CompressionMethod::Stored);
    for i in 0..40 {
        nested = zip_of(
            &[(&format!("level{i}.zip"), &nested)],
            zip::CompressionMethod::Stored,
        );
    }
    let r = d.scan(&nested, "deep.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Recursion),
        "{r:?}"
    );
    assert_eq!(r.gaps[0].path.len(), 17);

    // A zip of 4,000 members: all scanned under the default (10,000), and
    // stopped at a lower limit.
    let names: Vec<String> = (0..4000).map(|i| format!("f{i}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), &b"small file"[..]))
        .collect();
    let many = zip_of(&members, zip::CompressionMethod::Stored);
    let r = d.scan(&many, "many.zip");
    assert_eq!(r.result.outcome, Outcome::Clean, "{:?}", r.gaps);
    assert_eq!(r.members, 4000);
    let few = decomposer(
        e.clone(),
        Limits {
            max_files: 1000,
            ..Limits::default()
        },
    );
    let r = few.scan(&many, "many.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Files),
        "{r:?}"
    );

    // Overlapping entries: two central directory entries for one local
    // entry's data.
    let z = zip_of(
        &[("a.bin", &vec![0u8; 100_000])],
        zip::CompressionMethod::Deflated,
    );
    let cd = z.windows(4).rposition(|w| w == b"PK\x01\x02").expect("cd");
    let eocd = z
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("eocd");
    let entry = z[cd..eocd].to_vec();
    let mut second = entry.clone();
    // Another name of the same length, same offset.
    let name_at = 46;
    second[name_at] = b'b';
    let mut bomb = z[..cd].to_vec();
    bomb.extend_from_slice(&entry);
    bomb.extend_from_slice(&second);
    let mut end = z[eocd..].to_vec();
    end[8..10].copy_from_slice(&2u16.to_le_bytes());
    end[10..12].copy_from_slice(&2u16.to_le_bytes());
    end[12..16].copy_from_slice(&((entry.len() * 2) as u32).to_le_bytes());
    bomb.extend_from_slice(&end);
    let r = d.scan(&bomb, "overlap.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Bomb),
        "{r:?}"
    );

    // A member expanding more than the ratio allows.
    let ratio = decomposer(
        e,
        Limits {
            ratio_floor: 1 << 20,
            max_ratio: 100,
            ..Limits::default()
        },
    );
    let z = zip_of(
        &[("zeros", &vec![0u8; 8 << 20])],
        zip::CompressionMethod::Deflated,
    );
    let r = ratio.scan(&z, "ratio.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::LimitExceeded(Limit::Bomb),
        "{r:?}"
    );
}

/// ClamAV's test files that hold `clam.exe` in a container this crate
/// opens: each is found by one hash signature of `clam.exe`. Skipped
/// without clamav-testfiles unless `GIVA_REQUIRE_CLAMAV=1`.
#[test]
fn clamav_testfiles_in_containers() {
    let (found, missed) = common::clam_exe_in(&[
        "clam.zip",
        "clam.bz2.zip",
        "clam.d64.zip",
        "clam.impl.zip",
        "clam.exe.bz2",
        "clam.tar.gz",
        "clam_cache_emax.tgz",
        "clam.bin-be.cpio",
        "clam.bin-le.cpio",
        "clam.newc.cpio",
        "clam.odc.cpio",
        "clam.7z",
        "clam.cab",
        "clam.arj",
    ]);
    for f in &found {
        println!("found in {f}");
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// A container on the allow list (`.sfp`) is not opened, as in ClamAV; a
/// member on it is skipped alone.
#[test]
fn an_allowed_container_is_not_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = payload();
    let z = zip_of(&[("p.exe", &p)], zip::CompressionMethod::Deflated);
    let (_, ndb) = engine(dir.path(), false);
    let sfp = dir.path().join("t.sfp");
    std::fs::write(
        &sfp,
        format!(
            "{}:{}:Allowed.Zip\n",
            hex(&sha2::Sha256::digest(&z)),
            z.len()
        ),
    )
    .expect("sfp");
    let (_, e) = Engine::load(&[&ndb, &sfp]).expect("engine");
    let r = decomposer(e, Limits::default()).scan(&z, "ok.zip");
    assert_eq!(r.result.outcome, Outcome::Clean, "{r:?}");
    assert_eq!(r.members, 0);
    let (_, e) = Engine::load(&[&ndb]).expect("engine");
    let r = decomposer(e, Limits::default()).scan(&z, "ok.zip");
    assert_eq!(
        r.result.outcome,
        Outcome::Infected,
        "without the allow list"
    );
}

/// A minimal PE: headers, one section of `section` bytes at 0x200.
fn pe(section: usize) -> Vec<u8> {
    let mut d = vec![0u8; 0x200 + section];
    d[..2].copy_from_slice(b"MZ");
    d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    d[0x80..0x84].copy_from_slice(b"PE\0\0");
    d[0x86..0x88].copy_from_slice(&1u16.to_le_bytes()); // one section
    d[0x94..0x96].copy_from_slice(&0u16.to_le_bytes()); // no optional header
    let s = 0x80 + 24;
    d[s + 16..s + 20].copy_from_slice(&(section as u32).to_le_bytes());
    d[s + 20..s + 24].copy_from_slice(&0x200u32.to_le_bytes());
    for (i, b) in d[0x200..].iter_mut().enumerate() {
        *b = (i * 31 % 253) as u8;
    }
    d
}

/// A minimal 64-bit little-endian ELF: its section header table (4
/// entries of 64 bytes) ends the image at 0x40 + `body` + 256.
fn elf(body: usize) -> Vec<u8> {
    let mut d = vec![0u8; 0x40 + body + 256];
    d[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    d[0x28..0x30].copy_from_slice(&((0x40 + body) as u64).to_le_bytes()); // e_shoff
    d[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    d[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes()); // e_shnum
    d
}

/// A zip in an executable's overlay (a self-extractor) is opened at its
/// offset; a zip magic inside the image itself is not searched for, and a
/// magic in the overlay that does not open costs nothing: no gap, no
/// error.
#[test]
fn an_archive_in_an_executables_overlay_is_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (e, _) = engine(dir.path(), true);
    let d = decomposer(e, Limits::default());
    let p = payload();
    let mut exe = pe(0x1000);
    assert_eq!(giva_content::overlay_start(&exe), None, "no overlay yet");
    exe[0x300..0x304].copy_from_slice(b"PK\x03\x04");
    let clean = d.scan(&exe, "tool.exe");
    assert_eq!(clean.result.outcome, Outcome::Clean, "{clean:?}");
    assert!(clean.gaps.is_empty());
    exe.extend_from_slice(b"PK\x03\x04 in the overlay, and no zip");
    let clean = d.scan(&exe, "tool.exe");
    assert_eq!(clean.result.outcome, Outcome::Clean, "{clean:?}");
    assert!(clean.gaps.is_empty());
    let at = exe.len();
    exe.extend_from_slice(&zip_of(&[("p.exe", &p)], zip::CompressionMethod::Deflated));
    assert_eq!(giva_content::overlay_start(&exe), Some(0x1200));
    let r = d.scan(&exe, "setup.exe");
    assert_eq!(r.result.outcome, Outcome::Infected, "{r:?}");
    assert!(r.found[0].path[0].starts_with('@'), "{:?}", r.found[0].path);
    assert_eq!(r.found[0].path[1], "p.exe");
    assert!(at >= 0x1200);
    // The same after an ELF image.
    let mut bin = elf(4096);
    let image = bin.len();
    assert_eq!(giva_content::overlay_start(&bin), None);
    bin.extend_from_slice(&zip_of(&[("p.exe", &p)], zip::CompressionMethod::Stored));
    assert_eq!(giva_content::overlay_start(&bin), Some(image));
    let r = d.scan(&bin, "installer");
    assert_eq!(r.result.outcome, Outcome::Infected, "{r:?}");
    assert_eq!(
        r.found[0].path,
        vec![format!("@{image}"), "p.exe".to_string()]
    );
}

/// With a verdict cache, a member seen before is not scanned again: a known
/// payload in a new wrapper is a cache hit that still names its layer, a
/// known-clean member costs a digest, and a member with a part not scanned
/// is not cached.
#[test]
fn members_are_cached_by_their_digest() {
    use giva_engine::{CacheConfig, VerdictCache};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let (e, _) = engine(dir.path(), false);
    let cache = Arc::new(VerdictCache::new(CacheConfig::default()));
    let d = decomposer(e, Limits::default()).with_cache(cache.clone(), 1);
    let p = payload();
    let inner = zip_of(&[("p.exe", &p)], zip::CompressionMethod::Deflated);
    let first = zip_of(
        &[("readme.txt", b"clean words"), ("inner.zip", &inner)],
        zip::CompressionMethod::Stored,
    );
    let r = d.scan(&first, "first.zip");
    assert_eq!(r.result.outcome, Outcome::Infected);
    assert_eq!(r.cached, 0, "{r:?}");
    assert_eq!(r.found[0].path, ["inner.zip", "p.exe"]);

    // The same inner zip in another wrapper: served from the cache, named.
    let second = tar_of(&[("notes.txt", b"clean words"), ("x/inner.zip", &inner)]);
    let r = d.scan(&second, "second.tar");
    assert_eq!(r.result.outcome, Outcome::Infected);
    assert_eq!(r.cached, 2, "both members were seen before: {r:?}");
    assert_eq!(r.found[0].path, ["x/inner.zip", "p.exe"]);
    assert_eq!(r.found[0].detection.name, "Test.Payload.Body.UNOFFICIAL");

    // Another database generation: nothing is served.
    let d2 =
        decomposer(engine(dir.path(), false).0, Limits::default()).with_cache(cache.clone(), 2);
    let r = d2.scan(&second, "second.tar");
    assert_eq!((r.result.outcome, r.cached), (Outcome::Infected, 0));

    // A member cut short by a limit is not cached as clean.
    let tight = Limits {
        max_file_size: 1000,
        ..Limits::default()
    };
    let big = vec![b'a'; 5000];
    let holder = zip_of(&[("big.bin", &big)], zip::CompressionMethod::Stored);
    let wrap = gzip(&holder);
    let d3 = decomposer(engine(dir.path(), false).0, tight).with_cache(cache, 3);
    let r = d3.scan(&wrap, "w.zip.gz");
    assert!(
        matches!(r.result.outcome, Outcome::LimitExceeded(_)),
        "{r:?}"
    );
    let r = d3.scan(&wrap, "again.zip.gz");
    assert_eq!(r.cached, 0, "{r:?}");
    assert!(
        matches!(r.result.outcome, Outcome::LimitExceeded(_)),
        "{r:?}"
    );
}
