//! `bench compare`: giva beside ClamAV on one corpus and one set of
//! signatures, in one run, with the memory-read bandwidth as the ceiling.
//!
//! For every body-signature count: compile (`giva db compile`), load
//! (`giva scan` and `clamscan` of a tiny file), then the corpus with
//! `giva scan` on one thread and on all cores, `clamscan` in raw mode and
//! in its default mode, and `clamdscan --multiscan` against a `clamd`
//! started for the run. Every scan runs with all-match on, so the FOUND
//! sets can be compared with each other and with the corpus manifest.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::corpus::{self, CorpusSpec, Manifest};
use crate::latest::{Row, Summary};
use crate::run::{self, Run};
use crate::sigs::{self, SigSpec};

/// clamscan's flags that turn every parser off (clamav-formats.md §13).
pub const CLAMSCAN_RAW: &[&str] = &[
    "--scan-archive=no",
    "--scan-pe=no",
    "--scan-elf=no",
    "--scan-ole2=no",
    "--scan-pdf=no",
    "--scan-swf=no",
    "--scan-html=no",
    "--scan-xmldocs=no",
    "--scan-hwp3=no",
    "--scan-onenote=no",
    "--scan-mail=no",
    "--scan-image=no",
    "--normalize=no",
];

/// clamscan's size and time limits, raised so every corpus file is scanned
/// whole (the defaults skip files over 25 MiB and report them clean).
pub const CLAMSCAN_LIMITS: &[&str] = &[
    "--max-filesize=1000M",
    "--max-scansize=1000M",
    "--max-scantime=3600000",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct CompareArgs {
    /// Seed of the corpus and the signatures.
    pub seed: u64,
    /// Corpus size in bytes.
    pub size: u64,
    /// Body-signature counts, one configuration each.
    pub body: Vec<usize>,
    /// Logical signatures in every configuration.
    pub logical: usize,
    /// Hash signatures in every configuration.
    pub hashes: usize,
    /// Where corpora and signature sets are generated (and reused).
    pub work: PathBuf,
    /// Timeout of each run.
    pub timeout: Duration,
    /// Skip clamd.
    pub no_clamd: bool,
    /// Skip clamscan's default mode.
    pub no_clamscan_default: bool,
    /// Runs of each scan and load; the fastest counts (a shared machine's
    /// noise only ever adds time).
    pub repeat: usize,
    /// The directory holding the `giva` binary.
    pub bin_dir: PathBuf,
}

/// One row of the scan table.
#[derive(Debug, Clone)]
pub struct ScanRow {
    /// Configuration label.
    pub config: String,
    /// Body signatures.
    pub body: usize,
    /// Tool label.
    pub tool: String,
    /// Threads used ("1" or "all").
    pub threads: String,
    /// Wall time of the run in seconds, load included.
    pub wall_s: f64,
    /// Database load time subtracted for `scan_s`.
    pub load_s: f64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Peak RSS in MiB.
    pub rss_mib: Option<f64>,
    /// The FOUND set.
    pub found: BTreeSet<(String, String)>,
    /// What went wrong, if anything.
    pub note: String,
}

impl ScanRow {
    /// Scan time without the database load.
    pub fn scan_s(&self) -> f64 {
        (self.wall_s - self.load_s).max(1e-3)
    }
    /// MB/s (10^6) of the scan without the load.
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.scan_s()
    }
}

/// One row of the load table.
#[derive(Debug, Clone)]
pub struct LoadRow {
    /// Configuration label.
    pub config: String,
    /// Body signatures.
    pub body: usize,
    /// What was measured.
    pub what: String,
    /// Seconds.
    pub secs: Option<f64>,
    /// Peak RSS in MiB.
    pub rss_mib: Option<f64>,
    /// Note.
    pub note: String,
}

/// Everything a compare run measured.
#[derive(Debug, Clone, Default)]
pub struct CompareResult {
    /// Scans.
    pub scans: Vec<ScanRow>,
    /// Loads and compiles.
    pub loads: Vec<LoadRow>,
    /// Expected detections per configuration.
    pub expected: Vec<(String, BTreeSet<(String, String)>)>,
    /// Memory read bandwidth, one core, GB/s.
    pub bw_one: f64,
    /// Memory read bandwidth, all cores, GB/s.
    pub bw_all: f64,
    /// Per configuration, one core's memory read measured right before and
    /// right after its 1-thread `giva scan` (GB/s each). The probe reads
    /// differently from one quarter of an hour to the next (10.5 to 14.7
    /// GB/s within a day here), so the quarter-ceiling target is also
    /// checked against these readings (the higher one), not only against
    /// a probe taken minutes after the scan.
    pub bw_near: Vec<(String, [f64; 2])>,
    /// Notes (skipped peers, versions, …).
    pub notes: Vec<String>,
    /// Corpus description.
    pub corpus: String,
}

/// Parses `path: Name FOUND` lines into (path relative to `root`, name).
pub fn found_set(stdout: &str, root: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_suffix(" FOUND") else {
            continue;
        };
        let Some(i) = rest.rfind(": ") else { continue };
        let (path, name) = (&rest[..i], &rest[i + 2..]);
        let path = path
            .strip_prefix(root)
            .unwrap_or(path)
            .trim_start_matches('/');
        out.insert((path.to_string(), name.to_string()));
    }
    out
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn config_label(body: usize, logical: usize, hashes: usize) -> String {
    format!(
        "{} body + {} ldb + {} hash",
        label(body),
        label(logical),
        label(hashes)
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub(crate) fn check(r: &Run, what: &str, ok_codes: &[i32]) -> String {
    if r.timed_out {
        format!("{what}: timed out after {:.0} s", r.wall.as_secs_f64())
    } else if r.code.is_none_or(|c| !ok_codes.contains(&c)) {
        let err: String = r
            .stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" / ");
        format!("{what}: exit {:?}: {err}", r.code)
    } else {
        String::new()
    }
}

/// Puts every corpus file in the page cache the same way in every run:
/// drops the file's cached pages, then reads it once, so all tools start
/// warm, from a cache filled by reads as when files come from disk.
///
/// Without the drop, the cache kept whatever filled it: the generator's
/// writes (small pages), an earlier read, or an earlier memory map. The
/// tools that read (clamscan, clamd) do not care, but `giva scan` maps
/// large files, and the kernel maps a cache of small pages with more
/// faults: about 16k per GiB after the writes against 9.5k after a read,
/// about a tenth of its 1-thread time at 10k signatures. Dropping is
/// advice: where the kernel ignores it, this only reads.
fn warm(dir: &Path) -> anyhow::Result<()> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let mut buf = vec![0u8; 1 << 20];
    for e in std::fs::read_dir(dir.join("files"))? {
        let mut f = std::fs::File::open(e?.path())?;
        // Dirty pages are not dropped: write them first. Both steps are
        // best effort; the read below is what matters.
        let _ = f.sync_data();
        let _ = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

fn clamd_ping(sock: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut b = [0u8; 8];
    matches!(s.read(&mut b), Ok(n) if b[..n].starts_with(b"PONG"))
}

struct Clamd {
    child: std::process::Child,
    conf: PathBuf,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        run::kill_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_clamd(
    clamd: &Path,
    sigdir: &Path,
    tmp: &Path,
    timeout: Duration,
) -> anyhow::Result<(Clamd, f64)> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(tmp)?;
    let sock = tmp.join("clamd.sock");
    let _ = std::fs::remove_file(&sock);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let conf = tmp.join("clamd.conf");
    // Parsers off as in clamscan's raw mode; clamd has no switch for the
    // text normalizer, so that one stays on.
    let text = format!(
        "LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\nLogFile {tmp}/clamd.log\n\
         TemporaryDirectory {tmp}\nMaxThreads {threads}\nMaxFileSize 1000M\nMaxScanSize 1000M\n\
         MaxScanTime 3600000\nBytecode no\nScanArchive no\nScanPE no\nScanELF no\nScanOLE2 no\n\
         ScanPDF no\nScanSWF no\nScanHTML no\nScanXMLDOCS no\nScanHWP3 no\nScanOneNote no\n\
         ScanMail no\nScanImage no\nPhishingSignatures no\nSelfCheck 0\n",
        sock = sock.display(),
        db = sigdir.display(),
        tmp = tmp.display(),
    );
    std::fs::write(&conf, text)?;
    let start = Instant::now();
    let child = std::process::Command::new(clamd)
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(tmp.join("clamd.out"))?)
        .stderr(std::fs::File::create(tmp.join("clamd.err"))?)
        .process_group(0)
        .spawn()?;
    let mut c = Clamd { child, conf };
    loop {
        if clamd_ping(&sock) {
            return Ok((c, start.elapsed().as_secs_f64()));
        }
        if let Ok(Some(st)) = c.child.try_wait() {
            let err = std::fs::read_to_string(tmp.join("clamd.err")).unwrap_or_default();
            anyhow::bail!(
                "clamd exited ({st}): {}",
                err.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
            );
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "clamd did not answer PING within {:.0} s",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn version(prog: &Path) -> String {
    std::process::Command::new(prog)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Runs `f` `n` times (at least once) and keeps the fastest successful run;
/// a failed or timed-out run ends the series.
pub(crate) fn best_of(n: usize, mut f: impl FnMut() -> anyhow::Result<Run>) -> anyhow::Result<Run> {
    let mut best = f()?;
    for _ in 1..n.max(1) {
        if best.timed_out || best.code.is_none_or(|c| c > 1) {
            break;
        }
        let r = f()?;
        if r.wall < best.wall {
            best = r;
        }
    }
    Ok(best)
}

/// Runs the comparison.
///
/// # Errors
///
/// The corpus or signatures cannot be written, or `giva` cannot be found.
pub fn run(a: &CompareArgs) -> anyhow::Result<CompareResult> {
    let mut res = CompareResult::default();
    let giva = a.bin_dir.join("giva");
    if !giva.is_file() {
        anyhow::bail!(
            "{} not found: build it first with `cargo build --release -p giva-appliance`",
            giva.display()
        );
    }
    std::fs::create_dir_all(&a.work)?;
    let work = a.work.canonicalize()?;
    eprintln!(
        "corpus: generating/reusing {} bytes (seed {})",
        a.size, a.seed
    );
    let t = Instant::now();
    let (cdir, manifest) = corpus::ensure(&CorpusSpec::new(a.seed, a.size), &work)?;
    let planted = manifest
        .files
        .iter()
        .filter(|f| !f.plants.is_empty())
        .count();
    res.corpus = format!(
        "{} files, {:.1} MiB ({} random, {} text-like, {} MZ-like), {planted} with planted matches; seed {}; generated in {:.1} s (or reused)",
        manifest.files.len(),
        manifest.total_bytes as f64 / 1048576.0,
        manifest.files.iter().filter(|f| f.kind == "random").count(),
        manifest.files.iter().filter(|f| f.kind == "text").count(),
        manifest.files.iter().filter(|f| f.kind == "exe").count(),
        a.seed,
        t.elapsed().as_secs_f64(),
    );
    warm(&cdir)?;
    // Tools are given `<corpus>/files`; FOUND paths are made relative to
    // `<corpus>`, as in the manifest.
    let files_dir = cdir.join("files");
    let strip = cdir.display().to_string();
    let root = files_dir.display().to_string();
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let tiny = scratch.join("tiny.txt");
    std::fs::write(&tiny, b"hello, world\n")?;

    let clamscan = run::which("clamscan");
    let clamd = run::which("clamd");
    let clamdscan = run::which("clamdscan");
    match &clamscan {
        Some(p) => res
            .notes
            .push(format!("clamscan: {} ({})", version(p), p.display())),
        None => res
            .notes
            .push("clamscan not installed: skipped (apt-get install clamav)".into()),
    }
    if a.no_clamd {
        res.notes.push("clamd: skipped (--no-clamd)".into());
    } else if clamd.is_none() || clamdscan.is_none() {
        res.notes
            .push("clamd/clamdscan not installed: skipped (apt-get install clamav-daemon)".into());
    }
    if !Path::new("/usr/bin/time").is_file() {
        res.notes.push(
            "/usr/bin/time not installed: no peak RSS for child processes (apt-get install time)"
                .into(),
        );
    }

    for &body in &a.body {
        let spec = SigSpec {
            seed: a.seed,
            body,
            logical: a.logical,
            hashes: a.hashes,
        };
        let config = config_label(body, a.logical, a.hashes);
        eprintln!("== {config}");
        let sigdir = sigs::ensure(&spec, &work)?;
        let expected = manifest.expected(body, a.logical, a.hashes);
        res.expected.push((config.clone(), expected));
        let sc = scratch.join(spec.dir_name());
        let load_row = |what: &str, r: &Run, note: String| LoadRow {
            config: config.clone(),
            body,
            what: what.into(),
            secs: note.is_empty().then_some(r.wall.as_secs_f64()),
            rss_mib: r.rss_mib(),
            note,
        };

        // Compile and load.
        let compiled = sc.join("sigs.giva");
        let r = run::run(
            &giva,
            &[
                "db".into(),
                "compile".into(),
                "-o".into(),
                compiled.display().to_string(),
                sigdir.display().to_string(),
            ],
            a.timeout,
            &sc,
        )?;
        let note = check(&r, "giva db compile", &[0]);
        eprintln!("  giva db compile: {:.2} s {note}", r.wall.as_secs_f64());
        let compiled_ok = note.is_empty();
        res.loads
            .push(load_row("giva db compile (text → file)", &r, note));
        let mut giva_load = 0.0;
        if compiled_ok {
            let args: Vec<String> = vec![
                "scan".into(),
                "-d".into(),
                compiled.display().to_string(),
                "--no-summary".into(),
                tiny.display().to_string(),
            ];
            let r = best_of(a.repeat, || run::run(&giva, &args, a.timeout, &sc))?;
            let note = check(&r, "giva load", &[0]);
            giva_load = r.wall.as_secs_f64();
            eprintln!("  giva load (compiled): {giva_load:.3} s {note}");
            res.loads.push(load_row(
                "giva load, compiled file (scan of a tiny file)",
                &r,
                note,
            ));
        }
        let args: Vec<String> = vec![
            "scan".into(),
            "-d".into(),
            sigdir.display().to_string(),
            "--no-summary".into(),
            tiny.display().to_string(),
        ];
        let r = best_of(a.repeat, || run::run(&giva, &args, a.timeout, &sc))?;
        let note = check(&r, "giva load text", &[0]);
        eprintln!("  giva load (text): {:.3} s {note}", r.wall.as_secs_f64());
        res.loads.push(load_row(
            "giva load, text signatures (scan of a tiny file)",
            &r,
            note,
        ));
        let mut clam_load = 0.0;
        if let Some(cs) = &clamscan {
            let mut args = vec![
                "--no-summary".to_string(),
                "-d".into(),
                sigdir.display().to_string(),
            ];
            args.push(tiny.display().to_string());
            let r = best_of(a.repeat, || run::run(cs, &args, a.timeout, &sc))?;
            let note = check(&r, "clamscan load", &[0]);
            clam_load = r.wall.as_secs_f64();
            eprintln!("  clamscan load: {clam_load:.3} s {note}");
            res.loads.push(load_row(
                "clamscan load, text signatures (scan of a tiny file)",
                &r,
                note,
            ));
        }

        // Scans.
        let mut scan = |tool: &str,
                        threads: &str,
                        prog: &Path,
                        args: Vec<String>,
                        load_s: f64|
         -> anyhow::Result<()> {
            eprintln!("  {tool} ({threads} threads) …");
            let r = best_of(a.repeat, || run::run(prog, &args, a.timeout, &sc))?;
            let note = check(&r, tool, &[0, 1]);
            let row = ScanRow {
                config: config.clone(),
                body,
                tool: tool.into(),
                threads: threads.into(),
                wall_s: r.wall.as_secs_f64(),
                load_s,
                bytes: manifest.total_bytes,
                rss_mib: r.rss_mib(),
                found: found_set(&r.stdout, &strip),
                note,
            };
            eprintln!(
                "    wall {:.2} s, scan {:.2} s, {:.1} MB/s, {} found {}",
                row.wall_s,
                row.scan_s(),
                row.mbps(),
                row.found.len(),
                row.note
            );
            res.scans.push(row);
            Ok(())
        };
        let mut near = None;
        if compiled_ok {
            for (threads, t) in [("1", "1"), ("all", "0")] {
                if threads == "1" {
                    near = Some([crate::bandwidth::read_bandwidth(256 << 20, 8, 1), 0.0]);
                }
                scan(
                    "giva scan",
                    threads,
                    &giva,
                    s(&[
                        "scan",
                        "-d",
                        &compiled.display().to_string(),
                        "-r",
                        "--allmatch",
                        "--no-summary",
                        "-i",
                        // Raw, as clamscan runs beside it: since giva
                        // normalizes text by default, a default scan of the
                        // text-like files here costs five times as long.
                        "--max-recursion",
                        "0",
                        "--threads",
                        t,
                        &root,
                    ]),
                    giva_load,
                )?;
                if let (Some(bw), "1") = (&mut near, threads) {
                    bw[1] = crate::bandwidth::read_bandwidth(256 << 20, 8, 1);
                    eprintln!(
                        "    one core's memory read before / after: {:.1} / {:.1} GB/s",
                        bw[0], bw[1]
                    );
                }
            }
        }
        if let Some(cs) = &clamscan {
            let mut args = s(&[
                "--no-summary",
                "-i",
                "-r",
                "--allmatch",
                "-d",
                &sigdir.display().to_string(),
            ]);
            args.extend(s(CLAMSCAN_LIMITS));
            let mut raw = args.clone();
            raw.extend(s(CLAMSCAN_RAW));
            raw.push(root.clone());
            scan("clamscan raw", "1", cs, raw, clam_load)?;
            if !a.no_clamscan_default {
                args.push(root.clone());
                scan("clamscan default", "1", cs, args, clam_load)?;
            }
        }
        if let (false, Some(cd), Some(cds)) = (a.no_clamd, &clamd, &clamdscan) {
            let tmp = sc.join("clamd");
            match start_clamd(cd, &sigdir, &tmp, a.timeout) {
                Ok((daemon, load_s)) => {
                    eprintln!("  clamd up after {load_s:.2} s");
                    let pid = daemon.child.id();
                    let args = vec![
                        "-c".to_string(),
                        daemon.conf.display().to_string(),
                        "--multiscan".into(),
                        "--allmatch".into(),
                        "--no-summary".into(),
                        "-i".into(),
                        root.clone(),
                    ];
                    let hwm_before = run::vm_hwm_kb(pid);
                    scan("clamdscan --multiscan", "all", cds, args, 0.0)?;
                    let hwm = run::vm_hwm_kb(pid);
                    if let Some(row) = res.scans.last_mut() {
                        row.rss_mib = hwm.map(|k| k as f64 / 1024.0);
                        if !row.note.is_empty() {
                            row.note.push_str("; ");
                        }
                        row.note.push_str(&format!(
                            "clamd started and loaded in {load_s:.2} s before the scan (not in the wall time); RSS is clamd's VmHWM"
                        ));
                    }
                    res.loads.push(LoadRow {
                        config: config.clone(),
                        body,
                        what: "clamd start until PING answers".into(),
                        secs: Some(load_s),
                        rss_mib: hwm_before.map(|k| k as f64 / 1024.0),
                        note: String::new(),
                    });
                    drop(daemon);
                }
                Err(e) => res.notes.push(format!("{config}: clamd: {e}")),
            }
        }
        if let Some(bw) = near {
            res.bw_near.push((config, bw));
        }
    }
    eprintln!("memory bandwidth probe …");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    res.bw_one = crate::bandwidth::read_bandwidth(256 << 20, 8, 1);
    res.bw_all = crate::bandwidth::read_bandwidth(256 << 20, 8, cores);
    Ok(res)
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.prec$}"))
}

impl CompareResult {
    /// The markdown report body (after the common header).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!("Corpus: {}.\n\n", self.corpus));
        md.push_str(&format!(
            "Memory-read ceiling (bench's probe, best of 8 passes over 256 MiB, at the end of the run): **{:.1} GB/s on one core**, {:.1} GB/s on all cores. Target per core: ≥ {:.0} MB/s (a quarter of one core's ceiling). The probe reads differently from one quarter of an hour to the next, so the targets below also check each 1-thread `giva scan` against one core's probe read right before and right after it (the higher reading).\n\n",
            self.bw_one,
            self.bw_all,
            self.bw_one * 1000.0 / 4.0
        ));
        md.push_str("## Scan throughput\n\nAll scans with all-match on (`clamdscan --multiscan` ignores `--allmatch`: clamd's MULTISCAN command has no all-match form, so it reports one signature per file; compare its `files = expected` column). `scan s` = wall − database load (measured separately, below; clamd is started before its scan). MB/s = 10^6 bytes of corpus per `scan s`. RSS = peak resident set of the scanning process (clamd: the daemon's VmHWM).\n\n");
        md.push_str("| signatures | tool | threads | wall s | scan s | MB/s | × clamscan raw | peak RSS MiB | found | = expected | files = expected | = giva | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.scans {
            let expected = self
                .expected
                .iter()
                .find(|(c, _)| *c == r.config)
                .map(|(_, e)| e);
            let same_exp = match expected {
                Some(e) if *e == r.found => "yes".to_string(),
                Some(e) => format!(
                    "no (−{} +{})",
                    e.difference(&r.found).count(),
                    r.found.difference(e).count()
                ),
                None => "?".into(),
            };
            let giva = self
                .scans
                .iter()
                .find(|g| g.config == r.config && g.tool == "giva scan" && g.threads == "all");
            let same_giva = match giva {
                Some(g) if g.found == r.found => "yes".to_string(),
                Some(g) => format!(
                    "no (−{} +{})",
                    g.found.difference(&r.found).count(),
                    r.found.difference(&g.found).count()
                ),
                None => "?".into(),
            };
            let files = |set: &BTreeSet<(String, String)>| {
                set.iter().map(|(p, _)| p.clone()).collect::<BTreeSet<_>>()
            };
            let same_files = match expected {
                Some(e) if files(e) == files(&r.found) => "yes".to_string(),
                Some(_) => "no".to_string(),
                None => "?".into(),
            };
            let clam = self
                .scans
                .iter()
                .find(|c| c.config == r.config && c.tool == "clamscan raw");
            let ratio = clam
                .filter(|c| c.note.is_empty())
                .map(|c| r.mbps() / c.mbps());
            md.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {same_files} | {} | {} |\n",
                r.config,
                r.tool,
                r.threads,
                r.wall_s,
                r.scan_s(),
                r.mbps(),
                opt(ratio, 1),
                opt(r.rss_mib, 0),
                r.found.len(),
                same_exp,
                same_giva,
                r.note
            ));
        }
        md.push_str(&self.targets());
        md.push_str("\n## Database compile and load\n\n`giva` loads: a `giva scan` of a 13-byte file (process start, open/verify, engine build). `clamscan`: the same with the text signatures.\n\n");
        md.push_str("| signatures | what | seconds | peak RSS MiB | × faster than clamscan | note |\n|---|---|---|---|---|---|\n");
        for l in &self.loads {
            let clam = self
                .loads
                .iter()
                .find(|c| c.config == l.config && c.what.starts_with("clamscan load"))
                .and_then(|c| c.secs);
            let ratio = match (clam, l.secs) {
                (Some(c), Some(s)) if l.what.starts_with("giva load") => format!("{:.1}", c / s),
                _ => "".into(),
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {ratio} | {} |\n",
                l.config,
                l.what,
                opt(l.secs, 3),
                opt(l.rss_mib, 0),
                l.note
            ));
        }
        // Differences, listed (bounded).
        let mut diffs = String::new();
        for r in &self.scans {
            if let Some((_, e)) = self.expected.iter().find(|(c, _)| *c == r.config) {
                let who = format!("{} / {} ({} threads)", r.config, r.tool, r.threads);
                for (p, n) in e.difference(&r.found).take(10) {
                    diffs.push_str(&format!("- {who}: missing `{p}: {n}`\n"));
                }
                for (p, n) in r.found.difference(e).take(10) {
                    diffs.push_str(&format!("- {who}: extra `{p}: {n}`\n"));
                }
            }
        }
        if !diffs.is_empty() {
            md.push_str("\n## Detections that differ from the manifest (first 10 each)\n\n");
            md.push_str(&diffs);
        }
        if !self.notes.is_empty() {
            md.push_str("\n## Notes\n\n");
            for n in &self.notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md
    }
}

impl CompareResult {
    /// The targets of issue 10, checked against this run.
    fn targets(&self) -> String {
        let mut md = String::from(
            "\n## Against the targets (issue 10)\n\n| signatures | target | measured | met |\n|---|---|---|---|\n",
        );
        let mut configs: Vec<(&str, usize)> = self
            .scans
            .iter()
            .map(|r| (r.config.as_str(), r.body))
            .collect();
        configs.dedup();
        let yes = |b: bool| if b { "yes" } else { "**no**" };
        for (config, body) in configs {
            let find = |tool: &str, threads: &str| {
                self.scans.iter().find(|r| {
                    r.config == config
                        && r.tool == tool
                        && r.threads == threads
                        && r.note.is_empty()
                })
            };
            let (Some(giva), Some(clam)) = (find("giva scan", "1"), find("clamscan raw", "1"))
            else {
                continue;
            };
            let ratio = giva.mbps() / clam.mbps();
            let want = if body >= 100_000 { 50.0 } else { 30.0 };
            if body >= 10_000 {
                md.push_str(&format!(
                    "| {config} | giva per core ≥ {want:.0}× clamscan raw | {ratio:.1}× | {} |\n",
                    yes(ratio >= want)
                ));
            }
            if body == 10_000 {
                md.push_str(&format!(
                    "| {config} | giva per core ≥ 1000 MB/s | {:.0} MB/s | {} |\n",
                    giva.mbps(),
                    yes(giva.mbps() >= 1000.0)
                ));
            }
            let quarter = self.bw_one * 1000.0 / 4.0;
            md.push_str(&format!(
                "| {config} | giva per core ≥ ¼ of one core's memory read at the end of the run ({quarter:.0} MB/s) | {:.0} MB/s | {} |\n",
                giva.mbps(),
                yes(giva.mbps() >= quarter)
            ));
            if let Some((_, bw)) = self.bw_near.iter().find(|(c, _)| c == config) {
                let quarter = bw[0].max(bw[1]) * 1000.0 / 4.0;
                md.push_str(&format!(
                    "| {config} | giva per core ≥ ¼ of one core's memory read next to the scan ({:.1} / {:.1} GB/s before / after: {quarter:.0} MB/s) | {:.0} MB/s | {} |\n",
                    bw[0],
                    bw[1],
                    giva.mbps(),
                    yes(giva.mbps() >= quarter)
                ));
            }
            let load = |prefix: &str| {
                self.loads
                    .iter()
                    .find(|l| l.config == config && l.what.starts_with(prefix) && l.secs.is_some())
            };
            if let (Some(g), Some(c)) = (load("giva load, compiled"), load("clamscan load")) {
                let (gs, cs) = (g.secs.unwrap_or(f64::NAN), c.secs.unwrap_or(f64::NAN));
                md.push_str(&format!(
                    "| {config} | compiled load ≥ 20× faster than clamscan | {:.1}× ({gs:.3} s vs {cs:.3} s) | {} |\n",
                    cs / gs,
                    yes(cs / gs >= 20.0)
                ));
                if let (Some(gr), Some(cr)) = (g.rss_mib, c.rss_mib) {
                    md.push_str(&format!(
                        "| {config} | load RSS below clamscan's | {gr:.0} MiB vs {cr:.0} MiB | {} |\n",
                        yes(gr < cr)
                    ));
                }
            }
        }
        md
    }
}

impl CompareResult {
    /// The headline rows for `LATEST.md`: per signature count, giva on one
    /// core and on all cores beside `clamscan` raw, the compiled load, and
    /// whether every tool found exactly the planted detections.
    pub fn summary(&self, command: &str) -> Summary {
        let mut s = Summary::new(
            "compare",
            "Scan throughput and database load, giva beside clamscan",
            command,
            "compare.md",
        );
        s.setup = format!(
            "Corpus: {}. One core's memory-read ceiling (the bench's probe): {:.1} GB/s.",
            self.corpus, self.bw_one
        );
        s.plots = vec!["compare-throughput.svg".into(), "compare-load.svg".into()];
        let mut configs: Vec<(&str, usize)> = self
            .scans
            .iter()
            .map(|r| (r.config.as_str(), r.body))
            .collect();
        configs.dedup();
        for (config, body) in configs {
            let find = |tool: &str, threads: &str| {
                self.scans.iter().find(|r| {
                    r.config == config
                        && r.tool == tool
                        && r.threads == threads
                        && r.note.is_empty()
                })
            };
            let clam = find("clamscan raw", "1");
            for (threads, label) in [("1", "one core"), ("all", "all cores")] {
                let Some(g) = find("giva scan", threads) else {
                    continue;
                };
                let ratio = clam.map(|c| g.mbps() / c.mbps());
                let (target, met) = match (threads, body, ratio) {
                    ("1", 100_000.., Some(r)) => {
                        ("≥ 50× clamscan raw".to_string(), Some(r >= 50.0))
                    }
                    ("1", 10_000.., Some(r)) => ("≥ 30× clamscan raw".to_string(), Some(r >= 30.0)),
                    _ => (String::new(), None),
                };
                s.rows.push(Row {
                    measure: format!("scan MB/s, {config}, {label}"),
                    giva: format!("{:.0} MB/s", g.mbps()),
                    peer: clam.map_or(String::new(), |c| {
                        format!("clamscan raw, one core: {:.1} MB/s", c.mbps())
                    }),
                    ratio: ratio.map_or(String::new(), |r| format!("{r:.0}×")),
                    target,
                    met,
                });
            }
            let load = |prefix: &str| {
                self.loads
                    .iter()
                    .find(|l| l.config == config && l.what.starts_with(prefix))
                    .and_then(|l| l.secs)
            };
            if let (Some(g), Some(c)) = (load("giva load, compiled"), load("clamscan load")) {
                s.rows.push(Row {
                    measure: format!("database load, {config}"),
                    giva: format!("{g:.3} s (compiled)"),
                    peer: format!("clamscan: {c:.3} s"),
                    ratio: format!("{:.0}× faster", c / g),
                    target: "≥ 20× faster".into(),
                    met: Some(c / g >= 20.0),
                });
            }
            if let Some((_, expected)) = self.expected.iter().find(|(c, _)| c == config) {
                let all_same = self
                    .scans
                    .iter()
                    .filter(|r| r.config == config && r.note.is_empty())
                    .all(|r| r.found == *expected);
                s.rows.push(Row {
                    measure: format!("detections, {config}"),
                    giva: format!("{} planted, found by every run", expected.len()),
                    peer: "clamscan: the same".into(),
                    ratio: String::new(),
                    target: "identical across tools".into(),
                    met: Some(all_same),
                });
            }
        }
        s
    }
}

/// Reads a manifest (for the `corpus` subcommand's summary).
///
/// # Errors
///
/// As [`Manifest::read`].
pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
    Manifest::read(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_lines_are_parsed_relative_to_the_root() {
        let out = "/c/files/a.bin: X.Y.UNOFFICIAL FOUND\n/c/files/b: c: d.txt: Z FOUND\n/c/files/ok: OK\n";
        let set = found_set(out, "/c");
        assert!(set.contains(&("files/a.bin".into(), "X.Y.UNOFFICIAL".into())));
        assert!(set.contains(&("files/b: c: d.txt".into(), "Z".into())));
        assert_eq!(set.len(), 2);
    }
}
