//! Runs every row of `tests/testdata/match.toml` under every mode: whole
//! buffer, chunked at random boundaries (several seeds, 1 byte to 1 MiB),
//! file via mmap, file via read, `Read` stream; first-match and all-match.

mod match_table;

use giva_engine::{Engine, ScanOptions, ScanResult};
use giva_signatures::{Database, EXT_ENGINE};
use match_table::table;

/// Sizes for chunked feeding: tiny to large.
const CHUNKS: &[usize] = &[1, 2, 3, 5, 7, 16, 64, 4096, 1 << 20];

fn chunked(engine: &Engine, data: &[u8], opts: &ScanOptions, seed: u64, sized: bool) -> ScanResult {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut s = engine.scanner(opts.clone());
    s.reset(sized.then_some(data.len() as u64));
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let max = CHUNKS[(x % CHUNKS.len() as u64) as usize];
        let n = 1 + ((x >> 8) as usize % max);
        let (a, b) = rest.split_at(n.min(rest.len()));
        s.feed(a);
        rest = b;
    }
    // The checks (PCRE, byte-compare) run over the whole input, which a
    // streaming caller keeps and gives at the end.
    if engine.needs_input() {
        s.finish_with(data)
    } else {
        s.finish()
    }
}

fn check(
    id: &str,
    mode: &str,
    all: bool,
    got: &ScanResult,
    expect: &[String],
) -> Result<(), String> {
    let mut names: Vec<String> = got.detections.iter().map(|d| d.name.clone()).collect();
    let ok = if all {
        names.sort();
        let mut e = expect.to_vec();
        e.sort();
        names == e
    } else if expect.is_empty() {
        names.is_empty()
    } else {
        names.len() == 1 && expect.contains(&names[0])
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id} [{mode}, all_match={all}]: got {names:?} ({:?}), expected {expect:?}",
            got.outcome
        ))
    }
}

#[test]
fn match_table() {
    let t = table();
    assert!(t.case.len() >= 100, "table has {} rows", t.case.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (n, c) in t.case.iter().enumerate() {
        let db = match c.database() {
            Ok(db) => db,
            Err(e) => {
                failures.push(format!("{}: database does not build: {e}", c.id));
                continue;
            }
        };
        let data = c.bytes();
        let engine = match Engine::new(&db) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{}: engine does not build: {e}", c.id));
                continue;
            }
        };
        // The same engine, stored in the database file and loaded back.
        let stored = {
            let blob = engine.to_blob().expect("engine serializes");
            let file = db.with_extension(EXT_ENGINE, &blob).expect("extension");
            let back = Database::from_bytes(&file.to_bytes()).expect("reloads");
            let e = Engine::new(&back).expect("stored engine loads");
            assert!(e.is_from_blob(), "{}: stored engine not used", c.id);
            e
        };
        let path = dir.path().join(format!("case{n}"));
        std::fs::write(&path, &data).expect("write");
        for all in [false, true] {
            let opts = ScanOptions {
                all_match: all,
                file_type: c.file_type,
                ..Default::default()
            };
            let whole = engine.scan_bytes(&data, &opts);
            let mut runs: Vec<(String, ScanResult)> = vec![("whole".into(), whole.clone())];
            for seed in 0..6 {
                runs.push((
                    format!("chunked seed {seed}"),
                    chunked(&engine, &data, &opts, seed, seed % 2 == 0),
                ));
            }
            runs.push((
                "read".into(),
                engine.scan_file(&path, &opts).expect("scan file"),
            ));
            // SAFETY: the test's own temporary file, which nothing changes.
            #[allow(unsafe_code)]
            let map = unsafe { giva_signatures::map::MappedFile::open(&path) }.expect("map");
            runs.push(("mmap".into(), engine.scan_mapped(&map, &opts)));
            runs.push(("stored engine".into(), stored.scan_bytes(&data, &opts)));
            runs.push((
                "reader".into(),
                engine.scan_reader(&data[..], &opts).expect("reader"),
            ));
            for (mode, r) in &runs {
                if let Err(e) = check(&c.id, mode, all, r, &c.expect) {
                    failures.push(e);
                } else if r.detections != whole.detections || r.outcome != whole.outcome {
                    failures.push(format!("{} [{mode}]: differs from whole-buffer scan", c.id));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
