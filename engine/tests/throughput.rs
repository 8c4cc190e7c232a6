//! A quick throughput measurement (not a benchmark suite): 10k literal-ish
//! body signatures over clean random data.
//!
//! `cargo test -p giva-engine --release --test throughput -- --ignored --nocapture`

use std::time::Instant;

use giva_engine::{Engine, Outcome, ScanOptions};
use giva_signatures::{BodyPattern, BodySignature, Database, DatabaseInfo, Offset, Part, Token};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn database(n: usize, r: &mut Rng) -> Database {
    // GIVA_TP_WILDCARD_EVERY=k: one signature in k has a `??` in the middle
    // (default 4; 0 for none).
    let every: usize = std::env::var("GIVA_TP_WILDCARD_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let sigs = (0..n)
        .map(|i| {
            let len = 8 + (r.next() % 9) as usize;
            let mut tokens: Vec<Token> = (0..len)
                .map(|_| Token::Byte {
                    value: r.next() as u8,
                    mask: 0xff,
                })
                .collect();
            if every > 0 && i % every == 0 {
                tokens[len / 2] = Token::Byte { value: 0, mask: 0 };
            }
            BodySignature {
                name: format!("Sig{i}"),
                target: 0,
                offset: Offset::Any,
                pattern: BodyPattern {
                    parts: vec![Part { tokens }],
                    gaps: vec![],
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

#[test]
#[ignore = "measurement; run in release mode"]
fn clean_random_data_10k_signatures() {
    let r = &mut Rng(0x1234_5678_9abc_def1);
    let db = database(10_000, r);
    let t = Instant::now();
    let engine = Engine::new(&db).expect("engine");
    eprintln!("engine built in {:?}", t.elapsed());
    let data: Vec<u8> = (0..256 << 20).map(|_| r.next() as u8).collect();
    let opts = ScanOptions::default();
    // Whole buffer.
    let t = Instant::now();
    let res = engine.scan_bytes(&data, &opts);
    let dt = t.elapsed();
    assert_eq!(res.outcome, Outcome::Clean);
    eprintln!(
        "whole buffer: {} MiB in {dt:?} = {:.2} GB/s",
        data.len() >> 20,
        data.len() as f64 / dt.as_secs_f64() / 1e9
    );
    // Streamed in 64 KiB chunks.
    let mut s = engine.scanner(opts);
    let t = Instant::now();
    s.reset(Some(data.len() as u64));
    for c in data.chunks(64 << 10) {
        s.feed(c);
    }
    let res2 = s.finish();
    let dt = t.elapsed();
    assert_eq!(res2, res);
    eprintln!(
        "64 KiB chunks: {:.2} GB/s",
        data.len() as f64 / dt.as_secs_f64() / 1e9
    );
}

/// The worst case for an atom index: an atom that occurs at every position
/// (zero-filled data and a signature made of zeros).
#[test]
#[ignore = "measurement; run in release mode"]
fn zero_filled_data_with_a_zero_atom() {
    let r = &mut Rng(0x1234_5678_9abc_def1);
    let base = database(10_000, r);
    let mut body = base.body_signatures().to_vec();
    let mut tokens: Vec<Token> = (0..8)
        .map(|_| Token::Byte {
            value: 0,
            mask: 0xff,
        })
        .collect();
    tokens.push(Token::Byte { value: 0, mask: 0 });
    tokens.push(Token::Byte {
        value: 1,
        mask: 0xff,
    });
    body.push(BodySignature {
        name: "Zeros".into(),
        target: 0,
        offset: Offset::Any,
        pattern: BodyPattern {
            parts: vec![Part { tokens }],
            gaps: vec![],
            left_anchor: None,
            right_anchor: None,
            start_assertion: None,
            end_assertion: None,
        },
    });
    let db = Database::from_parts(DatabaseInfo::default(), body, vec![], vec![], vec![]);
    let engine = Engine::new(&db).expect("engine");
    let data = vec![0u8; 64 << 20];
    let t = Instant::now();
    let res = engine.scan_bytes(&data, &ScanOptions::default());
    let dt = t.elapsed();
    assert_eq!(res.outcome, Outcome::Clean);
    eprintln!(
        "zero-filled, zero atom: {:.2} GB/s",
        data.len() as f64 / dt.as_secs_f64() / 1e9
    );
}

/// Single-core throughput of a compiled database over a directory of
/// files, per file extension (the bench corpus has `.txt`, `.bin`, `.exe`).
/// Files are read into memory first, so this is the engine alone: no load,
/// no page cache, no pool.
///
/// `GIVA_TP_DB=db.giva GIVA_TP_DIR=bench/results/tmp/corpus-…/files
/// cargo test -p giva-engine --release --test throughput -- --ignored --nocapture corpus`
#[test]
#[ignore = "measurement; needs GIVA_TP_DB and GIVA_TP_DIR"]
fn corpus_per_file_kind() {
    let (Ok(db), Ok(dir)) = (std::env::var("GIVA_TP_DB"), std::env::var("GIVA_TP_DIR")) else {
        eprintln!("set GIVA_TP_DB and GIVA_TP_DIR");
        return;
    };
    let rounds: u32 = std::env::var("GIVA_TP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let t = Instant::now();
    let (_db, engine) = Engine::load(&[db]).expect("database");
    eprintln!("loaded in {:?}", t.elapsed());
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let kind = p
                .extension()
                .map_or("-".into(), |e| e.to_string_lossy().into_owned());
            (kind, std::fs::read(&p).expect("read"))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let opts = ScanOptions {
        all_match: true,
        ..ScanOptions::default()
    };
    let mut kinds: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
    for _ in 0..rounds {
        for (kind, data) in &files {
            let t = Instant::now();
            std::hint::black_box(engine.scan_bytes(data, &opts));
            let e = kinds.entry(kind).or_default();
            e.0 += data.len() as u64;
            e.1 += t.elapsed().as_secs_f64();
        }
    }
    let (mut bytes, mut secs) = (0, 0.0);
    for (kind, (b, s)) in &kinds {
        eprintln!("{kind:>4}: {:7.1} MB/s", *b as f64 / s / 1e6);
        bytes += b;
        secs += s;
    }
    eprintln!(" all: {:7.1} MB/s", bytes as f64 / secs / 1e6);
}
/// The cost of one small file with a fresh scanner (as `scan_bytes` and a
/// streamed guest file use) and with a reused one, for the database in
/// `GIVA_TP_DB`. A fresh scanner used to build a state per pattern: 0.27
/// ms a file at 100k body signatures.
#[test]
#[ignore]
fn small_file_cost() {
    let Ok(db) = std::env::var("GIVA_TP_DB") else {
        eprintln!("set GIVA_TP_DB");
        return;
    };
    let (_db, engine) = Engine::load(&[db]).expect("database");
    let data = vec![b'x'; 4096];
    let opts = ScanOptions::default();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(engine.scan_bytes(&data, &opts));
    }
    eprintln!("fresh scanner:  {:?} per 4 KiB file", t.elapsed() / n);
    let mut s = engine.scanner(opts.clone());
    let t = Instant::now();
    for _ in 0..n {
        s.reset(Some(data.len() as u64));
        s.feed(&data);
        std::hint::black_box(s.finish());
    }
    eprintln!("reused scanner: {:?} per 4 KiB file", t.elapsed() / n);
}
