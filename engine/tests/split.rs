//! Split scans on the pool give exactly the result of a sequential scan:
//! random databases (bounded and unbounded gaps, anchors, assertions,
//! absolute and end-of-file offsets, logical signatures with counts,
//! hashes and the allow-list), random inputs with planted matches, random
//! segment sizes down to one byte, in first-match and all-match modes.

mod generator;

use std::sync::Arc;
use std::time::Duration;

use generator::{ALPHA, Rng, case, digest_of, plant};
use giva_engine::pool::{PoolConfig, Priority, ScanPool, SplitConfig};
use giva_engine::{Engine, Limit, Outcome, ScanOptions, ScanResult, reference};
use giva_signatures::{BodyPattern, Database, DatabaseInfo, HashAlgo, HashEntry};
use proptest::prelude::*;

/// A database from the shared generator and a longer input with every
/// pattern planted a few times.
fn big_case(seed: u64) -> (Database, Vec<u8>) {
    let c = case(seed);
    let r = &mut Rng(seed.rotate_left(17) | 1);
    let len = 6 + r.below(1500) as usize;
    let mut data: Vec<u8> = (0..len).map(|_| r.pick(ALPHA)).collect();
    let pats: Vec<BodyPattern> =
        c.db.body_signatures()
            .iter()
            .map(|s| s.pattern.clone())
            .chain(
                c.db.logical_signatures()
                    .iter()
                    .flat_map(|l| l.subsigs.iter().flat_map(|s| s.variants.clone())),
            )
            .collect();
    for p in &pats {
        for _ in 0..r.below(6) {
            plant(p, r, &mut data);
        }
    }
    let mut hashes = Vec::new();
    let mut allow = Vec::new();
    if r.chance(25) {
        let algo = r.pick(&HashAlgo::ALL);
        let e = HashEntry {
            scope: giva_signatures::HashScope::File,
            algo,
            digest: digest_of(algo, &data),
            size: r.chance(50).then_some(data.len() as u64),
            name: "H".into(),
        };
        if r.chance(30) {
            allow.push(e);
        } else {
            hashes.push(e);
        }
    }
    let db = Database::from_parts(
        DatabaseInfo::default(),
        c.db.body_signatures().to_vec(),
        c.db.logical_signatures().to_vec(),
        hashes,
        allow,
    );
    (db, data)
}

fn pool(segment: usize) -> ScanPool {
    pool_with(2, segment, SplitConfig::default().events)
}

/// With one worker, segments run in order, so a first-match winner found
/// early stops the later segments (deterministically). A small `events`
/// budget makes the merge fall back to a sequential pass of the unsplit
/// patterns.
fn pool_with(workers: usize, segment: usize, events: usize) -> ScanPool {
    ScanPool::with_split(
        PoolConfig {
            workers,
            queue_capacity: 100_000,
        },
        SplitConfig {
            threshold: 0,
            segment,
            events,
        },
    )
}

fn split_scan(pool: &ScanPool, e: &Engine, data: &Arc<[u8]>, opts: &ScanOptions) -> ScanResult {
    pool.scan_bytes(e, data.clone(), opts, "vm", Priority::OnDemand)
        .expect("queue")
        .wait()
        .expect("job")
}

fn check(pool: &ScanPool, seed: u64) {
    let (db, data) = big_case(seed);
    let e = Engine::new(&db).expect("build");
    let buf: Arc<[u8]> = data.as_slice().into();
    let all = ScanOptions {
        all_match: true,
        ..Default::default()
    };
    for opts in [all, ScanOptions::default()] {
        let seq = e.scan_bytes(&data, &opts);
        let before = pool.stats().segments;
        let split = split_scan(pool, &e, &buf, &opts);
        // Really split: several segments ran (counted as each starts). In
        // first-match mode later segments may stop at once.
        let segment = pool.split_config().segment;
        if data.len() > 5 && data.len() > segment {
            assert!(pool.stats().segments >= before + 2, "not split");
        }
        assert_eq!(
            split,
            seq,
            "seed {seed}, all_match {}, segment {:?}, overlap {:?}\ndata {data:?}\ndb {:#?}\n{:#?}",
            opts.all_match,
            pool.split_config(),
            e.split_overlap(),
            db.body_signatures(),
            db.logical_signatures()
        );
        if opts.all_match {
            assert_eq!(split.detections, reference::scan(&db, &data), "seed {seed}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]
    #[test]
    fn split_scan_equals_sequential_scan(
        seed in any::<u64>(),
        segment in 1usize..80,
        workers in 1usize..3,
        events in prop_oneof![Just(0usize), 0usize..300, Just(1usize << 22)],
    ) {
        check(&pool_with(workers, segment, events), seed);
    }
}

/// The generator must give split scans something to find, across
/// segment boundaries.
#[test]
fn split_cases_have_detections() {
    let mut hit = 0;
    for seed in 0..300u64 {
        let (db, data) = big_case(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        hit += usize::from(!reference::scan(&db, &data).is_empty());
    }
    assert!(hit > 150, "{hit}/300");
}

#[test]
fn small_buffers_and_defaults_are_not_split() {
    let (db, data) = big_case(7);
    let e = Engine::new(&db).expect("build");
    let p = ScanPool::new(PoolConfig::default());
    assert_eq!(p.split_config(), &SplitConfig::default());
    let buf: Arc<[u8]> = data.as_slice().into();
    let opts = ScanOptions::default();
    assert_eq!(split_scan(&p, &e, &buf, &opts), e.scan_bytes(&data, &opts));
    for tiny in [&b""[..], b"abc", b"abcde", b"abcdef"] {
        let buf: Arc<[u8]> = tiny.into();
        assert_eq!(
            split_scan(&pool(1), &e, &buf, &opts),
            e.scan_bytes(tiny, &opts)
        );
    }
}

/// A byte limit below the size keeps sequential semantics.
#[test]
fn byte_limit_is_honoured() {
    let (db, data) = big_case(11);
    let e = Engine::new(&db).expect("build");
    let buf: Arc<[u8]> = data.as_slice().into();
    for max in [0u64, 3, 10, data.len() as u64 / 2, data.len() as u64] {
        let opts = ScanOptions {
            max_scan_bytes: Some(max),
            ..Default::default()
        };
        assert_eq!(
            split_scan(&pool(7), &e, &buf, &opts),
            e.scan_bytes(&data, &opts)
        );
    }
}

/// A time limit that fires is never reported as clean, and what is
/// reported was really found.
#[test]
fn time_limit_is_never_clean() {
    for seed in 0..40u64 {
        let (db, data) = big_case(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let e = Engine::new(&db).expect("build");
        let buf: Arc<[u8]> = data.as_slice().into();
        let all = e.scan_bytes(
            &data,
            &ScanOptions {
                all_match: true,
                ..Default::default()
            },
        );
        for all_match in [false, true] {
            let opts = ScanOptions {
                all_match,
                max_scan_time: Some(Duration::ZERO),
                ..Default::default()
            };
            let r = split_scan(&pool(5), &e, &buf, &opts);
            match r.outcome {
                Outcome::LimitExceeded(Limit::ScanTime) => assert!(r.detections.is_empty()),
                // Under a limit the file's hash is unknown, so the
                // allow-list cannot apply (as in `Scanner::finish`).
                Outcome::Infected if db.hash_counts().1 > 0 => {}
                Outcome::Infected => {
                    for d in &r.detections {
                        assert!(all.detections.contains(d), "seed {seed}: {d:?}");
                    }
                }
                Outcome::TooSmall => assert!(data.len() <= 5),
                other => panic!("seed {seed}: {other:?}"),
            }
        }
    }
}
