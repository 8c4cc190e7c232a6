//! Scanner behaviour that the table cannot express: limits, early stop,
//! reuse, the 5-byte rule with hashes, file access paths, and the traits
//! the appliance relies on.

use std::time::Duration;

use giva_engine::{
    DetectionKind, Engine, Feed, IdleScanners, Limit, Outcome, ScanOptions, ScanResult, Scanner,
};
use giva_signatures::{
    BodyPattern, BodySignature, Database, DatabaseInfo, Gap, HashAlgo, HashEntry, Offset, Part,
    Token,
};
use md5::Digest;

fn lit(b: &[u8]) -> Part {
    Part {
        tokens: b
            .iter()
            .map(|&value| Token::Byte { value, mask: 0xff })
            .collect(),
    }
}

fn body(name: &str, offset: Offset, parts: Vec<Part>, gaps: Vec<Gap>) -> BodySignature {
    BodySignature {
        name: name.into(),
        target: 0,
        offset,
        pattern: BodyPattern {
            parts,
            gaps,
            left_anchor: None,
            right_anchor: None,
            start_assertion: None,
            end_assertion: None,
        },
    }
}

fn db(body: Vec<BodySignature>, hashes: Vec<HashEntry>) -> Database {
    Database::from_parts(DatabaseInfo::default(), body, vec![], hashes, vec![])
}

fn engine(body: Vec<BodySignature>, hashes: Vec<HashEntry>) -> Engine {
    Engine::new(&db(body, hashes)).expect("engine")
}

fn md5(data: &[u8]) -> Vec<u8> {
    md5::Md5::digest(data).to_vec()
}

#[test]
fn engine_and_scanner_are_shareable() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<Engine>();
    send::<Scanner>();
}

#[test]
fn five_bytes_are_never_scanned_even_for_hashes() {
    let data = b"abcde";
    let e = engine(
        vec![body("B", Offset::Any, vec![lit(b"bcd")], vec![])],
        vec![HashEntry {
            scope: giva_signatures::HashScope::File,
            algo: HashAlgo::Md5,
            digest: md5(data),
            size: Some(5),
            name: "H".into(),
        }],
    );
    let r = e.scan_bytes(data, &ScanOptions::default());
    assert_eq!(r.outcome, Outcome::TooSmall);
    assert!(r.detections.is_empty());
    let r = e.scan_bytes(b"abcdef", &ScanOptions::default());
    assert_eq!(r.outcome, Outcome::Infected);
}

#[test]
fn byte_limit_is_never_clean() {
    let e = engine(
        vec![body("B", Offset::Any, vec![lit(b"needle")], vec![])],
        vec![],
    );
    let mut data = vec![0u8; 10_000];
    let opts = ScanOptions {
        max_scan_bytes: Some(1000),
        ..Default::default()
    };
    let r = e.scan_bytes(&data, &opts);
    assert_eq!(r.outcome, Outcome::LimitExceeded(Limit::ScanBytes));
    assert_eq!(r.bytes_scanned, 1000);
    // A detection before the limit is still reported.
    data[10..16].copy_from_slice(b"needle");
    let r = e.scan_bytes(&data, &opts);
    assert_eq!(r.outcome, Outcome::Infected);
    // Exactly at the limit: complete scan.
    let r = e.scan_bytes(&data[..1000], &opts);
    assert_eq!(r.outcome, Outcome::Infected);
    let r = e.scan_bytes(&[1u8; 1000], &opts);
    assert_eq!(r.outcome, Outcome::Clean);
}

#[test]
fn time_limit_is_never_clean() {
    let e = engine(
        vec![body("B", Offset::Any, vec![lit(b"needle")], vec![])],
        vec![],
    );
    let opts = ScanOptions {
        max_scan_time: Some(Duration::ZERO),
        ..Default::default()
    };
    let r = e.scan_bytes(&vec![7u8; 1 << 20], &opts);
    assert_eq!(r.outcome, Outcome::LimitExceeded(Limit::ScanTime));
}

#[test]
fn first_match_stops_early_only_when_certain() {
    let e = engine(
        vec![body("B", Offset::Any, vec![lit(b"needle")], vec![])],
        vec![],
    );
    let data = b"xxxxneedlexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let mut s = e.scanner(ScanOptions::default());
    s.reset(Some(1 << 20));
    assert_eq!(s.feed(data), Feed::Done);
    let r = s.finish();
    assert_eq!(r.outcome, Outcome::Infected);
    // No hash in the database: the size does not matter.
    s.reset(None);
    assert_eq!(s.feed(data), Feed::Done);
    // With hashes and an unknown size, the allow-list might still apply.
    let e2 = engine(
        vec![body("B", Offset::Any, vec![lit(b"needle")], vec![])],
        vec![HashEntry {
            scope: giva_signatures::HashScope::File,
            algo: HashAlgo::Md5,
            digest: md5(b"other"),
            size: Some(3),
            name: "H".into(),
        }],
    );
    let mut s2 = e2.scanner(ScanOptions::default());
    s2.reset(None);
    assert_eq!(s2.feed(data), Feed::Continue);
    s2.reset(Some(1 << 20));
    assert_eq!(s2.feed(data), Feed::Done);
    // In all-match mode, never early.
    let mut s = e.scanner(ScanOptions {
        all_match: true,
        ..Default::default()
    });
    s.reset(Some(1 << 20));
    assert_eq!(s.feed(data), Feed::Continue);
}

#[test]
fn hash_database_prevents_early_stop_and_wins_first_match() {
    let data = b"xxxxneedlexxxx";
    let e = engine(
        vec![body("B", Offset::Any, vec![lit(b"needle")], vec![])],
        vec![HashEntry {
            scope: giva_signatures::HashScope::File,
            algo: HashAlgo::Md5,
            digest: md5(data),
            size: None,
            name: "H".into(),
        }],
    );
    let mut s = e.scanner(ScanOptions::default());
    s.reset(Some(data.len() as u64));
    assert_eq!(s.feed(data), Feed::Continue);
    let r = s.finish();
    assert_eq!(r.detections.len(), 1);
    assert_eq!(r.detections[0].kind, DetectionKind::Hash);
    let all = e.scan_bytes(
        data,
        &ScanOptions {
            all_match: true,
            ..Default::default()
        },
    );
    assert_eq!(all.names(), ["H", "B"]);
}

#[test]
fn scanner_is_reusable() {
    let e = engine(
        vec![body(
            "B",
            Offset::Any,
            vec![lit(b"abc"), lit(b"xyz")],
            vec![Gap { min: 0, max: None }],
        )],
        vec![],
    );
    let mut s = e.scanner(ScanOptions::default());
    s.reset(None);
    s.feed(b"..abc....");
    // Abandon that input: the next one must not inherit the partial match.
    s.reset(None);
    s.feed(b"....xyz...");
    assert_eq!(s.finish().outcome, Outcome::Clean);
    s.reset(None);
    s.feed(b"..abc....");
    s.feed(b"....xyz...");
    assert_eq!(s.finish().outcome, Outcome::Infected);
}

#[test]
fn pooled_scanners_start_clean_take_new_options_and_stay_bounded() {
    let sigs = || {
        vec![
            body(
                "Split",
                Offset::Any,
                vec![lit(b"abc"), lit(b"xyz")],
                vec![Gap { min: 0, max: None }],
            ),
            body("One", Offset::Any, vec![lit(b"needle")], vec![]),
            body("Two", Offset::Any, vec![lit(b"haystack")], vec![]),
        ]
    };
    let e = engine(sigs(), vec![]);
    let pool = IdleScanners::new(e.clone(), 1);
    let all = ScanOptions {
        all_match: true,
        ..Default::default()
    };
    // An input abandoned halfway through a two-part match.
    let mut s = pool.take(ScanOptions::default(), None);
    s.feed(b"..abc....");
    pool.give(s);
    assert_eq!(pool.idle(), 1);
    // Taken again with other options: no inherited part, all matches.
    let mut s = pool.take(all.clone(), None);
    assert_eq!(pool.idle(), 0);
    s.feed(b"....xyz... needle haystack");
    let r = s.finish();
    assert_eq!(r.names(), ["One", "Two"]);
    assert_eq!(r, e.scan_bytes(b"....xyz... needle haystack", &all));
    // At most `keep` idle scanners.
    let (a, b) = (pool.take(all.clone(), None), pool.take(all.clone(), None));
    pool.give(a);
    pool.give(b);
    assert_eq!(pool.idle(), 1);
    // A scanner of another engine is not kept.
    let other = engine(sigs(), vec![]);
    let pool2 = IdleScanners::new(other, 4);
    pool2.give(e.scanner(all));
    assert_eq!(pool2.idle(), 0);
}

#[test]
fn large_files_map_and_read_alike() {
    // Past 4 MiB, so that a mapped file is scanned in more than one window,
    // with a match across the first seam.
    let len = (4 << 20) + 300_000;
    let mut data = vec![0x80u8; len];
    data[150_000..150_006].copy_from_slice(b"needle");
    data[(4 << 20) - 4..(4 << 20) + 4].copy_from_slice(b"seamseam");
    data[len - 10..].copy_from_slice(b"0123456789");
    let e = engine(
        vec![
            body("Mid", Offset::Any, vec![lit(b"needle")], vec![]),
            body("Seam", Offset::Any, vec![lit(b"seamseam")], vec![]),
            body(
                "Tail",
                Offset::FromEnd { back: 10, shift: 0 },
                vec![lit(b"0123456789")],
                vec![],
            ),
            body(
                "At",
                Offset::Absolute {
                    start: 150_000,
                    shift: 0,
                },
                vec![lit(b"needle")],
                vec![],
            ),
        ],
        vec![],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    std::fs::write(&path, &data).expect("write");
    let opts = ScanOptions {
        all_match: true,
        ..Default::default()
    };
    let whole: ScanResult = e.scan_bytes(&data, &opts);
    assert_eq!(whole.names(), ["Mid", "Seam", "Tail", "At"]);
    assert_eq!(e.scan_file(&path, &opts).expect("scan"), whole);
    // SAFETY: the test's own temporary file, which nothing changes.
    #[allow(unsafe_code)]
    let map = unsafe { giva_signatures::map::MappedFile::open(&path) }.expect("map");
    assert_eq!(e.scan_mapped(&map, &opts), whole);
    assert_eq!(e.scan_reader(&data[..], &opts).expect("reader"), whole);
}

#[test]
fn missing_file_is_an_error() {
    let e = engine(vec![], vec![]);
    let err = e.scan_file(
        std::path::Path::new("/nonexistent/giva"),
        &ScanOptions::default(),
    );
    assert!(matches!(err, Err(giva_engine::ScanError::Io { .. })));
}

#[test]
fn a_reused_scanner_finds_again_and_judges_untouched_logical_signatures_alike() {
    // `Absent` holds only while its subsignature does not match: its
    // verdict over all-zero counts is kept from the build, and must be
    // the one the expression gives.
    let mut c = giva_signatures::Compiler::new();
    c.add_source("t.ndb", "Needle:0:*:6e6565646c65\n", false);
    c.add_source(
        "t.ldb",
        "Absent;Engine:51-255,Target:0;0=0;6861797374\n\
         Both;Engine:51-255,Target:0;0&1;6e6565646c65;6861797374\n",
        false,
    );
    let db = c.build().expect("database builds");
    let e = Engine::build(&db).expect("engine builds");
    let pool = IdleScanners::new(e.clone(), 1);
    let all = ScanOptions {
        all_match: true,
        ..Default::default()
    };
    for (input, want) in [
        (&b"a needle"[..], &["Needle", "Absent"][..]),
        (b"a needle again", &["Needle", "Absent"]),
        (b"hayst and needle", &["Needle", "Both"]),
        (b"nothing here", &["Absent"]),
        (b"hayst!", &[]),
        (b"needle", &["Needle", "Absent"]),
    ] {
        let r = pool.scan_bytes(input, &all);
        let names: Vec<String> = want.iter().map(|n| format!("{n}.UNOFFICIAL")).collect();
        assert_eq!(r.names(), names, "{:?}", input.escape_ascii().to_string());
        assert_eq!(r, e.scan_bytes(input, &all));
    }
}
