//! Criterion benches of the scan pool and the verdict cache: one large
//! buffer split over 1..N workers, many small buffers over 1..N workers,
//! and cache lookups and inserts at one million entries. Kept short
//! (10 samples, 2 s each):
//!
//! ```sh
//! cargo bench -p giva-bench --bench pool
//! cargo bench -p giva-bench --bench pool -- split_large   # one group
//! ```
//!
//! The signatures come from `giva_bench::sigs` (as in `benches/engine.rs`),
//! the data is random.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use giva_bench::rng::Rng;
use giva_bench::sigs;
use giva_engine::cache::{CacheConfig, CachedVerdict, VerdictCache, content_key};
use giva_engine::pool::{PoolConfig, Priority, ScanPool, SplitConfig};
use giva_engine::{Engine, ScanOptions};
use giva_signatures::Compiler;

const SEED: u64 = 1;

fn engine(body: usize, logical: usize) -> Engine {
    let mut c = Compiler::new();
    let body: String = (0..body)
        .map(|i| sigs::body_sig(SEED, i).line() + "\n")
        .collect();
    c.add_source("bench.ndb", &body, false);
    if logical > 0 {
        let ldb: String = (0..logical)
            .map(|i| sigs::logical_sig(SEED, i).line() + "\n")
            .collect();
        c.add_source("bench.ldb", &ldb, false);
    }
    let db = c.build().expect("generated signatures compile");
    Engine::new(&db).expect("engine builds")
}

fn random(size: usize, stream: u64) -> Arc<[u8]> {
    let mut rng = Rng::new(SEED, stream);
    let mut buf = vec![0u8; size];
    rng.fill(&mut buf);
    buf.into()
}

fn workers() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut w = vec![1];
    let mut n = 2;
    while n < cores {
        w.push(n);
        n *= 2;
    }
    if cores > 1 {
        w.push(cores);
    }
    w
}

/// One 256 MiB buffer, split into 8 MiB segments, over 1..N workers.
fn split_large(c: &mut Criterion) {
    let engine = engine(10_000, 100);
    let data = random(256 << 20, 7);
    let opts = ScanOptions::default();
    let mut g = c.benchmark_group("split_large_256MiB_10k_body");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sequential", |b| {
        b.iter(|| black_box(engine.scan_bytes(&data, &opts)))
    });
    for w in workers() {
        let pool = ScanPool::with_split(
            PoolConfig {
                workers: w,
                queue_capacity: 4096,
            },
            SplitConfig::default(),
        );
        g.bench_with_input(BenchmarkId::new("pool", w), &w, |b, _| {
            b.iter(|| {
                let h = pool
                    .scan_bytes(&engine, data.clone(), &opts, "vm", Priority::OnDemand)
                    .expect("queue");
                black_box(h.wait().expect("scan"))
            })
        });
    }
    g.finish();
}

/// 1024 buffers of 64 KiB from 16 VMs, over 1..N workers.
fn many_small(c: &mut Criterion) {
    let engine = engine(10_000, 100);
    let files: Vec<Arc<[u8]>> = (0..1024).map(|i| random(64 << 10, 100 + i)).collect();
    let total: usize = files.iter().map(|f| f.len()).sum();
    let opts = ScanOptions::default();
    let mut g = c.benchmark_group("many_small_1024x64KiB_10k_body");
    g.throughput(Throughput::Bytes(total as u64));
    for w in workers() {
        let pool = ScanPool::new(PoolConfig {
            workers: w,
            queue_capacity: 4096,
        });
        g.bench_with_input(BenchmarkId::new("pool", w), &w, |b, _| {
            b.iter(|| {
                let hs: Vec<_> = files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let vm = ["vm0", "vm1", "vm2", "vm3"][i % 4];
                        pool.scan_bytes(&engine, f.clone(), &opts, vm, Priority::Background)
                            .expect("queue")
                    })
                    .collect();
                for h in hs {
                    black_box(h.wait().expect("scan"));
                }
            })
        });
    }
    g.finish();
}

fn key(i: u64) -> [u8; 16] {
    let mut sha = [0u8; 32];
    sha[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    sha[8..16].copy_from_slice(&i.to_le_bytes());
    content_key(&sha)
}

/// Lookups and inserts with one million entries cached.
fn cache(c: &mut Criterion) {
    let cache = VerdictCache::new(CacheConfig::default());
    for i in 0..1_000_000 {
        cache.insert(key(i), 1, CachedVerdict::Clean);
    }
    let keys: Vec<[u8; 16]> = (0..4096).map(|i| key(i * 241)).collect();
    let misses: Vec<[u8; 16]> = (0..4096).map(|i| key(2_000_000 + i)).collect();
    let mut g = c.benchmark_group("verdict_cache_1M");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(cache.get(k, 1));
            }
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            for k in &misses {
                black_box(cache.get(k, 1));
            }
        })
    });
    let mut n = 3_000_000u64;
    g.bench_function("insert_evicting", |b| {
        b.iter(|| {
            for _ in 0..keys.len() {
                n += 1;
                cache.insert(key(n), 1, CachedVerdict::Clean);
            }
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = split_large, many_small, cache
}
criterion_main!(benches);
