//! Property tests: the engine against the naive reference matcher, and
//! chunked streaming against whole-buffer scans.

mod generator;

use generator::{ALPHA, Case, Rng, case, plant};
use giva_engine::{Engine, ScanOptions, reference};
use giva_signatures::{BodyPattern, Database, EXT_ENGINE};
use proptest::prelude::*;

fn chunked(
    engine: &Engine,
    data: &[u8],
    opts: &ScanOptions,
    seed: u64,
    known: bool,
) -> giva_engine::ScanResult {
    let r = &mut Rng(seed | 1);
    let mut s = engine.scanner(opts.clone());
    s.reset(known.then_some(data.len() as u64));
    let mut rest = data;
    while !rest.is_empty() {
        let cap = if r.chance(50) { 4 } else { 40 };
        let n = (1 + r.below(cap)) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        s.feed(a);
        rest = b;
    }
    s.finish()
}

fn check(seed: u64) {
    let Case { db, data } = case(seed);
    let engine = Engine::new(&db).expect("build");
    let all = ScanOptions {
        all_match: true,
        ..Default::default()
    };
    let expected = reference::scan(&db, &data);
    let got = engine.scan_bytes(&data, &all);
    assert_eq!(
        got.detections,
        expected,
        "seed {seed}: engine vs reference\ndata {data:?}\ndb {:#?}\n{:#?}",
        db.body_signatures(),
        db.logical_signatures()
    );
    // Stored in the database file and loaded back, it is the same engine.
    let blob = engine.to_blob().expect("engine serializes");
    let file = db.with_extension(EXT_ENGINE, &blob).expect("extension");
    let back = Database::from_bytes(&file.to_bytes()).expect("reloads");
    let stored = Engine::new(&back).expect("stored engine loads");
    assert!(stored.is_from_blob(), "seed {seed}: stored engine not used");
    assert_eq!(
        stored.scan_bytes(&data, &all),
        got,
        "seed {seed}: stored engine"
    );
    // A reused scanner (after another input, and after an abandoned one)
    // gives the same result as a fresh one.
    let mut s = engine.scanner(all.clone());
    let rev: Vec<u8> = data.iter().rev().copied().collect();
    s.reset(None);
    s.feed(&rev);
    let _ = s.finish();
    s.reset(None);
    s.feed(&rev[..rev.len() / 2]);
    s.reset(Some(data.len() as u64));
    s.feed(&data);
    assert_eq!(s.finish(), got, "seed {seed}: reused scanner");
    for k in 0..3 {
        let c = chunked(&engine, &data, &all, seed.wrapping_add(k), k % 2 == 0);
        assert_eq!(c, got, "seed {seed}: chunked (k={k}) vs whole");
    }
    let first = engine.scan_bytes(&data, &ScanOptions::default());
    assert_eq!(
        first.detections.is_empty(),
        expected.is_empty(),
        "seed {seed}: first-match"
    );
    if let Some(d) = first.detections.first() {
        assert!(
            expected.contains(d),
            "seed {seed}: first-match detection {d:?} not in {expected:?}"
        );
    }
    let c = chunked(&engine, &data, &ScanOptions::default(), seed ^ 0xabc, false);
    assert_eq!(c, first, "seed {seed}: chunked first-match vs whole");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000),
        ..ProptestConfig::default()
    })]
    #[test]
    fn engine_matches_reference(seed in any::<u64>()) {
        check(seed);
    }
}

/// The generator must produce a healthy share of detections, or the
/// comparison above proves little.
#[test]
fn generator_plants_matches() {
    let (mut hit, mut total, mut logical) = (0, 0, 0);
    for seed in 0..2000u64 {
        let Case { db, data } = case(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let d = reference::scan(&db, &data);
        total += 1;
        hit += usize::from(!d.is_empty());
        logical += d
            .iter()
            .filter(|d| d.kind == giva_engine::DetectionKind::Logical)
            .count();
    }
    eprintln!("{hit}/{total} cases with detections, {logical} logical detections");
    assert!(hit * 3 > total, "{hit}/{total}");
    assert!(logical > 50, "{logical}");
}

/// Inputs longer than the engine's internal 16 KiB verification blocks,
/// with matches planted around block boundaries.
#[test]
fn large_inputs_cross_blocks() {
    for seed in 1..=12u64 {
        let Case { db, data: _ } = case(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let r = &mut Rng(seed | 1);
        let mut data: Vec<u8> = (0..40_000).map(|_| r.pick(ALPHA)).collect();
        let pats: Vec<BodyPattern> = db
            .body_signatures()
            .iter()
            .map(|s| s.pattern.clone())
            .chain(
                db.logical_signatures()
                    .iter()
                    .flat_map(|l| l.subsigs.iter().flat_map(|s| s.variants.clone())),
            )
            .collect();
        for p in &pats {
            for at in [16_370usize, 16_384, 32_760, 39_990, 5] {
                let mut bytes = Vec::new();
                plant(p, r, &mut bytes);
                let end = (at + bytes.len()).min(data.len());
                data.splice(at..end, bytes);
            }
        }
        let engine = Engine::new(&db).expect("build");
        let all = ScanOptions {
            all_match: true,
            ..Default::default()
        };
        let expected = reference::scan(&db, &data);
        let got = engine.scan_bytes(&data, &all);
        assert_eq!(got.detections, expected, "seed {seed}");
        for k in 0..2 {
            assert_eq!(
                chunked(&engine, &data, &all, seed + k, k == 0),
                got,
                "seed {seed} chunked"
            );
        }
    }
}
