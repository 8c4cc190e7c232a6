//! Builders of containers shared by the content tests: the crates'
//! writers, with the fastest settings.
#![allow(dead_code)]

use std::io::Write;

/// Whether an archiver is installed; when it is not, says so, or fails
/// when `GIVA_REQUIRE_ARCHIVERS=1` (CI sets it).
pub fn have(tool: &str) -> bool {
    let ok = std::process::Command::new("sh")
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

/// Whether `clamscan` is installed; when it is not, says so, or fails
/// when `GIVA_REQUIRE_CLAMAV=1` (CI sets it).
pub fn clamscan_available() -> bool {
    let ok = std::process::Command::new("clamscan")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("GIVA_REQUIRE_CLAMAV").as_deref() != Ok("1"),
            "clamscan not installed and GIVA_REQUIRE_CLAMAV=1"
        );
        eprintln!("SKIPPED: clamscan not installed");
    }
    ok
}

/// Standard base64 of `data`, with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// ClamAV's test files that hold `clam.exe` in `names`, each scanned with
/// one SHA-256 signature of `clam.exe`: the ones found (as their path), the
/// ones missed (with the report). Empty, with a message, when
/// clamav-testfiles is not installed, unless `GIVA_REQUIRE_CLAMAV=1`.
pub fn clam_exe_in(names: &[&str]) -> (Vec<String>, Vec<String>) {
    use sha2::Digest;
    let dir = std::path::Path::new("/usr/share/clamav-testfiles");
    if !dir.join("clam.exe").is_file() {
        assert!(
            std::env::var("GIVA_REQUIRE_CLAMAV").as_deref() != Ok("1"),
            "clamav-testfiles not installed and GIVA_REQUIRE_CLAMAV=1"
        );
        eprintln!("SKIPPED: clamav-testfiles not installed");
        return (Vec::new(), Vec::new());
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
    let (_, e) = giva_engine::Engine::load(&[&hsb]).expect("engine");
    let d = giva_content::Decomposer::new(
        e,
        giva_engine::ScanOptions::default(),
        giva_content::Limits::default(),
    );
    let (mut found, mut missed) = (Vec::new(), Vec::new());
    for f in names {
        let data = std::fs::read(dir.join(f)).expect("read");
        let r = d.scan(&data, f);
        if r.result.outcome == giva_engine::Outcome::Infected {
            found.push(giva_content::Report::joined(f, &r.found[0].path));
        } else {
            missed.push(format!("{f}: {r:?}"));
        }
    }
    (found, missed)
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A zip of `members`, each stored with `method`.
pub fn zip_of(members: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in members {
        w.start_file(*name, opts).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// `data` gzipped.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// `data` in bzip2.
pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

/// `data` in xz.
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut w =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).expect("xz");
    w.write_all(data).expect("xz");
    w.finish().expect("xz")
}

/// A GNU tar of `members`.
pub fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).expect("tar");
    }
    b.into_inner().expect("tar")
}
