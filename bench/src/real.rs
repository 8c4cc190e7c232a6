//! The real-file benchmark: this machine's own files as the corpus,
//! signatures cut from other real code ([`crate::realsigs`]), and five
//! engines on one core in one run: `giva scan` (compiled database),
//! `clamscan` in raw mode, `yara`, YARA-X and Hyperscan (the last two
//! through their Python packages, in a venv the command makes). Every
//! engine must report the same detections.
//!
//! - **Corpus**: files of `/usr/bin`, `/usr/lib/x86_64-linux-gnu`,
//!   `/usr/lib/python3*`, `/usr/share/doc` and `/usr/share/man` (binaries,
//!   shared libraries, sources, documentation, compressed man pages),
//!   drawn in a seeded order up to a byte budget and copied into the work
//!   directory, so that a run does not depend on what else the system
//!   holds.
//! - **Signatures**: drawn from the Rust toolchain's libraries (code no
//!   corpus file holds), in the mix of [`crate::realsigs::MIX`]. Those
//!   that match a corpus file are dropped, by a scan with `giva`; then a
//!   planted set, cut from corpus files, is added: the expected
//!   detections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::realsigs::{self, MIX, Signature};
use crate::rng::Rng;
use crate::run::{self, Run};

/// Where the corpus comes from.
const ROOTS: &[&str] = &[
    "/usr/bin",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/python3",
    "/usr/share/doc",
    "/usr/share/man",
];

/// Files past this size are left out of the corpus.
const MAX_FILE: u64 = 64 << 20;

/// giva's second run, as it scans by default: containers opened (the
/// compressed man pages), text normalized. Not a peer.
const GIVA_OPENING: &str = "giva, containers opened";

/// Signatures cut from corpus files: the expected detections.
const PLANTED: usize = 50;

/// The corpus: its directory, its files (absolute paths, in a list file
/// too, one a line) and their bytes.
#[derive(Debug, Clone)]
pub struct RealCorpus {
    /// Where the files are.
    pub dir: PathBuf,
    /// `files.list` in it.
    pub list: PathBuf,
    /// The files.
    pub files: Vec<PathBuf>,
    /// Their bytes.
    pub bytes: u64,
}

/// Collects (or reuses) the corpus of `budget` bytes drawn with `seed`
/// under `work`.
///
/// # Errors
///
/// The files cannot be listed or copied.
pub fn corpus(work: &Path, budget: u64, seed: u64) -> anyhow::Result<RealCorpus> {
    let dir = work.join(format!("real-corpus-{seed}-{budget}"));
    let list = dir.join("files.list");
    if let Ok(text) = std::fs::read_to_string(&list) {
        let files: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
        let bytes = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if !files.is_empty() && files.iter().all(|f| f.is_file()) {
            return Ok(RealCorpus {
                dir,
                list,
                files,
                bytes,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("files"))?;
    let mut all: Vec<(PathBuf, u64)> = Vec::new();
    for root in ROOTS {
        // `/usr/lib/python3` and `/usr/lib/python3.N`.
        let parent = Path::new(root).parent().unwrap_or(Path::new("/"));
        let name = Path::new(root)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&name) {
                continue;
            }
            for f in walkdir::WalkDir::new(e.path()).follow_links(false) {
                let Ok(f) = f else { continue };
                let Ok(m) = f.metadata() else { continue };
                if f.file_type().is_file() && m.len() > 0 && m.len() <= MAX_FILE {
                    all.push((f.into_path(), m.len()));
                }
            }
        }
    }
    all.sort();
    all.dedup();
    let mut rng = Rng::new(seed, 0x7ea1);
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i + 1));
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    for (path, len) in all {
        if bytes + len > budget {
            continue;
        }
        let to = dir.join("files").join(format!(
            "{:05}-{}",
            files.len(),
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        if std::fs::copy(&path, &to).is_err() {
            continue;
        }
        bytes += len;
        files.push(to);
    }
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(&list, text)?;
    Ok(RealCorpus {
        dir,
        list,
        files,
        bytes,
    })
}

/// The Rust toolchain's libraries (`.rlib`, `.so`), the signatures'
/// source: code that no corpus file holds.
///
/// # Errors
///
/// `rustc` cannot be run or the libraries cannot be read.
pub fn sources() -> anyhow::Result<Vec<Vec<u8>>> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut libs: Vec<PathBuf> = walkdir::WalkDir::new(sysroot.join("lib"))
        .into_iter()
        .filter_map(Result::ok)
        .map(walkdir::DirEntry::into_path)
        .filter(|p| {
            let s = p.to_string_lossy();
            s.ends_with(".rlib") || s.ends_with(".so")
        })
        .collect();
    libs.sort();
    anyhow::ensure!(
        !libs.is_empty(),
        "no .rlib or .so under {}",
        sysroot.display()
    );
    libs.iter()
        .map(|p| std::fs::read(p).map_err(anyhow::Error::from))
        .collect()
}

/// The signature files of `sigs` for every engine, in `dir`: `sigs.ndb`
/// and `sigs.ldb` (only with logical signatures: ClamAV's tools refuse an
/// empty database file), `sigs.yar`, `sigs.hs.json`. Returns the ClamAV
/// files.
///
/// # Errors
///
/// A file cannot be written.
pub fn write_signatures(dir: &Path, sigs: &[Signature]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let (ndb, ldb) = realsigs::clamav(sigs);
    let mut clamav = Vec::new();
    for (name, text) in [("sigs.ndb", ndb), ("sigs.ldb", ldb)] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        if !text.is_empty() {
            std::fs::write(&path, text)?;
            clamav.push(path);
        }
    }
    std::fs::write(dir.join("sigs.yar"), realsigs::yara(sigs))?;
    std::fs::write(dir.join("sigs.hs.json"), realsigs::hyperscan(sigs))?;
    Ok(clamav)
}

/// (file name, signature name) pairs from `path: NAME` lines (the
/// `FOUND` suffix of ClamAV's format dropped; YARA's `_` back to `.`).
pub fn detections(stdout: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in stdout.lines() {
        if line.ends_with(": OK") || line.ends_with(" ERROR") || line.trim().is_empty() {
            continue;
        }
        let line = line.strip_suffix(" FOUND").unwrap_or(line);
        let (path, name) = match line.rfind(": ") {
            Some(i) => (&line[..i], &line[i + 2..]),
            // yara's own `RULE PATH`.
            None => match line.split_once(' ') {
                Some((rule, path)) => (path, rule),
                None => continue,
            },
        };
        let file = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // ClamAV's tools mark an unsigned database's names.
        let name = name.strip_suffix(".UNOFFICIAL").unwrap_or(name);
        out.insert((file, name.replace('_', ".")));
    }
    out
}

/// Draws `count` signatures that match no corpus file (checked with the
/// `giva` at `giva`), plus [`PLANTED`] cut from corpus files. Returns
/// them and how many of the first draw were dropped for matching.
///
/// # Errors
///
/// The sources cannot be read, or `giva` cannot be run.
pub fn signatures(
    giva: &Path,
    corpus: &RealCorpus,
    work: &Path,
    count: usize,
    seed: u64,
    timeout: Duration,
) -> anyhow::Result<(Vec<Signature>, usize)> {
    let sources = sources()?;
    let mut rng = Rng::new(seed, 0x5165);
    // A tenth more than asked: some will match the corpus.
    let drawn = realsigs::draw(&mut rng, &sources, count + count / 10 + 10, "Real", &MIX);
    let dir = work.join(format!("real-filter-{seed}-{count}"));
    let clamav = write_signatures(&dir, &drawn)?;
    let mut args = vec![
        "scan".to_string(),
        "--allmatch".into(),
        "--infected".into(),
        "--no-summary".into(),
    ];
    for f in &clamav {
        args.push("-d".into());
        args.push(f.display().to_string());
    }
    args.push(corpus.dir.join("files").display().to_string());
    let r = run::run(giva, &args, timeout, &dir.join("scratch"))?;
    anyhow::ensure!(
        !r.timed_out && r.code.is_some_and(|c| c <= 1),
        "giva scan (filtering the signatures) failed: {:?} {}",
        r.code,
        r.stderr
    );
    let hit: BTreeSet<String> = detections(&r.stdout).into_iter().map(|(_, n)| n).collect();
    let dropped = drawn.iter().filter(|s| hit.contains(&s.name)).count();
    let mut sigs: Vec<Signature> = drawn
        .into_iter()
        .filter(|s| !hit.contains(&s.name))
        .take(count)
        .collect();
    for (i, s) in sigs.iter_mut().enumerate() {
        s.name = format!("Real.{i}");
    }
    // The planted set: cut from corpus files drawn at random.
    let mut planted = Vec::new();
    let mut prng = Rng::new(seed, 0x91a7);
    let mut tries = 0;
    while planted.len() < PLANTED && !corpus.files.is_empty() && tries < PLANTED * 100 {
        tries += 1;
        let f = &corpus.files[prng.below(corpus.files.len())];
        let Ok(data) = std::fs::read(f) else { continue };
        let mut one = realsigs::draw(&mut prng, &[data], 1, "Planted", &MIX);
        if let Some(mut s) = one.pop() {
            s.name = format!("Planted.{}", planted.len());
            planted.push(s);
        }
    }
    sigs.extend(planted);
    Ok((sigs, dropped))
}

/// The Python of the bench venv (`work/venv`), made and given `yara-x`
/// and `hyperscan` the first time.
///
/// # Errors
///
/// The venv cannot be made or the packages installed.
pub fn venv_python(work: &Path) -> anyhow::Result<PathBuf> {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        std::process::Command::new(p)
            .args(["-c", "import yara_x, hyperscan"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has(&python) {
        return Ok(python);
    }
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q", "yara-x", "hyperscan"])
            .status()?
            .success();
    anyhow::ensure!(
        ok && has(&python),
        "cannot make the bench venv with yara-x and hyperscan in {}",
        venv.display()
    );
    Ok(python)
}

/// One engine's run over the corpus.
#[derive(Debug, Clone)]
pub struct EngineRun {
    /// The engine.
    pub engine: String,
    /// Scan time in seconds (the whole run for the programs; the scan loop,
    /// reading included, for the Python ones).
    pub scan_s: f64,
    /// What it found.
    pub found: BTreeSet<(String, String)>,
    /// What went wrong, if anything.
    pub note: String,
}

/// The scan time a Python runner reports on stderr.
pub fn python_scan_s(r: &Run) -> Option<f64> {
    r.stderr.lines().rev().find_map(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()?
            .get("scan_s")?
            .as_f64()
    })
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RealArgs {
    /// Directory of `giva` (the release build beside `bench`).
    pub bin_dir: PathBuf,
    /// Scratch directory (corpus, signatures and the venv are kept).
    pub work: PathBuf,
    /// Corpus bytes.
    pub corpus_bytes: u64,
    /// Signature counts (each a run of every engine).
    pub counts: Vec<usize>,
    /// Signature seeds (each a run of every engine).
    pub seeds: Vec<u64>,
    /// Runs of each engine; the fastest counts.
    pub repeat: usize,
    /// Timeout of one run.
    pub timeout: Duration,
    /// Above this many signatures only Hyperscan runs beside giva.
    pub all_peers_up_to: usize,
}

/// One configuration (signature count and seed): every engine's run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Signatures, planted ones included.
    pub signatures: usize,
    /// The seed of the draw.
    pub seed: u64,
    /// Of the first draw, dropped for matching the corpus.
    pub dropped: usize,
    /// The engines.
    pub runs: Vec<EngineRun>,
    /// giva over the corpus (the compiled database, raw as the first
    /// run) with one thread and with two, the best of three runs each, in
    /// seconds.
    pub two_threads_s: Option<(f64, f64)>,
    /// Loading the text signatures (`.ndb` and `.ldb`) and scanning one
    /// small file, in seconds: giva, and clamscan if it is installed.
    pub load_s: Option<(f64, Option<f64>)>,
    /// Only Hyperscan ran beside giva (`--all-peers-up-to`).
    pub hyperscan_only: bool,
}

/// The whole benchmark.
#[derive(Debug, Clone)]
pub struct RealResult {
    /// The corpus.
    pub corpus: RealCorpus,
    /// Each configuration.
    pub configs: Vec<Config>,
}

/// The fastest of `a.repeat` runs of `program` (by wall time), as an
/// engine's result; the scan time is the run's own, or for a Python runner
/// the time it reports for its scan loop.
fn engine_run(
    engine: &str,
    program: &Path,
    args: &[String],
    a: &RealArgs,
    scratch: &Path,
) -> anyhow::Result<EngineRun> {
    let r = crate::compare::best_of(a.repeat, || run::run(program, args, a.timeout, scratch))?;
    Ok(EngineRun {
        engine: engine.into(),
        scan_s: python_scan_s(&r).unwrap_or(r.wall.as_secs_f64()),
        found: detections(&r.stdout),
        note: crate::compare::check(&r, engine, &[0, 1]),
    })
}

/// The time to load the text signatures `clamav` and scan one small file:
/// giva's (it builds its engine from the text), and clamscan's; the best of
/// three runs each (at least `a.repeat`).
fn text_load(
    giva: &Path,
    clamscan: Option<&Path>,
    clamav: &[PathBuf],
    a: &RealArgs,
    scratch: &Path,
) -> anyhow::Result<(f64, Option<f64>)> {
    std::fs::create_dir_all(scratch)?;
    let small = scratch.join("small.txt");
    std::fs::write(
        &small,
        "a small file to scan once the signatures are loaded\n",
    )?;
    let mut args: Vec<String> = vec!["--no-summary".into()];
    for f in clamav {
        args.push("-d".into());
        args.push(f.display().to_string());
    }
    args.push(small.display().to_string());
    let best = |program: &Path, args: &[String]| -> anyhow::Result<f64> {
        let r = crate::compare::best_of(a.repeat.max(3), || {
            run::run(program, args, a.timeout, scratch)
        })?;
        anyhow::ensure!(
            r.code == Some(0),
            "{} could not load the signatures: {}",
            program.display(),
            r.stderr
        );
        Ok(r.wall.as_secs_f64())
    };
    let mut giva_args = vec!["scan".to_string(), "--threads".into(), "1".into()];
    giva_args.extend(args.iter().cloned());
    let g = best(giva, &giva_args)?;
    let c = clamscan.map(|cs| best(cs, &args)).transpose()?;
    eprintln!(
        "  text load: giva {g:.3} s, clamscan {}",
        c.map_or("not installed".into(), |c| format!("{c:.3} s"))
    );
    Ok((g, c))
}

/// Runs the benchmark.
///
/// # Errors
///
/// The corpus, the signatures or the venv cannot be made, or `giva` is
/// missing.
pub fn run(a: &RealArgs) -> anyhow::Result<RealResult> {
    let giva = a.bin_dir.join("giva");
    anyhow::ensure!(giva.is_file(), "no giva in {}", a.bin_dir.display());
    std::fs::create_dir_all(&a.work)?;
    let corpus = corpus(&a.work, a.corpus_bytes, 1)?;
    eprintln!(
        "corpus: {} files, {:.0} MB in {}",
        corpus.files.len(),
        corpus.bytes as f64 / 1e6,
        corpus.dir.display()
    );
    let python = venv_python(&a.work)?;
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let clamscan = run::which("clamscan");
    let yara = run::which("yara");
    let yarac = run::which("yarac");
    let mut configs = Vec::new();
    for &count in &a.counts {
        for &seed in &a.seeds {
            let (sigs, dropped) = signatures(&giva, &corpus, &a.work, count, seed, a.timeout)?;
            let dir = a.work.join(format!("real-sigs-{seed}-{count}"));
            let clamav = write_signatures(&dir, &sigs)?;
            eprintln!(
                "signatures: {} ({dropped} of the draw dropped for matching the corpus), seed {seed}",
                sigs.len()
            );
            let scratch = dir.join("scratch");
            let files = corpus.dir.join("files").display().to_string();
            let mut runs = Vec::new();
            // giva, compiled database, one thread.
            let compiled = dir.join("sigs.gdb");
            let mut args = vec!["db".to_string(), "compile".into(), "-o".into()];
            args.push(compiled.display().to_string());
            args.extend(clamav.iter().map(|f| f.display().to_string()));
            let c = run::run(&giva, &args, a.timeout, &scratch)?;
            anyhow::ensure!(c.code == Some(0), "giva db compile: {}", c.stderr);
            // As the others scan: the bytes of each file, no container
            // opened (`--max-recursion 0`); and, after every peer, as giva
            // scans by default.
            let giva_args = |raw: bool| -> Vec<String> {
                let mut v: Vec<String> = [
                    "scan",
                    "--threads",
                    "1",
                    "--allmatch",
                    "--infected",
                    "--no-summary",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if raw {
                    v.extend(["--max-recursion".to_string(), "0".into()]);
                }
                v.extend([
                    "-d".to_string(),
                    compiled.display().to_string(),
                    files.clone(),
                ]);
                v
            };
            let args = giva_args(true);
            runs.push(engine_run("giva", &giva, &args, a, &scratch)?);
            // Above `all_peers_up_to` only Hyperscan, the fastest peer.
            let all_peers = count <= a.all_peers_up_to;
            if let Some(cs) = clamscan.as_ref().filter(|_| all_peers) {
                let mut args: Vec<String> = vec![
                    "--no-summary".into(),
                    "--infected".into(),
                    "--allmatch".into(),
                ];
                args.extend(crate::compare::CLAMSCAN_RAW.iter().map(|s| s.to_string()));
                args.extend(
                    crate::compare::CLAMSCAN_LIMITS
                        .iter()
                        .map(|s| s.to_string()),
                );
                for f in &clamav {
                    args.push("-d".into());
                    args.push(f.display().to_string());
                }
                args.push("-r".into());
                args.push(files.clone());
                runs.push(engine_run("clamscan (raw)", cs, &args, a, &scratch)?);
            }
            if let (Some(yara), Some(yarac), true) = (&yara, &yarac, all_peers) {
                let rules = dir.join("sigs.yarc");
                let c = run::run(
                    yarac,
                    &[
                        "-w".into(),
                        dir.join("sigs.yar").display().to_string(),
                        rules.display().to_string(),
                    ],
                    a.timeout,
                    &scratch,
                )?;
                if c.code == Some(0) {
                    let args: Vec<String> = vec![
                        "-w".into(),
                        "-p".into(),
                        "1".into(),
                        "-r".into(),
                        "-C".into(),
                        rules.display().to_string(),
                        files.clone(),
                    ];
                    runs.push(engine_run("yara", yara, &args, a, &scratch)?);
                }
            }
            for (engine, script, input) in [
                ("YARA-X", "scan_yarax.py", "sigs.yar"),
                ("Hyperscan", "scan_hyperscan.py", "sigs.hs.json"),
            ] {
                if !all_peers && engine != "Hyperscan" {
                    continue;
                }
                let args = vec![
                    scripts.join(script).display().to_string(),
                    dir.join(input).display().to_string(),
                    corpus.list.display().to_string(),
                ];
                runs.push(engine_run(engine, &python, &args, a, &scratch)?);
            }
            let args = giva_args(false);
            runs.push(engine_run(GIVA_OPENING, &giva, &args, a, &scratch)?);
            // One and two threads over the same files, the best of three
            // runs each (giva's runs are short, and this machine's speed
            // wanders by a third from one run to the next).
            let scaling_args = |threads: &str| {
                let mut args = giva_args(true);
                args[2] = threads.into();
                args
            };
            let three = RealArgs {
                repeat: a.repeat.max(3),
                ..a.clone()
            };
            // The first run is already one thread, best of `repeat`.
            let one_s = if a.repeat >= 3 {
                runs[0].scan_s
            } else {
                engine_run("giva", &giva, &scaling_args("1"), &three, &scratch)?.scan_s
            };
            let two = engine_run(
                "giva, 2 threads",
                &giva,
                &scaling_args("2"),
                &three,
                &scratch,
            )?;
            let two_threads_s =
                (two.found == runs[0].found && two.note.is_empty()).then_some((one_s, two.scan_s));
            eprintln!(
                "  giva, best of 3: 1 thread {one_s:.2} s, 2 threads {:.2} s {}",
                two.scan_s, two.note
            );
            let load_s = text_load(&giva, clamscan.as_deref(), &clamav, a, &scratch)?;
            for r in &runs {
                eprintln!(
                    "  {}: {:.2} s, {} detections {}",
                    r.engine,
                    r.scan_s,
                    r.found.len(),
                    r.note
                );
            }
            configs.push(Config {
                signatures: sigs.len(),
                seed,
                dropped,
                runs,
                two_threads_s,
                load_s: Some(load_s),
                hyperscan_only: !all_peers,
            });
        }
    }
    Ok(RealResult { corpus, configs })
}

impl RealResult {
    /// The report's body: one table per configuration, and whether the
    /// engines agree.
    pub fn markdown(&self) -> String {
        let mb = self.corpus.bytes as f64 / 1e6;
        let mut md = format!(
            "Corpus: {} files, {mb:.0} MB of this machine's binaries, libraries, Python sources, documentation and compressed man pages. Signatures: cut from the Rust toolchain's libraries in the mix of `bench/src/realsigs.rs` (a stand-in: no official ClamAV database is reachable here), none matching the corpus, plus {PLANTED} cut from corpus files. One core for every engine; the best of the runs. giva scans as the others do, the bytes of each file (`--max-recursion 0`); the last row is giva as it scans by default, opening the compressed man pages and normalizing text.\n",
            self.corpus.files.len()
        );
        for c in &self.configs {
            let skipped = if c.hyperscan_only {
                "clamscan, yara and YARA-X were not run at this count (`--all-peers-up-to`): clamscan alone takes over ten minutes a run.\n\n"
            } else {
                ""
            };
            md.push_str(&format!(
                "\n### {} signatures, seed {} ({} of the draw dropped for matching the corpus)\n\n{skipped}| engine | s | MB/s | detections | same as giva | note |\n|---|---|---|---|---|---|\n",
                c.signatures, c.seed, c.dropped
            ));
            let giva = c.runs.first().map(|r| r.found.clone()).unwrap_or_default();
            for r in &c.runs {
                md.push_str(&format!(
                    "| {} | {:.2} | {:.0} | {} | {} | {} |\n",
                    r.engine,
                    r.scan_s,
                    mb / r.scan_s.max(1e-9),
                    r.found.len(),
                    if r.found == giva { "yes" } else { "**no**" },
                    r.note
                ));
            }
            if let Some((one, two)) = c.two_threads_s {
                md.push_str(&format!(
                    "\ngiva, the best of three runs each: one thread {one:.2} s, `--threads 2` {two:.2} s, {:.2}×.\n",
                    one / two.max(1e-9)
                ));
            }
            if let Some((g, cs)) = c.load_s {
                md.push_str(&format!(
                    "\nText load (the `.ndb` and `.ldb`, then one small file): giva {g:.3} s{}.\n",
                    cs.map_or(String::new(), |cs| format!(", clamscan {cs:.3} s"))
                ));
            }
            for r in &c.runs[1..] {
                let only_giva: Vec<_> = giva.difference(&r.found).take(5).collect();
                let only_peer: Vec<_> = r.found.difference(&giva).take(5).collect();
                if !only_giva.is_empty() || !only_peer.is_empty() {
                    md.push_str(&format!(
                        "\n{}: giva only {only_giva:?}; {} only {only_peer:?}\n",
                        r.engine, r.engine
                    ));
                }
            }
        }
        md
    }
}

impl RealResult {
    /// The headline rows: giva beside each peer, per configuration, with
    /// the issue's targets where it sets one.
    pub fn summary(&self, command: &str) -> crate::latest::Summary {
        let mut s = crate::latest::Summary::new(
            "real",
            "Scan throughput on real files, one core: giva beside clamscan, yara, YARA-X and Hyperscan",
            command,
            "real.md",
        );
        let mb = self.corpus.bytes as f64 / 1e6;
        s.setup = format!(
            "This machine's own files ({} files, {mb:.0} MB: binaries, libraries, Python sources, documentation, compressed man pages); signatures cut from the Rust toolchain's libraries in a mix written down in `bench/src/realsigs.rs` (16–40 bytes; 25% with `??`, 10% with a gap, 5% with a nibble, 5% with an alternation, 1% logical). No official ClamAV database is reachable here: this mix stands in for one. giva scans as the peers do, the bytes of each file (`--max-recursion 0`); the full report also times it opening the compressed man pages and normalizing text, as it does by default.",
            self.corpus.files.len()
        );
        let rate = |r: &EngineRun| mb / r.scan_s.max(1e-9);
        // Median and minimum over the seeds of one count.
        let stats = |mut v: Vec<f64>| -> (f64, f64) {
            v.sort_by(f64::total_cmp);
            let median = v.get(v.len() / 2).copied().unwrap_or(0.0);
            (median, v.first().copied().unwrap_or(0.0))
        };
        let mut counts: Vec<usize> = self.configs.iter().map(|c| c.signatures).collect();
        counts.dedup();
        for count in counts {
            let configs: Vec<&Config> = self
                .configs
                .iter()
                .filter(|c| c.signatures == count && !c.runs.is_empty())
                .collect();
            let seeds = configs.len();
            let big = count >= 50_000;
            let (median, min) = stats(configs.iter().map(|c| rate(&c.runs[0])).collect());
            let goal = if big { 800.0 } else { 1200.0 };
            s.rows.push(crate::latest::Row {
                measure: format!("giva, {count} signatures: median (minimum) of {seeds} seeds"),
                giva: format!("{median:.0} MB/s ({min:.0})"),
                peer: String::new(),
                ratio: String::new(),
                target: format!("≥ {goal:.0} MB/s"),
                met: Some(min >= goal),
            });
            let scaling: Vec<f64> = configs
                .iter()
                .filter_map(|c| c.two_threads_s.map(|(one, two)| one / two.max(1e-9)))
                .collect();
            if !scaling.is_empty() {
                let (median, min) = stats(scaling);
                s.rows.push(crate::latest::Row {
                    measure: format!("giva, {count} signatures: 2 threads against 1, same files, best of 3 runs each"),
                    giva: format!("{median:.2}× ({min:.2}×)"),
                    peer: String::new(),
                    ratio: String::new(),
                    target: "≥ 1.8×".into(),
                    met: Some(min >= 1.8),
                });
            }
            let loads: Vec<(f64, f64)> = configs
                .iter()
                .filter_map(|c| c.load_s.and_then(|(g, cs)| Some((g, cs?))))
                .collect();
            if !loads.is_empty() {
                let (giva_median, _) = stats(loads.iter().map(|l| l.0).collect());
                let (clam_median, _) = stats(loads.iter().map(|l| l.1).collect());
                // The worst seed is the one where giva is slowest beside
                // clamscan: the ratio's minimum.
                let (ratio_median, ratio_min) =
                    stats(loads.iter().map(|(g, c)| c / g.max(1e-9)).collect());
                s.rows.push(crate::latest::Row {
                    measure: format!(
                        "{count} signatures: text load (`.ndb` and `.ldb`, one small file scanned)"
                    ),
                    giva: format!("{giva_median:.3} s"),
                    peer: format!("clamscan: {clam_median:.3} s"),
                    ratio: format!("{ratio_median:.2}× ({ratio_min:.2}×) as fast"),
                    target: "≥ 1× (no slower)".into(),
                    met: Some(ratio_min >= 1.0),
                });
            }
            let engines: Vec<String> = configs[0].runs[1..]
                .iter()
                .map(|r| r.engine.clone())
                .filter(|e| e != GIVA_OPENING)
                .collect();
            for engine in engines {
                let pairs: Vec<(&EngineRun, &EngineRun)> = configs
                    .iter()
                    .filter_map(|c| {
                        c.runs[1..]
                            .iter()
                            .find(|r| r.engine == engine)
                            .map(|r| (&c.runs[0], r))
                    })
                    .collect();
                let same = pairs
                    .iter()
                    .all(|(g, r)| g.found == r.found && r.note.is_empty());
                let (peer_median, _) = stats(pairs.iter().map(|(_, r)| rate(r)).collect());
                let (ratio_median, ratio_min) = stats(
                    pairs
                        .iter()
                        .map(|(g, r)| rate(g) / rate(r).max(1e-9))
                        .collect(),
                );
                let target = match (engine.as_str(), big) {
                    ("Hyperscan", false) => Some(1.5),
                    ("Hyperscan", true) => Some(1.0),
                    ("clamscan (raw)", false) => Some(35.0),
                    _ => None,
                };
                s.rows.push(crate::latest::Row {
                    measure: format!(
                        "{count} signatures: giva against {engine}{}",
                        if same {
                            ", same detections"
                        } else {
                            ", **detections differ**"
                        }
                    ),
                    giva: format!("{median:.0} MB/s"),
                    peer: format!("{engine}: {peer_median:.0} MB/s"),
                    ratio: format!("{ratio_median:.1}× ({ratio_min:.1}×)"),
                    target: target.map_or(String::new(), |t| format!("≥ {t}×")),
                    met: target.map(|t| ratio_min >= t),
                });
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engines_output_reads_as_the_same_detections() {
        let giva = "/c/files/00001-libz.so: Real.3.UNOFFICIAL FOUND\n/c/files/00002-ls: Planted.1 FOUND\n/c/files/00003-x: OK\n";
        let yara = "Real_3 /c/files/00001-libz.so\nPlanted_1 /c/files/00002-ls\n";
        let python = "/c/files/00001-libz.so: Real_3\n/c/files/00002-ls: Planted.1\n";
        assert_eq!(detections(giva), detections(yara));
        assert_eq!(detections(giva), detections(python));
        assert_eq!(detections(giva).len(), 2);
    }
}
