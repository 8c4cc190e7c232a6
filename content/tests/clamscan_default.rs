//! Differential test against `clamscan` in its default mode (archives
//! opened, not raw mode): generated nested archives of the formats both
//! open (zip, tar, gzip, bzip2, xz, and ARJ and ISO 9660 made by Debian's
//! `arj` and `genisoimage`), one body and one hash signature, all-match on
//! both sides; the signatures found per file must be the same.
//!
//! Skipped (with a message) when `clamscan` is not installed, unless
//! `GIVA_REQUIRE_CLAMAV=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use giva_content::{Decomposer, Limits};
use giva_engine::{Engine, ScanOptions};
use sha2::Digest;

mod common;
use common::{bzip2, clamscan_available, gzip, have, hex, tar_of, xz, zip_of};

/// Signatures found per file name.
type Found = BTreeMap<String, BTreeSet<String>>;

/// Writes `files` into `dir/files` and runs `clamscan --allmatch` in its
/// default mode over them with the signatures in `db`.
fn clamscan_found(db: &Path, dir: &Path, files: &[(String, Vec<u8>)]) -> Found {
    let scan_dir = dir.join("files");
    std::fs::create_dir(&scan_dir).expect("mkdir");
    for (name, data) in files {
        std::fs::write(scan_dir.join(name), data).expect("write");
    }
    let out = Command::new("clamscan")
        .args(["--no-summary", "--allmatch", "--infected", "-d"])
        .arg(db)
        .arg(&scan_dir)
        .output()
        .expect("clamscan runs");
    let mut theirs = Found::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((path, rest)) = line.rsplit_once(": ")
            && let Some(name) = rest.strip_suffix(" FOUND")
        {
            let file = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            theirs.entry(file).or_default().insert(name.to_string());
        }
    }
    theirs
}

/// giva on the same files, all-match, with the signature files `sigs`;
/// with `whole`, every layer of every file must have been scanned.
fn giva_found(sigs: &[PathBuf], files: &[(String, Vec<u8>)], whole: bool) -> Found {
    let (_, engine) = Engine::load(sigs).expect("engine");
    let decomposer = Decomposer::new(
        engine,
        ScanOptions {
            all_match: true,
            ..ScanOptions::default()
        },
        Limits::default(),
    );
    let mut ours = Found::new();
    for (name, data) in files {
        let r = decomposer.scan(data, name);
        assert!(!whole || r.gaps.is_empty(), "{name}: {:?}", r.gaps);
        for det in r.result.detections {
            ours.entry(name.clone()).or_default().insert(det.name);
        }
    }
    ours
}

#[test]
fn same_detections_as_clamscan_default_mode_on_nested_archives() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Two payloads: one with the body signature's bytes, one that only
    // the hash signature knows (its bytes appear in no other file).
    let mark = b"GIVA-DIFF-BODY-MARK-0123456789";
    let mut body: Vec<u8> = (0..30_000u32).map(|i| (i * 13 % 241) as u8).collect();
    body[12_000..12_000 + mark.len()].copy_from_slice(mark);
    let hashed: Vec<u8> = (0..25_000u32)
        .map(|i| (i * 29 % 233) as u8 ^ 0x5a)
        .collect();
    let clean: Vec<u8> = (0..9_000u32).map(|i| (i * 3 % 199) as u8).collect();
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(db.join("t.ndb"), format!("Diff.Body:0:*:{}\n", hex(mark))).expect("ndb");
    std::fs::write(
        db.join("t.hsb"),
        format!(
            "{}:{}:Diff.Hash\n",
            hex(&sha2::Sha256::digest(&hashed)),
            hashed.len()
        ),
    )
    .expect("hsb");

    let both: &[(&str, &[u8])] = &[("a/body.bin", &body), ("b/hashed.bin", &hashed)];
    let only_hash: &[(&str, &[u8])] = &[("clean.bin", &clean), ("hashed.bin", &hashed)];
    let nothing: &[(&str, &[u8])] = &[("clean.bin", &clean)];
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("both.zip", zip_of(both, zip::CompressionMethod::Deflated)),
        ("stored.zip", zip_of(both, zip::CompressionMethod::Stored)),
        (
            "hash-bzip2.zip",
            zip_of(only_hash, zip::CompressionMethod::Bzip2),
        ),
        ("both.tar", tar_of(both)),
        ("both.tar.gz", gzip(&tar_of(both))),
        ("hash.tar.bz2", bzip2(&tar_of(only_hash))),
        ("hash.tar.xz", xz(&tar_of(only_hash))),
        ("hashed.bin.gz", gzip(&hashed)),
        ("body.bin.bz2", bzip2(&body)),
        (
            "nested.zip",
            zip_of(
                &[(
                    "mid.tar.gz",
                    &gzip(&tar_of(&[(
                        "in.zip",
                        &zip_of(only_hash, zip::CompressionMethod::Deflated),
                    )])),
                )],
                zip::CompressionMethod::Deflated,
            ),
        ),
        (
            "clean.zip",
            zip_of(nothing, zip::CompressionMethod::Deflated),
        ),
        ("clean.tar.gz", gzip(&tar_of(nothing))),
    ];
    let mut files: Vec<(String, Vec<u8>)> =
        files.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    // ARJ and ISO 9660, made by Debian's tools where they are installed.
    let src = d.join("src");
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(src.join("a/body.bin"), &body).expect("write");
    std::fs::write(src.join("hashed.bin"), &hashed).expect("write");
    for (tool, cmd, name) in [
        (
            "arj",
            "arj a -y -m1 out.arj a/body.bin hashed.bin",
            "both.arj",
        ),
        (
            "genisoimage",
            "genisoimage -quiet -J -o out.iso .",
            "both.iso",
        ),
    ] {
        if !have(tool) {
            continue;
        }
        let ok = Command::new("sh")
            .args(["-c", &format!("{cmd} >/dev/null 2>&1")])
            .current_dir(&src)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{cmd}");
        let out = src.join(if tool == "arj" { "out.arj" } else { "out.iso" });
        let data = std::fs::read(&out).expect("made");
        std::fs::remove_file(&out).expect("rm");
        files.push((name.into(), data.clone()));
        if tool == "arj" {
            files.push((
                "arj-in.zip".into(),
                zip_of(&[("x.arj", &data)], zip::CompressionMethod::Deflated),
            ));
        }
    }
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb"), db.join("t.hsb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(
        theirs.len() >= 8,
        "too few clamscan detections to compare: {theirs:?}"
    );
    assert_eq!(ours, theirs);
}

/// Typed signatures (targets 1 to 14, one per target, on the same bytes)
/// against files of each type `clamscan` recognises by their first bytes,
/// alone and inside archives: giva must find the same signatures, for the
/// targets it applies; the others (3 and 7, normalized HTML and text;
/// 12 Java; 13, 14) never fire on these files in `clamscan` (mail, 4,
/// has a test of its own).
#[test]
fn typed_signatures_apply_to_the_same_files_as_in_clamscan() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = b"GIVA-TYPED-MARK-0123456789abcdef";
    let pad: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let with = |head: &[u8]| -> Vec<u8> {
        let mut v = head.to_vec();
        v.extend_from_slice(&pad);
        v.extend_from_slice(mark);
        v.extend_from_slice(&pad);
        v
    };
    let mut pdf_late = vec![b'x'; 1017];
    pdf_late.extend_from_slice(b"%PDF-1.4\n");
    let mut pdf_too_late = vec![b'x'; 1018];
    pdf_too_late.extend_from_slice(b"%PDF-1.4\n");
    let mut files: Vec<(String, Vec<u8>)> = [
        ("plain.bin", &b""[..]),
        ("mz.exe", b"MZ"),
        (
            "ole2.doc",
            &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1],
        ),
        ("gif.gif", b"GIF89a"),
        ("png.png", b"\x89PNG\r\n\x1a\n"),
        ("jpeg.jpg", &[0xff, 0xd8, 0xff, 0xe0]),
        ("bm.txt", b"BMW is a car"),
        ("tiff.tif", b"MM\0*"),
        ("elf.bin", b"\x7fELF\x02\x01\x01"),
        ("macho.bin", &[0xcf, 0xfa, 0xed, 0xfe]),
        ("fat.bin", &[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2]),
        ("pdf.pdf", b"%PDF-1.7\n"),
        ("pdf-late.pdf", &pdf_late),
        ("pdf-too-late.pdf", &pdf_too_late),
        ("swf.swf", b"FWS\x09"),
    ]
    .iter()
    .map(|(n, h)| (n.to_string(), with(h)))
    .collect();
    // The same typed files inside archives: each member has its own type.
    let members: Vec<(String, Vec<u8>)> = files.clone();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    files.push((
        "typed.zip".into(),
        zip_of(&refs[1..4], zip::CompressionMethod::Deflated),
    ));
    files.push(("typed.tar.gz".into(), gzip(&tar_of(&refs[8..12]))));
    // The archive's own type is not its members'.
    files.push((
        "pdf-in.zip".into(),
        zip_of(&refs[11..12], zip::CompressionMethod::Stored),
    ));

    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    let mut ndb = String::new();
    for t in 0..15 {
        ndb.push_str(&format!("Typed.T{t}:{t}:*:{}\n", hex(mark)));
    }
    std::fs::write(db.join("t.ndb"), ndb).expect("ndb");
    std::fs::write(
        db.join("t.ldb"),
        format!(
            "Typed.Ldb.Pdf;Engine:51-255,Target:10;0;{}\nTyped.Ldb.Elf;Engine:51-255,Target:6;0;{}\n",
            hex(mark),
            hex(mark)
        ),
    )
    .expect("ldb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb"), db.join("t.ldb")], &files, false);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(
        theirs
            .get("mz.exe")
            .is_some_and(|s| s.contains("Typed.T1.UNOFFICIAL")),
        "clamscan applies target 1 to an MZ file: {theirs:?}"
    );
    assert_eq!(ours, theirs);
}

/// Mail as `clamscan` opens it: multipart nested two deep, base64,
/// quoted-printable (the mark split by a soft line break, so only the
/// decoded text has it), uuencode in a plain body, a message inside a
/// message, and an mbox of two messages.
#[test]
fn mail_as_clamscan_opens_it() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = b"GIVA-MAIL-BODY-MARK-0123456789";
    let mut body: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 241) as u8).collect();
    body[9_000..9_000 + mark.len()].copy_from_slice(mark);
    let hashed: Vec<u8> = (0..15_000u32)
        .map(|i| (i * 31 % 229) as u8 ^ 0x77)
        .collect();
    let b64 = |data: &[u8]| -> String {
        let t = common::base64(data);
        t.as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let head = "From: a@example.com\nTo: b@example.com\nSubject: test\nMIME-Version: 1.0\n";
    let multipart = format!(
        "{head}Content-Type: multipart/mixed; boundary=\"OUT\"\n\n--OUT\nContent-Type: text/plain\n\nhello\n--OUT\nContent-Type: application/octet-stream; name=\"b.bin\"\nContent-Transfer-Encoding: base64\n\n{}\n--OUT--\n",
        b64(&body)
    );
    let nested = format!(
        "{head}Content-Type: multipart/mixed; boundary=\"A\"\n\n--A\nContent-Type: multipart/alternative; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nplain\n--B\nContent-Type: application/octet-stream; name=\"h.bin\"\nContent-Transfer-Encoding: base64\n\n{}\n--B--\n--A--\n",
        b64(&hashed)
    );
    let text = String::from_utf8_lossy(mark);
    let qp = format!(
        "{head}Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nthe words {}=\n{} and more\n",
        &text[..12],
        &text[12..]
    );
    let uu = {
        let mut t = String::from(
            "From: a@example.com\nTo: b@example.com\nSubject: uu\n\nhere it is\nbegin 644 h.bin\n",
        );
        for chunk in hashed.chunks(45) {
            t.push((b' ' + chunk.len() as u8) as char);
            for g in chunk.chunks(3) {
                let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
                for v in [
                    b[0] >> 2,
                    ((b[0] & 3) << 4) | (b[1] >> 4),
                    ((b[1] & 15) << 2) | (b[2] >> 6),
                    b[2] & 63,
                ] {
                    t.push(if v == 0 { '`' } else { (b' ' + v) as char });
                }
            }
            t.push('\n');
        }
        t.push_str("`\nend\n");
        t
    };
    let inner = format!(
        "{head}Content-Type: multipart/mixed; boundary=\"OUT2\"\n\n--OUT2\nContent-Type: message/rfc822\n\n{multipart}\n--OUT2--\n"
    );
    let mbox = format!(
        "From a@example.com Mon Jan  1 00:00:00 2024\n{qp}\nFrom b@example.com Mon Jan  1 00:00:01 2024\n{nested}\n"
    );
    let files: Vec<(String, Vec<u8>)> = [
        ("multipart.eml", multipart),
        ("nested.eml", nested),
        ("qp.eml", qp),
        ("uu.eml", uu),
        ("inner.eml", inner),
        ("two.mbox", mbox),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t.into_bytes()))
    .collect();
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(db.join("t.ndb"), format!("Mail.Body:0:*:{}\n", hex(mark))).expect("ndb");
    std::fs::write(
        db.join("t.hsb"),
        format!(
            "{}:{}:Mail.Hash\n",
            hex(&sha2::Sha256::digest(&hashed)),
            hashed.len()
        ),
    )
    .expect("hsb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb"), db.join("t.hsb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(theirs.len() >= 5, "too few clamscan detections: {theirs:?}");
    assert_eq!(ours, theirs);
}

/// A PDF of `streams` (each a dictionary's extra entries and its bytes),
/// with a catalog, as a test helper writes one.
fn pdf_of(streams: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    for (i, (dict, data)) in streams.iter().enumerate() {
        out.extend_from_slice(
            format!(
                "{} 0 obj\n<< /Length {} {dict} >>\nstream\n",
                i + 2,
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    }
    out.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    out
}

/// PDF's LZW of `data`: literal codes only, the table cleared before the
/// codes grow past 9 bits.
fn lzw_of(data: &[u8]) -> Vec<u8> {
    let mut codes = vec![256u32];
    for (i, &b) in data.iter().enumerate() {
        if i > 0 && i % 200 == 0 {
            codes.push(256);
        }
        codes.push(u32::from(b));
    }
    codes.push(257);
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u64, 0u32);
    for c in codes {
        acc = (acc << 9) | u64::from(c);
        bits += 9;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8);
    }
    out
}

/// PDFs with each filter, a chain of two, an embedded file, and (with
/// qpdf) encryption with an empty user password in RC4 and AES, against
/// `clamscan` in its default mode: the same detections. One behind a real
/// user password is reported encrypted.
#[test]
fn pdf_streams_as_clamscan_decodes_them() {
    use std::io::Write;
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = b"GIVA-PDF-BODY-MARK-0123456789";
    let mut body: Vec<u8> = (0..6_000u32).map(|i| (i * 13 % 241) as u8).collect();
    body[3_000..3_000 + mark.len()].copy_from_slice(mark);
    let hashed: Vec<u8> = (0..5_000u32).map(|i| (i * 31 % 229) as u8 ^ 0x77).collect();
    let flate = |data: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).expect("zlib");
        z.finish().expect("zlib")
    };
    let ahx = |data: &[u8]| format!("{}>", hex(data)).into_bytes();
    let a85 = |data: &[u8]| {
        let mut out = Vec::new();
        for c in data.chunks(4) {
            let mut g = [0u8; 4];
            g[..c.len()].copy_from_slice(c);
            let mut v = u32::from_be_bytes(g);
            let mut five = [0u8; 5];
            for d in five.iter_mut().rev() {
                *d = (v % 85) as u8 + b'!';
                v /= 85;
            }
            out.extend_from_slice(&five[..c.len() + 1]);
        }
        out.extend_from_slice(b"~>");
        out
    };
    let rl = |data: &[u8]| {
        let mut out = Vec::new();
        for c in data.chunks(128) {
            out.push((c.len() - 1) as u8);
            out.extend_from_slice(c);
        }
        out.push(128);
        out
    };
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "flate.pdf",
            pdf_of(&[("/Filter /FlateDecode", flate(&body))]),
        ),
        (
            "ahx.pdf",
            pdf_of(&[("/Filter /ASCIIHexDecode", ahx(&body))]),
        ),
        ("a85.pdf", pdf_of(&[("/Filter /ASCII85Decode", a85(&body))])),
        ("lzw.pdf", pdf_of(&[("/Filter /LZWDecode", lzw_of(&body))])),
        ("rl.pdf", pdf_of(&[("/Filter /RunLengthDecode", rl(&body))])),
        (
            "chain.pdf",
            pdf_of(&[("/Filter [/ASCII85Decode /FlateDecode]", a85(&flate(&body)))]),
        ),
        (
            "lzw-chain.pdf",
            pdf_of(&[("/Filter [/FlateDecode /LZWDecode]", flate(&lzw_of(&body)))]),
        ),
        (
            "embedded.pdf",
            pdf_of(&[
                ("/Type /EmbeddedFile /Filter /FlateDecode", flate(&hashed)),
                ("", b"nothing here".to_vec()),
            ]),
        ),
        (
            "clean.pdf",
            pdf_of(&[("/Filter /FlateDecode", flate(b"clean words"))]),
        ),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b))
    .collect();
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(db.join("t.ndb"), format!("Pdf.Body:0:*:{}\n", hex(mark))).expect("ndb");
    std::fs::write(
        db.join("t.hsb"),
        format!(
            "{}:{}:Pdf.Hash\n",
            hex(&sha2::Sha256::digest(&hashed)),
            hashed.len()
        ),
    )
    .expect("hsb");
    let mut files = files;
    // Encrypted with an empty user password, by qpdf: RC4 (revisions 2
    // and 3), AES-128 (4) and AES-256 (6); both tools open them.
    if have("qpdf") {
        let src = d.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(
            src.join("in.pdf"),
            pdf_of(&[("/Filter /FlateDecode", flate(&body))]),
        )
        .expect("write");
        for (name, args) in [
            ("rc4-40.pdf", "--allow-weak-crypto --encrypt '' owner 40 --"),
            (
                "rc4-128.pdf",
                "--allow-weak-crypto --encrypt '' owner 128 --use-aes=n --",
            ),
            ("aes-128.pdf", "--encrypt '' owner 128 --use-aes=y --"),
            ("aes-256.pdf", "--encrypt '' owner 256 --"),
        ] {
            let ok = Command::new("sh")
                .args([
                    "-c",
                    &format!("qpdf {args} in.pdf out.pdf >/dev/null 2>&1; test -s out.pdf"),
                ])
                .current_dir(&src)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "qpdf {args}");
            files.push((
                name.into(),
                std::fs::read(src.join("out.pdf")).expect("read"),
            ));
            std::fs::remove_file(src.join("out.pdf")).expect("rm");
        }
    }
    let theirs = clamscan_found(&db, d, &files);
    let mut ours = giva_found(&[db.join("t.ndb"), db.join("t.hsb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(theirs.len() >= 7, "too few clamscan detections: {theirs:?}");
    // clamscan decodes LZW (lzw-chain.pdf) but does not extract an object
    // whose only filter is LZWDecode, so it misses lzw.pdf: giva decodes
    // it as the PDF specification says (docs/clamav-formats.md §17).
    assert!(!theirs.contains_key("lzw.pdf"), "{theirs:?}");
    assert_eq!(
        ours.remove("lzw.pdf")
            .map(|s| s.into_iter().collect::<Vec<_>>()),
        Some(vec!["Pdf.Body.UNOFFICIAL".to_string()])
    );
    assert_eq!(ours, theirs);
    // Behind a real user password, neither tool can read the streams:
    // clamscan says OK, giva says encrypted (never clean).
    if have("qpdf") {
        let src = d.join("src");
        let ok = Command::new("sh")
            .args([
                "-c",
                // qpdf warns (exit 3) at the test's PDFs, which have no
                // cross-reference table; what counts is the file it writes.
                "qpdf --encrypt user owner 256 -- in.pdf locked.pdf >/dev/null 2>&1; test -s locked.pdf",
            ])
            .current_dir(&src)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "qpdf");
        let locked = std::fs::read(src.join("locked.pdf")).expect("read");
        let (_, engine) = Engine::load(&[db.join("t.ndb")]).expect("engine");
        let r = Decomposer::new(engine, ScanOptions::default(), Limits::default())
            .scan(&locked, "locked.pdf");
        assert_eq!(
            r.result.outcome,
            giva_engine::Outcome::LimitExceeded(giva_engine::Limit::Encrypted),
            "{r:?}"
        );
    }
}

/// MS-OVBA compression with literals only: flag bytes of zeros.
fn ovba_literal(data: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    for chunk in data.chunks(4096) {
        let mut body = Vec::new();
        for group in chunk.chunks(8) {
            body.push(0);
            body.extend_from_slice(group);
        }
        let header = 0xb000u16 | (body.len() as u16 + 2 - 3);
        out.extend_from_slice(&header.to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// A VBA project (`vbaProject.bin`) with one module of `source`, as Office
/// writes one: the `dir` stream's records, the module stream, and the
/// `_VBA_PROJECT` and `PROJECT` streams, in a compound file of `version`
/// (Office writes version 3, 512-byte sectors).
fn vba_project(version: cfb::Version, source: &str) -> Vec<u8> {
    use std::io::Write;
    let mut dir = Vec::new();
    let mut rec = |id: u16, data: &[u8]| {
        dir.extend_from_slice(&id.to_le_bytes());
        dir.extend_from_slice(&(data.len() as u32).to_le_bytes());
        dir.extend_from_slice(data);
    };
    rec(0x0001, &1u32.to_le_bytes()); // SYSKIND: win32
    rec(0x0002, &0x409u32.to_le_bytes()); // LCID
    rec(0x0014, &0x409u32.to_le_bytes()); // LCIDINVOKE
    rec(0x0003, &1252u16.to_le_bytes()); // CODEPAGE
    rec(0x0004, b"VBAProject"); // NAME
    rec(0x0005, b""); // DOCSTRING
    rec(0x0040, b"");
    rec(0x0006, b""); // HELPFILEPATH
    rec(0x003d, b"");
    rec(0x0007, &0u32.to_le_bytes()); // HELPCONTEXT
    rec(0x0008, &0u32.to_le_bytes()); // LIBFLAGS
    // VERSION: its size field says 4, and 6 bytes follow.
    dir.extend_from_slice(&0x0009u16.to_le_bytes());
    dir.extend_from_slice(&4u32.to_le_bytes());
    dir.extend_from_slice(&1u32.to_le_bytes());
    dir.extend_from_slice(&0u16.to_le_bytes());
    let mut rec = |id: u16, data: &[u8]| {
        dir.extend_from_slice(&id.to_le_bytes());
        dir.extend_from_slice(&(data.len() as u32).to_le_bytes());
        dir.extend_from_slice(data);
    };
    rec(0x000c, b""); // CONSTANTS
    rec(0x003c, b"");
    rec(0x000f, &1u16.to_le_bytes()); // MODULES: 1
    rec(0x0013, &0xffffu16.to_le_bytes()); // COOKIE
    rec(0x0019, b"Module1"); // MODULENAME
    rec(
        0x0047,
        &"Module1"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<_>>(),
    );
    rec(0x001a, b"Module1"); // STREAMNAME
    rec(
        0x0032,
        &"Module1"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<_>>(),
    );
    rec(0x001c, b""); // DOCSTRING
    rec(0x0048, b"");
    rec(0x0031, &0u32.to_le_bytes()); // OFFSET: the source starts at 0
    rec(0x001e, &0u32.to_le_bytes()); // HELPCONTEXT
    rec(0x002c, &0xffffu16.to_le_bytes()); // COOKIE
    rec(0x0021, b""); // TYPE: procedural
    rec(0x002b, b""); // end of module
    rec(0x0010, b""); // end of dir
    let mut f = cfb::CompoundFile::create_with_version(version, std::io::Cursor::new(Vec::new()))
        .expect("cfb");
    f.create_storage("/VBA").expect("storage");
    let mut put = |path: &str, data: &[u8]| {
        let mut s = f.create_stream(path).expect("stream");
        s.write_all(data).expect("write");
    };
    put("/VBA/dir", &ovba_literal(&dir));
    put("/VBA/Module1", &ovba_literal(source.as_bytes()));
    put(
        "/VBA/_VBA_PROJECT",
        &[0xcc, 0x61, 0xff, 0xff, 0x00, 0x00, 0x00],
    );
    put(
        "/PROJECT",
        b"ID=\"{00000000-0000-0000-0000-000000000000}\"\r\nModule=Module1\r\nName=\"VBAProject\"\r\n",
    );
    f.flush().expect("flush");
    f.into_inner().into_inner()
}

/// A VBA macro, in a bare `vbaProject.bin` and in an OOXML document,
/// against `clamscan` in its default mode: a body signature on words of
/// its source finds it only once the source is decompressed.
#[test]
fn vba_macros_as_clamscan_extracts_them() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = "GivaMacroMark0123456789";
    let source = format!(
        "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n    MsgBox \"{mark}\"\r\nEnd Sub\r\n"
    );
    let bin = vba_project(cfb::Version::V3, &source);
    let v4 = vba_project(cfb::Version::V4, &source);
    let clean = vba_project(
        cfb::Version::V3,
        "Attribute VB_Name = \"Module1\"\r\nSub Nothing()\r\nEnd Sub\r\n",
    );
    let docm = zip_of(
        &[
            ("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>"),
            ("word/document.xml", b"<?xml version=\"1.0\"?><w:document/>"),
            ("word/vbaProject.bin", &bin),
        ],
        zip::CompressionMethod::Deflated,
    );
    let files: Vec<(String, Vec<u8>)> = vec![
        ("vbaProject.bin".to_string(), bin),
        ("clean.bin".to_string(), clean),
        ("macro.docm".to_string(), docm),
        ("v4.bin".to_string(), v4),
    ];
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(
        db.join("t.ndb"),
        format!("Vba.Body:0:*:{}\n", hex(mark.as_bytes())),
    )
    .expect("ndb");
    let theirs = clamscan_found(&db, d, &files);
    let mut ours = giva_found(&[db.join("t.ndb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(theirs.len() >= 2, "clamscan found the macro: {theirs:?}");
    // clamscan walks only part of a version 4 compound file's directory
    // (4,096-byte sectors) and misses the project; giva reads it whole
    // (docs/clamav-formats.md §18).
    assert!(!theirs.contains_key("v4.bin"), "{theirs:?}");
    assert!(ours.remove("v4.bin").is_some());
    assert_eq!(ours, theirs);
}

/// Text as `clamscan` scans it twice: target-7 signatures and target-0
/// ones against the normalized text (case, spaces, bytes dropped), target-0
/// ones against the bytes too; in ASCII, UTF-8, Latin-1 and UTF-16 files,
/// inside a zip, and not in binary data.
#[test]
fn text_is_normalized_as_clamscan_normalizes_it() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let line = "Some words, then:  Hello   WORLD\tFoo\r\nand the end.\n";
    let utf16 = |le: bool| -> Vec<u8> {
        let bom: &[u8] = if le { &[0xff, 0xfe] } else { &[0xfe, 0xff] };
        bom.iter()
            .copied()
            .chain(line.encode_utf16().flat_map(
                |u| {
                    if le { u.to_le_bytes() } else { u.to_be_bytes() }
                },
            ))
            .collect()
    };
    let mut binary: Vec<u8> = (0..2000u32).map(|i| (i % 256) as u8).collect();
    binary.extend_from_slice(line.as_bytes());
    let files: Vec<(String, Vec<u8>)> = vec![
        ("ascii.txt".into(), line.as_bytes().to_vec()),
        ("utf8.txt".into(), format!("Grüße. {line}").into_bytes()),
        (
            "latin1.txt".into(),
            [b"Gr\xfc\xdfe. ".as_slice(), line.as_bytes()].concat(),
        ),
        ("utf16le.txt".into(), utf16(true)),
        ("utf16be.txt".into(), utf16(false)),
        ("binary.bin".into(), binary),
        (
            "text.zip".into(),
            zip_of(
                &[("a.txt", line.as_bytes())],
                zip::CompressionMethod::Deflated,
            ),
        ),
        (
            "other.txt".into(),
            b"nothing of the kind in here\n".to_vec(),
        ),
    ];
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(
        db.join("t.ndb"),
        format!(
            "Text.T7:7:*:{}\nText.T0.Normalized:0:*:{}\nText.T0.Raw:0:*:{}\nText.T7.Upper:7:*:{}\n",
            hex(b"hello world foo and"),
            hex(b"hello world foo and"),
            hex(b"Hello   WORLD"),
            hex(b"Hello"),
        ),
    )
    .expect("ndb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(
        theirs
            .get("ascii.txt")
            .is_some_and(|s| s.contains("Text.T7.UNOFFICIAL")),
        "{theirs:?}"
    );
    assert_eq!(ours, theirs);
}

/// Mail for target-4 signatures: a file is mail when it starts with one
/// of the header names `clamscan` types it by (case and the space after
/// the colon count) or an mbox `From ` line; messages that start with
/// other headers are not, though both open them. A message in a zip is
/// mail of its own; one attached to a message is not (ClamAV parses it in
/// place).
#[test]
fn mail_is_typed_for_target_4_as_in_clamscan() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = "GivaMailMark0123456789";
    let mut files: Vec<(String, Vec<u8>)> = [
        "From: a@example.com\nTo: b@example.com\n",
        "From someone@example.com Tue Jan  1 00:00:00 2000\nSubject: y\n",
        "Received: from x\nSubject: y\n",
        "Subject: y\n",
        "Return-Path: <a@b>\nTo: c\n",
        "Message-Id: <x@y>\nFrom: a@b\n",
        "Message-id: <x@y>\nFrom: a@b\n",
        "X-Original-To: a@b\nFrom: a@b\n",
        "X-Mailer: m\nFrom: a@b\n",
        "Sender: a@b\nFrom: a@b\n",
        "from: a@b\nto: c@d\n",
        "Subject:y\nFrom: a@b\n",
    ]
    .iter()
    .enumerate()
    .map(|(i, head)| {
        (
            format!("m{i:02}.eml"),
            format!("{head}\nbody {mark}\n").into_bytes(),
        )
    })
    .collect();
    let inner = format!("From: x@example.com\nSubject: {mark}\n\ninner\n");
    files.push((
        "attached.eml".into(),
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\n\
Content-Type: text/plain\n\nhi\n--B\nContent-Type: message/rfc822\n\n{inner}--B--\n"
        )
        .into_bytes(),
    ));
    files.push((
        "mail.zip".into(),
        zip_of(
            &[("in.eml", inner.as_bytes())],
            zip::CompressionMethod::Deflated,
        ),
    ));
    files.push((
        "words.txt".into(),
        format!("no header here {mark}\n").into_bytes(),
    ));
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(
        db.join("t.ndb"),
        format!(
            "Mail.T4:4:*:{}\nMail.T0:0:*:{}\n",
            hex(mark.as_bytes()),
            hex(mark.as_bytes())
        ),
    )
    .expect("ndb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb")], &files, false);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    let has = |file: &str, sig: &str| theirs.get(file).is_some_and(|s| s.contains(sig));
    assert!(has("m00.eml", "Mail.T4.UNOFFICIAL"), "{theirs:?}");
    assert!(has("mail.zip", "Mail.T4.UNOFFICIAL"), "{theirs:?}");
    assert!(!has("attached.eml", "Mail.T4.UNOFFICIAL"), "{theirs:?}");
    assert_eq!(ours, theirs);
}

/// OneNote sections as `clamscan` opens them: each embedded file (found
/// by its FileDataStoreObject GUID) a member, alone and in a zip; a file
/// whose length runs past the section is not.
#[test]
fn onenote_as_clamscan_extracts_it() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let magic = [
        0xe4u8, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29, 0x96,
        0xd3,
    ];
    let guid = [
        0xe7u8, 0x16, 0xe3, 0xbd, 0x65, 0x26, 0x11, 0x45, 0xa4, 0xc4, 0x8d, 0x4d, 0x0b, 0x7a, 0x9e,
        0xac,
    ];
    let section = |files: &[&[u8]]| -> Vec<u8> {
        let mut s = magic.to_vec();
        s.resize(1024, 0);
        for f in files {
            s.extend_from_slice(&guid);
            s.extend_from_slice(&(f.len() as u64).to_le_bytes());
            s.extend_from_slice(&[0; 12]);
            s.extend_from_slice(f);
            s.resize(s.len().next_multiple_of(8), 0);
            s.extend_from_slice(&[0x22, 0xa7, 0xfb, 0x71, 0x79, 0x0f, 0x0b, 0x4a]);
            s.extend_from_slice(&[0xbb, 0x13, 0x89, 0x92, 0x56, 0x42, 0x6b, 0x24]);
        }
        s.extend_from_slice(&[0; 64]);
        s
    };
    let first: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 253) as u8).collect();
    let second: Vec<u8> = (0..9000u32).map(|i| (i * 11 % 239) as u8 ^ 0x5a).collect();
    let one = section(&[&first, &second]);
    let mut cut = section(&[&second]);
    cut[1024 + 16..1024 + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let files: Vec<(String, Vec<u8>)> = vec![
        ("notes.one".into(), one.clone()),
        (
            "notes.zip".into(),
            zip_of(&[("in/notes.one", &one)], zip::CompressionMethod::Deflated),
        ),
        ("cut.one".into(), cut),
    ];
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    let hsb = |name: &str, data: &[u8]| {
        format!(
            "{}:{}:{name}\n",
            hex(&sha2::Sha256::digest(data)),
            data.len()
        )
    };
    std::fs::write(
        db.join("t.hsb"),
        [hsb("One.First", &first), hsb("One.Second", &second)].concat(),
    )
    .expect("hsb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.hsb")], &files, false);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    assert!(
        theirs
            .get("notes.one")
            .is_some_and(|s| s.contains("One.Second.UNOFFICIAL")),
        "{theirs:?}"
    );
    assert_eq!(ours, theirs);
}

/// Normalized HTML (target 3): a page whose script hides its words in
/// character references, its text split by tags, spaces and a comment,
/// and a link; alone, in a zip, and as the HTML part of a mail; against
/// target-3 signatures cut from the normalized page, from its text, from
/// the link as written, from the comment (dropped) and from the raw bytes
/// (not normalized), and a target-0 signature on the normalized page.
/// The same text in a plain text file matches none of the target-3 ones.
#[test]
fn html_is_normalized_as_clamscan_normalizes_it() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let page = b"<html><head><TITLE>Offer</TITLE>\n<script language='JavaScript'>\n  \
var s = \"&#101;&#118;&#x61;&#108;\";  document.write(unescape('%3Cb%3E'));\n</script></head>\n\
<body bgcolor=\"#FFFFFF\"><p>Click   <b>HERE</b> &amp; win</p><!-- hidden EVIL -->\n\
<a href=\"http://Bad.Example/Path\">go</a></body></html>\n";
    let mail = format!(
        "From: a@example.com\nTo: b@example.com\nSubject: html\nMIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n\
plain words\n--B\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n{}\n--B--\n",
        common::base64(page)
    );
    let files: Vec<(String, Vec<u8>)> = vec![
        ("page.html".into(), page.to_vec()),
        (
            "page.zip".into(),
            zip_of(&[("in/page.html", page)], zip::CompressionMethod::Deflated),
        ),
        ("page.eml".into(), mail.into_bytes()),
        (
            "words.txt".into(),
            b"Click HERE win, said http://Bad.Example/Path\n".to_vec(),
        ),
    ];
    let sigs: &[(&str, u8, &[u8])] = &[
        (
            "Html.Script",
            3,
            b"vars=\"eval\";document.write(unescape(\"%3cb%3e\"));",
        ),
        ("Html.Text", 3, b"click here win"),
        ("Html.Link", 3, b"http://Bad.Example/Path"),
        ("Html.Comment", 3, b"hidden evil"),
        ("Html.Raw", 3, b"Click   <b>HERE"),
        ("Html.Any", 0, b"<p>click <b>here</b>& win</p><a href="),
    ];
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    let ndb: String = sigs
        .iter()
        .map(|(name, target, pattern)| format!("{name}:{target}:*:{}\n", hex(pattern)))
        .collect();
    std::fs::write(db.join("t.ndb"), ndb).expect("ndb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb")], &files, true);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    for name in ["Html.Script", "Html.Text", "Html.Link", "Html.Any"] {
        assert!(
            theirs
                .get("page.html")
                .is_some_and(|s| s.contains(&format!("{name}.UNOFFICIAL"))),
            "{name}: {theirs:?}"
        );
    }
    assert_eq!(ours, theirs);
}

/// A known divergence: `clamscan` scans an HTML file only through its HTML
/// normalizer, which folds case, so a case-sensitive target-0 signature in
/// the page's bytes is not found; giva scans the page's bytes as well as
/// its normalized forms, and finds it (docs/clamav-formats.md §18).
#[test]
fn html_bytes_are_scanned_where_clamscan_scans_them_case_folded() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = b"GivaRawMarkXyzAbc";
    let page = [
        b"<html><body><p>text ".as_slice(),
        mark,
        b" more</p></body></html>\n",
    ]
    .concat();
    let files = vec![("page.html".to_string(), page)];
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(db.join("t.ndb"), format!("Html.Raw:0:*:{}\n", hex(mark))).expect("ndb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ndb")], &files, true);
    assert!(theirs.is_empty(), "{theirs:?}");
    assert!(ours.contains_key("page.html"), "{ours:?}");
}

/// `Container:` in logical signatures as `clamscan` reads it: the type of
/// the layer that holds the one scanned, `CL_TYPE_ANY` for a file of its
/// own, the type a normalized text's file has, a carried PE's host's
/// `CL_TYPE_MSEXE`. One marker in a file alone, in a zip, a tar.gz, a
/// gzip, a mail attachment, and `clam.exe` carried by `clam.exe`.
#[test]
fn container_keys_as_clamscan_reads_them() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mark = b"GivaContainerMark-0123456789";
    let mut inner: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    inner[1000..1000 + mark.len()].copy_from_slice(mark);
    let mail = format!(
        "From: a@example.com\nTo: b@example.com\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nhi\n--B\n\
Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}\n--B--\n",
        common::base64(&inner)
    );
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("alone.bin".into(), inner.clone()),
        (
            "in.zip".into(),
            zip_of(&[("a.bin", &inner)], zip::CompressionMethod::Deflated),
        ),
        ("in.tar.gz".into(), gzip(&tar_of(&[("a.bin", &inner)]))),
        ("in.gz".into(), gzip(&inner)),
        ("in.eml".into(), mail.into_bytes()),
        (
            "zip-in.zip".into(),
            zip_of(
                &[(
                    "z.zip",
                    &zip_of(&[("a.bin", &inner)], zip::CompressionMethod::Stored),
                )],
                zip::CompressionMethod::Deflated,
            ),
        ),
    ];
    let mut sigs = String::new();
    let m = hex(mark);
    for (name, ty) in [
        ("Any", "CL_TYPE_ANY"),
        ("Zip", "CL_TYPE_ZIP"),
        ("Gz", "CL_TYPE_GZ"),
        ("Tar", "CL_TYPE_POSIX_TAR"),
        ("Mail", "CL_TYPE_MAIL"),
        ("Exe", "CL_TYPE_MSEXE"),
        ("Unknown", "CL_TYPE_NO_SUCH_TYPE"),
    ] {
        sigs.push_str(&format!(
            "C.{name};Engine:81-255,Container:{ty},Target:0;0;{m}\n"
        ));
    }
    if let Ok(clam) = std::fs::read("/usr/share/clamav-testfiles/clam.exe") {
        // `KERNEL32.DLL\0\0Ex` in clam.exe, itself and carried.
        let k = "4b45524e454c33322e444c4c00004578";
        sigs.push_str(&format!(
            "K.Any;Engine:81-255,Container:CL_TYPE_ANY,Target:1;0;{k}\n\
K.Exe;Engine:81-255,Container:CL_TYPE_MSEXE,Target:1;0;{k}\n"
        ));
        let mut dropper = clam.clone();
        dropper.extend_from_slice(&[0u8; 1000]);
        dropper.extend_from_slice(&clam);
        files.push(("dropper.exe".into(), dropper));
    }
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(db.join("t.ldb"), &sigs).expect("ldb");
    let theirs = clamscan_found(&db, d, &files);
    let ours = giva_found(&[db.join("t.ldb")], &files, false);
    println!("clamscan: {theirs:#?}\ngiva: {ours:#?}");
    let has = |file: &str, sig: &str| ours.get(file).is_some_and(|s| s.contains(sig));
    assert!(has("alone.bin", "C.Any.UNOFFICIAL"), "{ours:?}");
    assert!(has("in.zip", "C.Zip.UNOFFICIAL"), "{ours:?}");
    assert_eq!(ours, theirs);
}
