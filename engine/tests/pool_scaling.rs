//! Measurements (not assertions of speed): split-scan scaling of one large
//! buffer over 1..N workers, many small buffers over 1..N workers, and the
//! cost of the split itself.
//!
//! `cargo test -p giva-engine --release --test pool_scaling -- --ignored --nocapture --test-threads 1`
//! (`GIVA_SCALE_MIB`, default 256: the size of the large buffer.)

use std::sync::Arc;
use std::time::Instant;

use giva_engine::pool::{PoolConfig, Priority, ScanPool, SplitConfig};
use giva_engine::{Engine, Outcome, ScanOptions};
use giva_signatures::{
    BodyPattern, BodySignature, Database, DatabaseInfo, Gap, Offset, Part, Token,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn lit(r: &mut Rng, len: usize) -> Part {
    Part {
        tokens: (0..len)
            .map(|_| Token::Byte {
                value: r.next() as u8,
                mask: 0xff,
            })
            .collect(),
    }
}

/// 10k literal signatures, one in four with a `??`, one in 20 with two
/// parts joined by a bounded gap, and `unbounded` with a `*` gap.
fn database(r: &mut Rng, unbounded: usize) -> Database {
    let sigs = (0..10_000)
        .map(|i| {
            let (parts, gaps) = if i < unbounded {
                (vec![lit(r, 8), lit(r, 8)], vec![Gap { min: 0, max: None }])
            } else if i % 20 == 1 {
                (
                    vec![lit(r, 8), lit(r, 8)],
                    vec![Gap {
                        min: 0,
                        max: Some(200),
                    }],
                )
            } else {
                let len = 8 + (r.next() % 9) as usize;
                let mut p = lit(r, len);
                if i % 4 == 0 {
                    let n = p.tokens.len();
                    p.tokens[n / 2] = Token::Byte { value: 0, mask: 0 };
                }
                (vec![p], vec![])
            };
            BodySignature {
                name: format!("Sig{i}"),
                target: 0,
                offset: Offset::Any,
                pattern: BodyPattern {
                    parts,
                    gaps,
                    left_anchor: None,
                    right_anchor: None,
                    start_assertion: None,
                    end_assertion: None,
                },
            }
        })
        .collect();
    Database::from_parts(DatabaseInfo::default(), sigs, vec![], vec![], vec![])
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// CPU seconds used by this process so far (user + system).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 (utime, stime), counted from after the command name.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn max_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
#[ignore = "measurement; run in release mode"]
fn one_large_buffer_scales_with_workers() {
    let mib: usize = std::env::var("GIVA_SCALE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let r = &mut Rng(0x1234_5678_9abc_def1);
    let data: Arc<[u8]> = (0..mib << 20).map(|_| r.next() as u8).collect();
    let opts = ScanOptions::default();
    for unbounded in [0, 100] {
        let db = database(r, unbounded);
        let engine = Engine::new(&db).expect("engine");
        let t = Instant::now();
        let seq = engine.scan_bytes(&data, &opts);
        let base = t.elapsed().as_secs_f64();
        assert_eq!(seq.outcome, Outcome::Clean);
        eprintln!(
            "{mib} MiB, {unbounded} unbounded sigs: sequential {:.2} GB/s, overlap {:?}",
            gbps(data.len(), base),
            engine.split_overlap()
        );
        for workers in 1..=max_workers() {
            let pool = ScanPool::with_split(
                PoolConfig {
                    workers,
                    queue_capacity: 4096,
                },
                SplitConfig::default(),
            );
            // Warm-up (builds the sequential program on first use).
            let _ = pool
                .scan_bytes(&engine, data.clone(), &opts, "vm", Priority::OnDemand)
                .unwrap()
                .wait();
            let (t, cpu) = (Instant::now(), cpu_secs());
            let got = pool
                .scan_bytes(&engine, data.clone(), &opts, "vm", Priority::OnDemand)
                .unwrap()
                .wait()
                .unwrap();
            let dt = t.elapsed().as_secs_f64();
            let cpu = cpu_secs() - cpu;
            assert_eq!(got, seq);
            eprintln!(
                "  split, {workers} workers: {:.2} GB/s ({:.2}x sequential), {:.2} CPU s / {:.2} s",
                gbps(data.len(), dt),
                base / dt,
                cpu,
                dt
            );
        }
    }
}

#[test]
#[ignore = "measurement; run in release mode"]
fn many_small_buffers_scale_with_workers() {
    let r = &mut Rng(0x0bad_cafe_1234_5678);
    let db = database(r, 100);
    let engine = Engine::new(&db).expect("engine");
    let files: Vec<Arc<[u8]>> = (0..4096)
        .map(|_| (0..64 << 10).map(|_| r.next() as u8).collect())
        .collect();
    let total: usize = files.iter().map(|f| f.len()).sum();
    let opts = ScanOptions::default();
    for workers in 1..=max_workers() {
        let pool = ScanPool::new(PoolConfig {
            workers,
            queue_capacity: 8192,
        });
        let t = Instant::now();
        let hs: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                pool.scan_bytes(
                    &engine,
                    f.clone(),
                    &opts,
                    &format!("vm{}", i % 16),
                    Priority::Background,
                )
                .unwrap()
            })
            .collect();
        for h in hs {
            assert_eq!(h.wait().unwrap().outcome, Outcome::Clean);
        }
        let dt = t.elapsed().as_secs_f64();
        eprintln!(
            "4096 x 64 KiB, {workers} workers: {:.2} GB/s, {:.0} files/s",
            gbps(total, dt),
            4096.0 / dt
        );
    }
}
