//! Mail and documents: ClamAV's own test files that hold `clam.exe` in
//! mail (MIME base64, uuencode, BinHex, TNEF) and in documents, each
//! found with one hash signature of `clam.exe`.

use std::path::Path;

use giva_content::{Decomposer, Limits, Report};
use giva_engine::{Engine, Outcome, ScanOptions};
use sha2::Digest;

mod common;
use common::hex;

/// Skipped (with a message) without clamav-testfiles, unless
/// `GIVA_REQUIRE_CLAMAV=1`.
#[test]
fn clamav_testfiles_in_mail_and_documents() {
    let dir = Path::new("/usr/share/clamav-testfiles");
    if !dir.join("clam.exe").is_file() {
        assert!(
            std::env::var("GIVA_REQUIRE_CLAMAV").as_deref() != Ok("1"),
            "clamav-testfiles not installed and GIVA_REQUIRE_CLAMAV=1"
        );
        eprintln!("SKIPPED: clamav-testfiles not installed");
        return;
    }
    let clam = std::fs::read(dir.join("clam.exe")).expect("clam.exe");
    let tmp = tempfile::tempdir().expect("tempdir");
    let hsb = tmp.path().join("clam.hsb");
    std::fs::write(
        &hsb,
        format!(
            "{}:{}:Clam.Exe.Hash\n",
            hex(&sha2::Sha256::digest(&clam)),
            clam.len()
        ),
    )
    .expect("write");
    let (_, e) = Engine::load(&[&hsb]).expect("engine");
    let d = Decomposer::new(e, ScanOptions::default(), Limits::default());
    let found = [
        "clam.mail",
        "clam.exe.mbox.base64",
        "clam.exe.mbox.uu",
        "clam.exe.binhex",
        "clam.tnef",
        "clam.exe.szdd",
        "clam.ole.doc",
        "clam.ppt",
        "clam.pdf",
        "clam.exe.rtf",
        "clam.exe.html",
        "clam.chm",
    ];
    let mut missed = Vec::new();
    for f in found {
        let data = std::fs::read(dir.join(f)).expect("read");
        let r = d.scan(&data, f);
        if r.result.outcome == Outcome::Infected {
            println!("{f}: found in {}", Report::joined(f, &r.found[0].path));
        } else {
            missed.push(format!("{f}: {r:?}"));
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}
