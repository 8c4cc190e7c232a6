//! The compiled database file: round trips, and one test per way a file is
//! refused.

use giva_signatures::{Compiler, Database, EXT_ENGINE, HashAlgo, LoadError};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const NDB: &str = "\
Body.One:0:*:6161(62|63)6464{-5}6565*6666[1-3]67
Body.Two:0:EOF-10,4:(B)414243(W)4445!(4647|4849)(L)
";
const LDB: &str = "\
Logical.One;Engine:81-255,Target:0,FileSize:10-1000;((0|1)>2,1)&2=0;414243::iwfa;0:6162(63|(64|65))6667;EOF-5:7a7a7a
";
const HDB: &str = "\
44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature
62dd70f5e7530e0239901ac186f1f9ae39292561:544:Test.Sha1.Hash
71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495:544:ClamAV-Test-File
aa15bcf478d165efd2065190eb473bcb:*:Test.MD5.Hash.NoSize:73
";
const FP: &str = "aa15bcf478d165efd2065190eb473bcb:544:fp-entry\n";

fn sample() -> Database {
    let mut c = Compiler::new();
    c.add_source("a.ndb", NDB, false)
        .add_source("b.ldb", LDB, false)
        .add_source("c.hdb", HDB, false)
        .add_source("d.fp", FP, false)
        .add_source("e.cbc", "whatever", false);
    c.build().expect("sample compiles")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn reseal(b: &mut [u8]) {
    let sum = giva_signatures::db::layout::checksum(&b[56..]);
    b[24..56].copy_from_slice(&sum);
}

fn header_len(b: &[u8]) -> usize {
    u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize
}

#[test]
fn round_trip_through_a_file() {
    let db = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.givadb");
    db.write_to(&path).unwrap();
    let back = Database::open(&path).unwrap();
    assert!(back.is_mapped());
    assert_eq!(back.info(), db.info());
    assert_eq!(back.body_signatures(), db.body_signatures());
    assert_eq!(back.logical_signatures(), db.logical_signatures());
    assert_eq!(back.info().skipped.get("file:.cbc"), Some(&1));
    let md5 = hex("44d88612fea8a8f36de82e1278abb02f");
    for d in [&db, &back] {
        assert_eq!(
            d.lookup_hash(HashAlgo::Md5, &md5, 68).collect::<Vec<_>>(),
            vec!["Eicar-Test-Signature.UNOFFICIAL"]
        );
        assert_eq!(d.lookup_hash(HashAlgo::Md5, &md5, 69).count(), 0);
        let clam = hex("aa15bcf478d165efd2065190eb473bcb");
        assert_eq!(
            d.lookup_hash(HashAlgo::Md5, &clam, 12345)
                .collect::<Vec<_>>(),
            vec!["Test.MD5.Hash.NoSize.UNOFFICIAL"]
        );
        assert!(d.is_allowed(HashAlgo::Md5, &clam, 544));
        assert!(!d.is_allowed(HashAlgo::Md5, &clam, 545));
        assert!(d.needs_hash(HashAlgo::Md5, 1));
        assert!(d.needs_hash(HashAlgo::Sha1, 544));
        assert!(!d.needs_hash(HashAlgo::Sha1, 545));
        let sha256 = hex("71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495");
        assert_eq!(d.lookup_hash(HashAlgo::Sha256, &sha256, 544).count(), 1);
        assert_eq!(
            d.lookup_hash(HashAlgo::Sha256, &sha256[..5], 544).count(),
            0
        );
        assert_eq!(d.hash_counts(), (4, 1));
    }
    assert!(back.memory_estimate() > 0);
    // from_bytes gives the same.
    let again = Database::from_bytes(&db.to_bytes()).unwrap();
    assert_eq!(again.body_signatures(), db.body_signatures());
}

#[test]
fn many_hashes_open_and_lookup() {
    let mut text = String::new();
    for i in 0..50_000u32 {
        let d = Sha256::digest(i.to_le_bytes());
        let h: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("{h}:{}:N{i}\n", 100 + i % 1000));
    }
    let mut c = Compiler::new();
    c.add_source("big.hdb", &text, true);
    let db = c.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.givadb");
    db.write_to(&path).unwrap();
    let t = std::time::Instant::now();
    let back = Database::open(&path).unwrap();
    eprintln!("opened 50k hashes in {:?}", t.elapsed());
    for i in [0u32, 1, 49_999, 12_345] {
        let d = Sha256::digest(i.to_le_bytes());
        let names: Vec<_> = back
            .lookup_hash(HashAlgo::Md5, &d[..16], u64::from(100 + i % 1000))
            .collect();
        assert_eq!(names, vec![format!("N{i}")]);
    }
    assert!(back.needs_hash(HashAlgo::Md5, 100));
    assert!(!back.needs_hash(HashAlgo::Md5, 99));
    assert!(!back.needs_hash(HashAlgo::Sha256, 100));
}

#[test]
fn default_database_is_usable() {
    let db = Database::default();
    assert!(!db.needs_hash(HashAlgo::Md5, 1));
    let back = Database::from_bytes(&db.to_bytes()).unwrap();
    assert_eq!(back.body_signatures().len(), 0);
}

#[test]
fn rejects_bad_magic() {
    let mut b = sample().to_bytes();
    b[0] = b'X';
    assert!(matches!(Database::from_bytes(&b), Err(LoadError::BadMagic)));
}

#[test]
fn rejects_unsupported_version() {
    let mut b = sample().to_bytes();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::UnsupportedVersion { found: 99, .. })
    ));
}

#[test]
fn rejects_truncated_header() {
    let b = sample().to_bytes();
    assert!(matches!(
        Database::from_bytes(&b[..40]),
        Err(LoadError::TruncatedHeader { .. })
    ));
    assert!(matches!(
        Database::from_bytes(&b[..4]),
        Err(LoadError::TruncatedHeader { .. })
    ));
    assert!(matches!(
        Database::from_bytes(&[]),
        Err(LoadError::TruncatedHeader { .. })
    ));
}

#[test]
fn rejects_truncated_version_string() {
    let b = sample().to_bytes();
    let hl = header_len(&b);
    assert!(matches!(
        Database::from_bytes(&b[..hl - 1]),
        Err(LoadError::TruncatedHeader { .. })
    ));
}

#[test]
fn rejects_truncated_payload() {
    let b = sample().to_bytes();
    let e = Database::from_bytes(&b[..b.len() - 1]).unwrap_err();
    assert!(matches!(e, LoadError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().starts_with("truncated"), "{e}");
}

#[test]
fn rejects_trailing_garbage() {
    let mut b = sample().to_bytes();
    b.push(0);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::PayloadLength { .. })
    ));
}

#[test]
fn rejects_checksum_mismatch() {
    let mut b = sample().to_bytes();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::ChecksumMismatch)
    ));
}

#[test]
fn rejects_tampered_version_string() {
    let mut b = sample().to_bytes();
    b[HEADER_VERSION_AT] ^= 1;
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::ChecksumMismatch)
    ));
}
const HEADER_VERSION_AT: usize = 68;

#[test]
fn rejects_bad_header_length() {
    let mut b = sample().to_bytes();
    let hl = header_len(&b) as u32 + 1;
    b[12..16].copy_from_slice(&hl.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::Corrupt(_))
    ));
}

#[test]
fn rejects_section_out_of_bounds() {
    let mut b = sample().to_bytes();
    let p = header_len(&b);
    // First section entry's offset field.
    b[p + 4 + 8..p + 4 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut b);
    let e = Database::from_bytes(&b).unwrap_err();
    assert!(
        matches!(e, LoadError::Corrupt(ref m) if m.contains("overflows") || m.contains("outside")),
        "{e}"
    );
    let mut b = sample().to_bytes();
    b[p + 4 + 16..p + 4 + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::Corrupt(_))
    ));
}

#[test]
fn rejects_huge_section_count() {
    let mut b = sample().to_bytes();
    let p = header_len(&b);
    b[p..p + 4].copy_from_slice(&100_000u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::Corrupt(_))
    ));
}

fn find_section(b: &[u8], kind: u32) -> (usize, usize, usize) {
    let p = header_len(b);
    let n = u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
    for i in 0..n {
        let at = p + 4 + i * 24;
        if u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) == kind {
            let off = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(b[at + 16..at + 24].try_into().unwrap()) as usize;
            return (at, p + off, len);
        }
    }
    panic!("no section {kind}");
}

#[test]
fn rejects_missing_section() {
    let mut b = sample().to_bytes();
    let (entry, _, _) = find_section(&b, 40); // body
    b[entry..entry + 4].copy_from_slice(&999u32.to_le_bytes());
    reseal(&mut b);
    let e = Database::from_bytes(&b).unwrap_err();
    assert!(
        matches!(e, LoadError::Corrupt(ref m) if m.contains("missing body")),
        "{e}"
    );
}

#[test]
fn rejects_duplicate_section() {
    let mut b = sample().to_bytes();
    let (entry, _, _) = find_section(&b, 40);
    b[entry..entry + 4].copy_from_slice(&41u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::Corrupt(_))
    ));
}

#[test]
fn rejects_misaligned_hash_table() {
    let mut b = sample().to_bytes();
    let (entry, _, len) = find_section(&b, 10); // MD5 detections
    b[entry + 16..entry + 24].copy_from_slice(&((len - 1) as u64).to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::Corrupt(_))
    ));
}

#[test]
fn rejects_hash_names_that_do_not_fit_the_records() {
    let mut b = sample().to_bytes();
    let (entry, _, _) = find_section(&b, 30); // MD5 detection names
    b[entry + 16..entry + 24].copy_from_slice(&0u64.to_le_bytes());
    reseal(&mut b);
    let e = Database::from_bytes(&b).unwrap_err();
    assert!(
        matches!(e, LoadError::Corrupt(ref m) if m.contains("name section")),
        "{e}"
    );
}

#[test]
fn hash_names_share_prefixes_across_blocks_and_keep_every_name() {
    // Names with long shared prefixes, non-ASCII text, the .UNOFFICIAL
    // suffix on some, and several names for one digest and size: every
    // lookup gives exactly the names compiled, whichever name block of 32
    // they land in.
    let mut text = String::new();
    let mut expect = Vec::new();
    for i in 0..200u32 {
        let d = Sha256::digest(i.to_le_bytes());
        let h: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        let name = match i % 4 {
            0 => format!("Win.Trojan.Agent-{i}-0"),
            1 => format!("Win.Trojan.Agent-{}-1", i * 7),
            2 => format!("Doc.Ünïcode.Ωmega-{i}"),
            _ => format!("W{i}"),
        };
        let size = if i % 5 == 0 {
            "*".into()
        } else {
            format!("{}", 1000 + i % 7)
        };
        let flevel = if i % 5 == 0 { ":73" } else { "" };
        text.push_str(&format!("{h}:{size}:{name}{flevel}\n"));
        if i % 10 == 3 {
            text.push_str(&format!("{h}:{size}:{name}.Second{flevel}\n"));
        }
        expect.push((d, size, name, i % 10 == 3));
    }
    let mut c = Compiler::new();
    c.add_source("names.hdb", &text, false);
    c.add_source(
        "names2.hdb",
        "00000000000000000000000000000001:5:Plain.Official\n",
        true,
    );
    let db = Database::from_bytes(&c.build().unwrap().to_bytes()).unwrap();
    for (d, size, name, second) in expect {
        let any = size == "*";
        let size = size.parse::<u64>().unwrap_or(1_000_000);
        let mut got: Vec<String> = db
            .lookup_hash(HashAlgo::Md5, &d[..16], size)
            .map(|n| n.into_owned())
            .collect();
        got.sort();
        let mut want = vec![format!("{name}.UNOFFICIAL")];
        if second {
            want.push(format!("{name}.Second.UNOFFICIAL"));
        }
        want.sort();
        assert_eq!(got, want);
        let other_size = db.lookup_hash(HashAlgo::Md5, &d[..16], size + 1).count();
        assert_eq!(other_size > 0, any);
    }
    let one = hex("00000000000000000000000000000001");
    assert_eq!(
        db.lookup_hash(HashAlgo::Md5, &one, 5).collect::<Vec<_>>(),
        vec!["Plain.Official"]
    );
    assert!(
        db.needs_hash(HashAlgo::Md5, 123_456),
        "any-size records exist"
    );
}

#[test]
fn rejects_corrupt_signature_encoding() {
    let mut b = sample().to_bytes();
    let (_, start, _) = find_section(&b, 40);
    b[start] = 0x7f; // body count far larger than the section
    reseal(&mut b);
    // Body signatures decode on first use (an engine stored in the file
    // never needs them): the error comes from there, typed, not a panic.
    let db = Database::from_bytes(&b).expect("header and bounds are fine");
    assert!(matches!(
        db.try_body_signatures(),
        Err(LoadError::Section {
            section: "body",
            ..
        })
    ));
    assert!(db.body_signatures().is_empty());
}

#[test]
fn extension_sections_round_trip_and_are_checksummed() {
    let db = sample();
    assert!(db.extension(EXT_ENGINE).is_none());
    let with = db.with_extension(EXT_ENGINE, b"engine bytes").unwrap();
    let back = Database::from_bytes(&with.to_bytes()).unwrap();
    assert_eq!(back.extension(EXT_ENGINE), Some(&b"engine bytes"[..]));
    assert_eq!(back.body_signatures(), db.body_signatures());
    assert_eq!(back.body_count(), db.body_signatures().len());
    assert_eq!(back.version(), db.version());
    // Replacing keeps one section of the kind.
    let again = back.with_extension(EXT_ENGINE, b"v2").unwrap();
    assert_eq!(again.extension(EXT_ENGINE), Some(&b"v2"[..]));
    // Only extension kinds may be set this way.
    assert!(matches!(
        db.with_extension(40, b"x"),
        Err(LoadError::Corrupt(_))
    ));
    // A flipped byte in the extension fails the checksum.
    let mut b = with.to_bytes();
    let n = b.len();
    b[n - 1] ^= 1;
    assert!(matches!(
        Database::from_bytes(&b),
        Err(LoadError::ChecksumMismatch)
    ));
}

#[test]
fn checksum_covers_every_chunk_of_a_large_file() {
    use giva_signatures::db::layout::{CHECKSUM_CHUNK, checksum};
    let data: Vec<u8> = (0..3 * CHECKSUM_CHUNK + 17)
        .map(|i| (i * 31) as u8)
        .collect();
    let sum = checksum(&data);
    for at in [
        0,
        CHECKSUM_CHUNK - 1,
        CHECKSUM_CHUNK,
        2 * CHECKSUM_CHUNK + 5,
        data.len() - 1,
    ] {
        let mut d = data.clone();
        d[at] ^= 0x80;
        assert_ne!(checksum(&d), sum, "flip at {at}");
    }
    // Truncating at a chunk boundary changes it too (the length is hashed).
    assert_ne!(
        checksum(&data[..CHECKSUM_CHUNK]),
        checksum(&data[..2 * CHECKSUM_CHUNK])
    );
    assert_eq!(checksum(&data), sum, "deterministic across threads");
}

#[test]
fn rejects_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Database::open(dir.path().join("nope")),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn rejects_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        Database::open(&p),
        Err(LoadError::TruncatedHeader { .. })
    ));
}

#[test]
fn load_dispatches_on_magic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db.bin");
    sample().write_to(&p).unwrap();
    let db = giva_signatures::load(&[&p]).unwrap();
    assert!(db.is_mapped());
    let t = dir.path().join("x.ndb");
    std::fs::write(&t, NDB).unwrap();
    let db = giva_signatures::load(&[&t]).unwrap();
    assert_eq!(db.body_signatures().len(), 2);
    assert!(giva_signatures::load(&[] as &[&std::path::Path]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Any corruption of the payload, even with a valid checksum, is refused
    /// or loads; it never panics.
    #[test]
    fn corrupted_files_never_panic(pos in 0usize..10_000, val: u8, cut in 0usize..10_000) {
        let mut b = sample().to_bytes();
        let p = 56 + pos % (b.len() - 56);
        b[p] = val;
        reseal(&mut b);
        let _ = Database::from_bytes(&b);
        let c = cut % b.len();
        let _ = Database::from_bytes(&b[..c]);
    }
}

/// `cargo test -p giva-signatures --release -- --ignored million` prints how
/// long a database of one million MD5 hashes takes to open (checksum
/// included) and to look up.
#[test]
#[ignore = "slow in debug builds; run with --release"]
fn million_hashes_open_time() {
    let mut hashes = Vec::with_capacity(1_000_000);
    for i in 0..1_000_000u32 {
        let d = Sha256::digest(i.to_le_bytes());
        hashes.push(giva_signatures::HashEntry {
            scope: giva_signatures::HashScope::File,
            algo: HashAlgo::Md5,
            digest: d[..16].to_vec(),
            size: Some(u64::from(100 + i % 5000)),
            name: format!("Test.Hash-{i}"),
        });
    }
    let db = Database::from_parts(Default::default(), vec![], vec![], hashes, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.givadb");
    db.write_to(&path).unwrap();
    let t = std::time::Instant::now();
    let back = Database::open(&path).unwrap();
    let opened = t.elapsed();
    let t = std::time::Instant::now();
    let mut found = 0;
    for i in (0..1_000_000u32).step_by(1000) {
        let d = Sha256::digest(i.to_le_bytes());
        found += back
            .lookup_hash(HashAlgo::Md5, &d[..16], u64::from(100 + i % 5000))
            .count();
    }
    println!(
        "1M hashes: file {} bytes, open {opened:?}, 1000 lookups {:?}",
        std::fs::metadata(&path).unwrap().len(),
        t.elapsed()
    );
    assert_eq!(found, 1000);
}
