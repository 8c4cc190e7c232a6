//! A diagnostic over real files: where the atom index's time goes.

use crate::Engine;
use crate::index::Census;

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
#[ignore = "diagnostic: GIVA_HEAT_DB and GIVA_HEAT_CORPUS"]
fn heat() {
    let db = std::env::var("GIVA_HEAT_DB").unwrap();
    let corpus = std::env::var("GIVA_HEAT_CORPUS").unwrap();
    let dbs: Vec<String> = db.split(',').map(String::from).collect();
    let (_db, engine) = Engine::load(&dbs).unwrap();
    let p = &engine.inner.main;
    let mut all = Vec::new();
    files(corpus.as_ref(), &mut all);
    all.sort();
    let mut c = Census::default();
    let t = std::time::Instant::now();
    for f in &all {
        let b = std::fs::read(f).unwrap();
        p.atoms.census(&b, &mut c);
    }
    eprintln!("census {:?}", t.elapsed());
    let bufs: Vec<Vec<u8>> = all.iter().map(|f| std::fs::read(f).unwrap()).collect();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let mut hits = 0u64;
        for b in &bufs {
            p.atoms.scan(b, |_, _| hits += 1);
        }
        eprintln!("index scan {:?} hits {hits}", t.elapsed());
    }
    let mb = c.bytes as f64 / 1e6;
    eprintln!(
        "stride {} atoms {} bytes {} MB; per MB: bloom {:.0} sieve {:.0} probed {:.0} confirmed {:.0}",
        p.atoms.stride,
        p.atoms.len(),
        mb,
        c.bloom as f64 / mb,
        c.sieve as f64 / mb,
        c.probed as f64 / mb,
        c.confirmed as f64 / mb
    );
    let mut hist = [0usize; 13];
    for a in 0..p.atoms.len() as u32 {
        let l = p.atoms.atom_len(a);
        hist[l.min(12)] += 1;
        if (4..7).contains(&l) && std::env::var_os("GIVA_HEAT_SHORT").is_some() {
            eprintln!(
                "short atom {:?}",
                p.atoms.atom(a).escape_ascii().to_string()
            );
        }
    }
    eprintln!("atom lengths {hist:?}");
    let mut v: Vec<_> = c.per_atom.iter().collect();
    v.sort_by_key(|(_, (a, b))| std::cmp::Reverse(a + b));
    for (atom, (ok, bad)) in v.iter().take(40) {
        let bytes = p.atoms.atom(**atom);
        let targets = p.targets(**atom as usize).len();
        let names: Vec<String> = p
            .targets(**atom as usize)
            .iter()
            .take(2)
            .map(|&e| {
                let pat = &p.patterns[p.entries[e as usize].pattern as usize];
                match pat.owner {
                    crate::compile::Owner::Body(n) => engine.inner.names.get(n).to_string(),
                    crate::compile::Owner::Sub(n) => format!("sub{n}"),
                }
            })
            .collect();
        eprintln!(
            "{ok:>10} {bad:>10} targets {targets:>3} {:?} {names:?}",
            bytes.escape_ascii().to_string()
        );
    }
    let mut w: Vec<_> = c.passed_prefix.iter().collect();
    w.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for (k, n) in w.iter().take(30) {
        eprintln!("pass {n:>10} {:?}", k.escape_ascii().to_string());
    }
}

#[test]
#[ignore = "diagnostic: GIVA_LOAD_SIGS (comma-separated text databases)"]
fn load_time() {
    let paths: Vec<String> = std::env::var("GIVA_LOAD_SIGS")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let db = giva_signatures::load(&paths).unwrap();
        let parsed = t.elapsed();
        let t = std::time::Instant::now();
        let e = Engine::build(&db).unwrap();
        let built = t.elapsed();
        eprintln!(
            "parse {parsed:?} build {built:?} atoms {}",
            e.inner.main.atoms.len()
        );
    }
}
