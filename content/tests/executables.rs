//! ClamAV's test files that hide `clam.exe` in an installer, a package or
//! a packer, found with one hash signature of `clam.exe` (the ones giva
//! opens so far; the rest of #28's list is still to come).

mod common;
use common::clam_exe_in;

/// Skipped (with a message) without clamav-testfiles, unless
/// `GIVA_REQUIRE_CLAMAV=1`.
#[test]
fn clamav_testfiles_in_installers_and_packages() {
    let (found, missed) = clam_exe_in(&[
        "clam.sis",
        "clam_IScab_ext.exe",
        "clam_IScab_int.exe",
        "clam_ISmsi_ext.exe",
        "clam_ISmsi_int.exe",
        "clam-nsis.exe",
        "clam-upx.exe",
        "clam.ea05.exe",
        "clam.ea06.exe",
    ]);
    for f in &found {
        println!("found in {f}");
    }
    assert!(missed.is_empty(), "{missed:#?}");
}
