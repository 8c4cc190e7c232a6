//! Mail and documents: ClamAV's own test files that hold `clam.exe` in
//! mail (MIME base64, uuencode, BinHex, TNEF) and in documents, each
//! found with one hash signature of `clam.exe`.

mod common;
use common::clam_exe_in;

/// Skipped (with a message) without clamav-testfiles, unless
/// `GIVA_REQUIRE_CLAMAV=1`.
#[test]
fn clamav_testfiles_in_mail_and_documents() {
    let (found, missed) = clam_exe_in(&[
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
    ]);
    for f in &found {
        println!("found in {f}");
    }
    assert!(missed.is_empty(), "{missed:#?}");
}
