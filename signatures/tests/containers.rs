//! `.cvd`/`.cld`/`.cud` containers: real `.cud` files built by `sigtool`,
//! and hand-built containers for tamper detection.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use giva_signatures::cvd::{self as container, unpack};
use giva_signatures::{CompileError, Compiler, ContainerError, Limits};
use md5::Md5;
use sha2::{Digest, Sha256};

const NDB: &[u8] = b"Test.A:0:*:414243444546\n";
const HDB: &[u8] = b"44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n";

fn hexs(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

struct Spec<'a> {
    members: Vec<(&'a str, Vec<u8>)>,
    /// Overrides of the `.info` lines, by member name (size, sha256).
    info_override: Vec<(&'a str, String)>,
    omit_from_info: Vec<&'a str>,
    with_info: bool,
    gzip: bool,
    dsig: &'a str,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            members: vec![("test.ndb", NDB.to_vec()), ("test.hdb", HDB.to_vec())],
            info_override: vec![],
            omit_from_info: vec![],
            with_info: true,
            gzip: true,
            dsig: "X",
        }
    }
}

const HEADER_FIELDS: &str = "21 Nov 2026 23-20 +0000:5:2:216";
const STIME: &str = "1795303252";

fn build(spec: &Spec<'_>) -> Vec<u8> {
    let mut info = format!("ClamAV-VDB:{HEADER_FIELDS}:X:X:tester:{STIME}\n");
    for (name, data) in &spec.members {
        if spec.omit_from_info.contains(name) {
            continue;
        }
        match spec.info_override.iter().find(|(n, _)| n == name) {
            Some((_, line)) => info.push_str(&format!("{name}:{line}\n")),
            None => info.push_str(&format!(
                "{name}:{}:{}\n",
                data.len(),
                hexs(&Sha256::digest(data))
            )),
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("COPYING", b"copying\n");
    if spec.with_info {
        add("test.info", info.as_bytes());
    }
    for (name, data) in &spec.members {
        add(name, data);
    }
    let tar = tar.into_inner().unwrap();
    let body = if spec.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    } else {
        tar
    };
    let md5 = hexs(&Md5::digest(&body));
    let mut header = format!(
        "ClamAV-VDB:{HEADER_FIELDS}:{md5}:{}:tester:{STIME}",
        spec.dsig
    )
    .into_bytes();
    header.resize(512, b' ');
    header.extend_from_slice(&body);
    header
}

fn cud(spec: &Spec<'_>) -> Result<container::Unpacked, ContainerError> {
    unpack(&build(spec), "cud", &Limits::default())
}

#[test]
fn hand_built_cud_loads() {
    let u = cud(&Spec::default()).unwrap();
    assert!(!u.official);
    assert_eq!(u.header.version, 5);
    assert_eq!(u.members.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("test.cud");
    std::fs::write(&p, build(&Spec::default())).unwrap();
    let mut c = Compiler::new();
    c.add_path(&p).unwrap();
    let db = c.build().unwrap();
    assert_eq!(db.body_signatures()[0].name, "Test.A.UNOFFICIAL");
    assert_eq!(db.info().loaded["hash"], 1);
}

#[test]
fn cld_without_an_info_signature_is_refused() {
    // clamscan 1.4.6: "cli_loadinfo: Digital signature not found".
    let spec = Spec {
        gzip: false,
        ..Spec::default()
    };
    let e = unpack(&build(&spec), "cld", &Limits::default()).unwrap_err();
    assert!(
        matches!(e, ContainerError::BadInfo(ref m) if m.contains("not found")),
        "{e}"
    );
}

#[test]
fn cud_md5_is_not_checked() {
    // clamscan 1.4.6 loads a .cud whose header MD5 is wrong.
    let mut b = build(&Spec::default());
    b[60] = if b[60] == b'0' { b'1' } else { b'0' };
    assert!(unpack(&b, "cud", &Limits::default()).is_ok());
}

#[test]
fn plain_tar_cud_loads() {
    let spec = Spec {
        gzip: false,
        ..Spec::default()
    };
    let u = unpack(&build(&spec), "cud", &Limits::default()).unwrap();
    assert_eq!(u.members.len(), 2);
}

#[test]
fn flipped_body_byte_is_an_md5_error() {
    // The .cvd checks come in ClamAV's order: the body MD5 first.
    let mut b = build(&Spec::default());
    let last = b.len() - 3;
    b[last] ^= 0x40;
    assert!(matches!(
        unpack(&b, "cvd", &Limits::default()),
        Err(ContainerError::Md5Mismatch { .. })
    ));
    // A .cud has no MD5 check (as in ClamAV), and a flip in the gzip
    // trailer is not even read; a flip inside the compressed data is caught
    // by inflate or by the member SHA-256.
    let mut b = build(&Spec::default());
    let mid = 512 + (b.len() - 512) / 2;
    b[mid] ^= 0x40;
    assert!(unpack(&b, "cud", &Limits::default()).is_err());
}

#[test]
fn wrong_member_sha256_is_refused() {
    let spec = Spec {
        info_override: vec![("test.ndb", format!("{}:{}", NDB.len(), "00".repeat(32)))],
        ..Spec::default()
    };
    let e = cud(&spec).unwrap_err();
    assert!(
        matches!(e, ContainerError::Member { ref member, .. } if member == "test.ndb"),
        "{e}"
    );
}

#[test]
fn wrong_member_size_is_refused() {
    let spec = Spec {
        info_override: vec![("test.hdb", format!("1:{}", hexs(&Sha256::digest(HDB))))],
        ..Spec::default()
    };
    assert!(matches!(cud(&spec), Err(ContainerError::Member { .. })));
}

#[test]
fn member_missing_from_info_is_refused() {
    let spec = Spec {
        omit_from_info: vec!["test.hdb"],
        ..Spec::default()
    };
    assert!(matches!(cud(&spec), Err(ContainerError::Member { .. })));
}

#[test]
fn missing_info_is_refused() {
    let spec = Spec {
        with_info: false,
        ..Spec::default()
    };
    assert!(matches!(cud(&spec), Err(ContainerError::BadInfo(_))));
}

#[test]
fn truncated_and_bad_headers_are_refused() {
    assert!(matches!(
        unpack(&[b' '; 100], "cvd", &Limits::default()),
        Err(ContainerError::Truncated { .. })
    ));
    let mut b = build(&Spec::default());
    b[0] = b'X';
    assert!(matches!(
        unpack(&b, "cud", &Limits::default()),
        Err(ContainerError::BadHeader(_))
    ));
}

#[test]
fn unsigned_cvd_fails_the_signature_check() {
    let b = build(&Spec::default());
    assert!(matches!(
        unpack(&b, "cvd", &Limits::default()),
        Err(ContainerError::BadSignature)
    ));
    // Through the compiler, the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("daily.cvd");
    std::fs::write(&p, &b).unwrap();
    let e = Compiler::new().add_file(&p).unwrap_err();
    assert!(matches!(e, CompileError::Container { .. }));
    assert!(
        e.to_string().starts_with("daily.cvd: digital signature"),
        "{e}"
    );
}

#[test]
fn corrupt_gzip_is_an_archive_error() {
    let mut b = build(&Spec::default());
    b.truncate(600);
    let body = &b[512..];
    let md5 = hexs(&Md5::digest(body));
    let mut header = format!("ClamAV-VDB:{HEADER_FIELDS}:{md5}:X:tester:{STIME}").into_bytes();
    header.resize(512, b' ');
    header.extend_from_slice(body);
    assert!(matches!(
        unpack(&header, "cud", &Limits::default()),
        Err(ContainerError::Archive(_))
    ));
}

#[test]
fn size_limit_applies_while_unpacking() {
    let spec = Spec {
        members: vec![("big.ndb", vec![b'#'; 100_000])],
        ..Spec::default()
    };
    let limits = Limits {
        max_file_size: 10_000,
        ..Limits::default()
    };
    assert!(matches!(
        unpack(&build(&spec), "cud", &limits),
        Err(ContainerError::Limit(_))
    ));
}

fn require_clamav() -> bool {
    std::env::var("GIVA_REQUIRE_CLAMAV").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sigtool_build(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("COPYING"), "copying\n").unwrap();
    std::fs::write(dir.join("test.ndb"), NDB).unwrap();
    std::fs::write(dir.join("test.hdb"), HDB).unwrap();
    std::fs::write(
        dir.join("test.ldb"),
        "Test.L;Engine:51-255,Target:0;0&1;414243;444546\n",
    )
    .unwrap();
    let mut child = Command::new("sigtool")
        .current_dir(dir)
        .args([
            "--build=test.cud",
            "--unsigned",
            "--cvd-version=7",
            "--no-cdiff",
        ])
        .arg(format!("--datadir={}", dir.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"giva-test\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let p = dir.join("test.cud");
    assert!(
        p.exists(),
        "sigtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

#[test]
fn sigtool_built_cud_loads() {
    if !have("sigtool") {
        assert!(
            !require_clamav(),
            "sigtool is required (GIVA_REQUIRE_CLAMAV=1)"
        );
        println!("SKIPPED: sigtool not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = sigtool_build(dir.path());
    let out = tempfile::tempdir().unwrap();
    let cud = out.path().join("test.cud");
    std::fs::copy(&p, &cud).unwrap();
    let db = giva_signatures::compile(&[&cud]).unwrap();
    assert_eq!(db.info().loaded["body"], 1);
    assert_eq!(db.info().loaded["hash"], 1);
    assert_eq!(db.info().loaded["logical"], 1);
    assert_eq!(db.body_signatures()[0].name, "Test.A.UNOFFICIAL");
    // Tampering with the compressed sigtool output is detected.
    let mut bytes = std::fs::read(&cud).unwrap();
    let n = 512 + (bytes.len() - 512) / 2;
    bytes[n] ^= 1;
    assert!(unpack(&bytes, "cud", &Limits::default()).is_err());
}

/// The hand-built containers are accepted or refused by clamscan exactly as
/// by giva.
#[test]
fn clamscan_agrees_on_hand_built_containers() {
    if !have("clamscan") {
        assert!(
            !require_clamav(),
            "clamscan is required (GIVA_REQUIRE_CLAMAV=1)"
        );
        println!("SKIPPED: clamscan not installed");
        return;
    }
    let sha = |d: &[u8]| hexs(&Sha256::digest(d));
    let mut bad_md5 = build(&Spec::default());
    bad_md5[60] = if bad_md5[60] == b'0' { b'1' } else { b'0' };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("good", "cud", build(&Spec::default())),
        (
            "plain",
            "cud",
            build(&Spec {
                gzip: false,
                ..Spec::default()
            }),
        ),
        ("bad-md5", "cud", bad_md5),
        (
            "bad-sha",
            "cud",
            build(&Spec {
                info_override: vec![("test.ndb", format!("{}:{}", NDB.len(), "00".repeat(32)))],
                ..Spec::default()
            }),
        ),
        (
            "bad-size",
            "cud",
            build(&Spec {
                info_override: vec![("test.hdb", format!("1:{}", sha(HDB)))],
                ..Spec::default()
            }),
        ),
        (
            "omitted",
            "cud",
            build(&Spec {
                omit_from_info: vec!["test.hdb"],
                ..Spec::default()
            }),
        ),
        (
            "no-info",
            "cud",
            build(&Spec {
                with_info: false,
                ..Spec::default()
            }),
        ),
        (
            "unsigned-cld",
            "cld",
            build(&Spec {
                gzip: false,
                ..Spec::default()
            }),
        ),
        ("unsigned-cvd", "cvd", build(&Spec::default())),
    ];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, b"\x00\x80ABCDEF\x00\xff").unwrap();
    let mut disagree = Vec::new();
    for (id, ext, bytes) in cases {
        let p = dir.path().join(format!("{id}.{ext}"));
        std::fs::write(&p, &bytes).unwrap();
        let giva = unpack(&bytes, ext, &Limits::default());
        let out = Command::new("clamscan")
            .arg("--no-summary")
            .arg("-d")
            .arg(&p)
            .arg(&data)
            .output()
            .unwrap();
        let clam = matches!(out.status.code(), Some(0 | 1));
        if clam != giva.is_ok() {
            disagree.push(format!("{id}.{ext}: clamscan {clam}, giva {giva:?}"));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Corrupted containers are refused or load; they never panic.
    #[test]
    fn corrupted_containers_never_panic(pos in 0usize..100_000, val: u8, cut in 0usize..100_000, gz: bool) {
        let mut b = build(&Spec { gzip: gz, ..Spec::default() });
        let p = pos % b.len();
        b[p] = val;
        for ext in ["cvd", "cld", "cud"] {
            let _ = unpack(&b, ext, &Limits::default());
            let _ = unpack(&b[..cut % b.len()], ext, &Limits::default());
        }
    }
}
