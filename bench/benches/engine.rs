//! Criterion benches of the engine: throughput against signature count and
//! file size, one thread and all cores, and the cost of compiling, building
//! and loading a database. Kept short (10 samples, 2 s each):
//!
//! ```sh
//! cargo bench -p giva-bench --bench engine
//! cargo bench -p giva-bench --bench engine -- scan_vs_sigs   # one group
//! ```
//!
//! The signatures and data come from the same generators as `bench
//! compare` (`giva_bench::sigs`, `giva_bench::corpus`), in memory.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use giva_bench::rng::Rng;
use giva_bench::sigs;
use giva_engine::{Engine, ScanOptions};
use giva_signatures::{Compiler, Database};

const SEED: u64 = 1;

fn body_text(n: usize) -> String {
    (0..n)
        .map(|i| sigs::body_sig(SEED, i).line() + "\n")
        .collect()
}

fn logical_text(n: usize) -> String {
    (0..n)
        .map(|i| sigs::logical_sig(SEED, i).line() + "\n")
        .collect()
}

fn hash_text(n: usize) -> String {
    let mut rng = Rng::new(SEED, 99);
    (0..n)
        .map(|i| {
            format!(
                "{}:{}:Bench.Hash.{i}\n",
                hex(&rng.bytes(16)),
                rng.range(1024, 64 << 20)
            )
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn database(body: usize, logical: usize, hashes: usize) -> Database {
    let mut c = Compiler::new();
    c.add_source("bench.ndb", &body_text(body), false);
    if logical > 0 {
        c.add_source("bench.ldb", &logical_text(logical), false);
    }
    if hashes > 0 {
        c.add_source("bench.hdb", &hash_text(hashes), false);
    }
    c.build().expect("generated signatures compile")
}

/// Mixed content: a third each random, text-like and executable-like.
fn data(size: usize) -> Vec<u8> {
    let mut rng = Rng::new(SEED, 42);
    let mut buf = vec![0u8; size];
    let third = size / 3;
    giva_bench::corpus::fill("random", &mut rng, &mut buf[..third]);
    giva_bench::corpus::fill("text", &mut rng, &mut buf[third..2 * third]);
    giva_bench::corpus::fill("exe", &mut rng, &mut buf[2 * third..]);
    buf
}

fn scan_vs_sigs(c: &mut Criterion) {
    let buf = data(4 << 20);
    let mut g = c.benchmark_group("scan_vs_sigs");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for n in [100usize, 1_000, 10_000] {
        let engine = Engine::new(&database(n, 100, 0)).expect("engine builds");
        let opts = ScanOptions::default();
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_body")),
            &n,
            |b, _| b.iter(|| black_box(engine.scan_bytes(&buf, &opts))),
        );
    }
    g.finish();
}

fn scan_vs_size(c: &mut Criterion) {
    let engine = Engine::new(&database(1_000, 100, 0)).expect("engine builds");
    let opts = ScanOptions::default();
    let mut g = c.benchmark_group("scan_vs_size_1k_body");
    for size in [4usize << 10, 64 << 10, 1 << 20, 16 << 20] {
        let buf = data(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| black_box(engine.scan_bytes(&buf, &opts)))
        });
    }
    g.finish();
}

fn scan_threads(c: &mut Criterion) {
    let engine = Engine::new(&database(10_000, 100, 0)).expect("engine builds");
    let files: Vec<Vec<u8>> = (0..8).map(|_| data(2 << 20)).collect();
    let total: usize = files.iter().map(Vec::len).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("scan_threads_10k_body");
    g.throughput(Throughput::Bytes(total as u64));
    for threads in [1usize, cores] {
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &t| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for k in 0..t {
                        let engine = &engine;
                        let files = &files;
                        s.spawn(move || {
                            let mut scanner = engine.scanner(ScanOptions::default());
                            for f in files.iter().skip(k).step_by(t) {
                                scanner.reset(Some(f.len() as u64));
                                scanner.feed(f);
                                black_box(scanner.finish());
                            }
                        });
                    }
                })
            })
        });
    }
    g.finish();
}

fn database_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("database");
    let (body, hashes) = (body_text(10_000), hash_text(100_000));
    g.bench_function("compile_10k_body_100k_md5", |b| {
        b.iter(|| {
            let mut c = Compiler::new();
            c.add_source("bench.ndb", &body, false);
            c.add_source("bench.hdb", &hashes, false);
            black_box(c.build().expect("compiles"))
        })
    });
    let db = database(10_000, 100, 100_000);
    g.bench_function("engine_build_10k_body", |b| {
        b.iter(|| black_box(Engine::new(&db).expect("builds")))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.giva");
    db.write_to(&path).expect("written");
    g.bench_function("open_10k_body_100k_md5", |b| {
        b.iter(|| black_box(Database::open(&path).expect("opens")))
    });
    g.bench_function("open_and_build_10k_body_100k_md5", |b| {
        b.iter(|| black_box(Engine::new(&Database::open(&path).expect("opens")).expect("builds")))
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
    targets = scan_vs_sigs, scan_vs_size, scan_threads, database_cost
}
criterion_main!(benches);
