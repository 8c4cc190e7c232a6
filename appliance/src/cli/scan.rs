//! `giva scan`: scans local files, printing what `clamscan` prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use giva_content::{Decomposer, Limits, Report};
use giva_engine::{
    IdleScanners, MMAP_THRESHOLD, Outcome, PoolConfig, Priority, ScanOptions, ScanPool,
};
use giva_signatures::map::MappedFile;
use serde::Serialize;

use crate::cli::args::ScanArgs;
use crate::cli::backlog::{Backlog, CloseOnDrop, CloseOnPanic};
use crate::loading::load_signatures;

/// Why one file could not be scanned (printed as its line, as `clamscan`
/// prints `ERROR`).
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// Opening or reading it failed.
    #[error(transparent)]
    Scan(#[from] giva_engine::ScanError),
    /// Mapping it failed.
    #[error("{}: {source}", path.display())]
    Map {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pool refused the split scan.
    #[error(transparent)]
    Busy(#[from] giva_engine::Busy),
    /// The split scan gave no result.
    #[error("scan failed: {0}")]
    Job(#[from] giva_engine::JobError),
}

/// One file's result in `--json` output.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    path: &'a Path,
    /// `found`, `ok`, `empty` (no bytes), `not_scanned` or `error`.
    status: &'a str,
    signatures: Vec<&'a str>,
    /// Where each detection was made: the file, or a member inside it
    /// (`outer.zip!mid.zip!p.exe`), in the order of `signatures`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    found_in: Vec<String>,
    /// What inside the file was not scanned, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_scanned: Vec<JsonGap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    bytes_scanned: u64,
}

#[derive(Debug, Serialize)]
struct JsonGap {
    path: String,
    why: &'static str,
    detail: String,
}

/// A file's name as the walk names the outermost layer.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Memory or a mapping, shared with the pool's split scan and kept for
/// the walk after it.
struct Shared(std::sync::Arc<MappedFile>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Debug, Default)]
struct Totals {
    files: AtomicU64,
    infected: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
}

/// Walks the files to scan: files as given; directories' files, and with
/// `recursive` their subdirectories' too (symlinks are not followed below
/// the top level). Each file goes to `file` as it is found, each
/// unreadable entry to `error`; returns the number of directories.
pub fn walk(
    paths: &[PathBuf],
    recursive: bool,
    mut file: impl FnMut(PathBuf),
    mut error: impl FnMut(PathBuf, String),
) -> u64 {
    let mut dirs = 0u64;
    for root in paths {
        match std::fs::metadata(root) {
            Ok(md) if md.is_file() => file(root.clone()),
            Ok(md) if md.is_dir() => {
                let depth = if recursive { usize::MAX } else { 1 };
                for entry in walkdir::WalkDir::new(root)
                    .max_depth(depth)
                    .follow_links(false)
                {
                    match entry {
                        Ok(e) if e.file_type().is_file() => file(e.into_path()),
                        Ok(e) if e.file_type().is_dir() => dirs += 1,
                        Ok(_) => {}
                        Err(e) => error(
                            e.path().map_or_else(|| root.clone(), Path::to_path_buf),
                            e.to_string(),
                        ),
                    }
                }
            }
            Ok(_) => {} // sockets, devices, fifos: skipped like clamscan
            Err(e) => error(root.clone(), e.to_string()),
        }
    }
    dirs
}

/// Files the walk may find ahead of the scans (about 100 bytes each).
const BACKLOG: usize = 8192;

/// Reads up to `len` bytes of `f` into `buf`, which is kept from file to
/// file (grown as needed, dropped only past a few small files' size);
/// returns the bytes read (fewer if the file shrank since its size was
/// taken). A file whose size is 0 (as `/proc` and some FUSE files say of
/// content they do have) is read to its end, or to `cap` bytes.
fn read_into<'b>(
    f: &mut std::fs::File,
    len: usize,
    cap: u64,
    buf: &'b mut Vec<u8>,
) -> std::io::Result<&'b [u8]> {
    use std::io::Read;
    // A buffer grown by such a file is not kept for the small ones.
    if buf.capacity() > 4 * MMAP_THRESHOLD as usize {
        *buf = Vec::new();
    }
    if len == 0 {
        buf.clear();
        f.take(cap).read_to_end(buf)?;
        return Ok(buf);
    }
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let mut filled = 0;
    while filled < len {
        match f.read(&mut buf[filled..len]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(&buf[..filled])
}

/// Runs `giva scan`; returns the exit code (0 clean, 1 found, 2 error).
///
/// # Errors
///
/// The databases cannot be loaded or the engine cannot be built.
pub fn run(args: &ScanArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let (db, engine) = load_signatures(
        &args.databases,
        giva_signatures::LoadOptions {
            allow_empty: args.allow_empty,
        },
    )?;
    let info = db.info();
    let known: u64 = info.loaded.values().sum();
    if let Some(line) = skip_line(&info.skipped) {
        eprintln!("{line}");
    }
    let opts = ScanOptions {
        all_match: args.all_match,
        ..ScanOptions::default()
    };
    let limits = Limits {
        max_file_size: args.max_file_size,
        max_scan_size: args.max_scan_size,
        max_files: args.max_files,
        max_recursion: args.max_recursion,
        max_scan_time: match args.max_scan_time_ms {
            0 => std::time::Duration::MAX,
            ms => std::time::Duration::from_millis(ms),
        },
        ..Limits::default()
    };
    let decomposer = Decomposer::new(engine.clone(), opts.clone(), limits);
    let totals = Totals::default();
    let out = Mutex::new(std::io::stdout());
    // The walk runs beside the scans and lengthens the bar as it goes.
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} files {binary_bytes_per_sec} [{elapsed_precise}] {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let emit = |line: String| {
        if let Some(b) = &bar {
            b.suspend(|| {
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(o, "{line}");
            });
        } else {
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "{line}");
        }
    };
    let workers = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Large files are split into overlapping segments scanned in parallel
    // on a pool of all the threads, so one big file uses every core; the
    // walk needs no more threads than there are files.
    let pool = ScanPool::new(PoolConfig {
        workers,
        ..PoolConfig::default()
    });
    let split_at = pool.split_config().threshold as u64;
    // A fresh scanner's scratch for each small file cost about 4% of a
    // scan of many small files.
    let idle = IdleScanners::new(engine.clone(), workers);
    // Each file's own bytes are scanned as before; the walk then opens
    // it if its magic says it is a container (one check for one that is
    // not).
    let scan_one = |path: &Path, buf: &mut Vec<u8>| -> Result<Report, FileError> {
        let started = Instant::now();
        let io = |source| giva_engine::ScanError::Io {
            path: path.to_owned(),
            source,
        };
        // Opened once: its size from the open file, and a small one read
        // from it (a second open by path cost a lookup of every
        // directory on the way, for each of thousands of small files).
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.len());
        if len < MMAP_THRESHOLD {
            // Into the thread's own buffer, the size the open file gave
            // (as a mapping would take it): one read, where
            // `read_to_end` asked the size again and read once more for
            // the end, and a fresh buffer for each file was freed back
            // to the system at a cost to every thread.
            // (One byte past the size limit, so that the scan reports it.)
            let cap = args.max_file_size.max(MMAP_THRESHOLD).saturating_add(1);
            let data = read_into(&mut f, len as usize, cap, buf).map_err(io)?;
            let opts = giva_content::typed_options(&opts, data);
            let root = idle.scan_bytes(data, &opts);
            return Ok(decomposer.scan_inside(data, &file_name(path), root, started));
        }
        // Operator-named local files are mapped under the policy of
        // `giva_signatures::map`: reading would copy every byte once more.
        let map = MappedFile::open_operator_file(path).map_err(|source| FileError::Map {
            path: path.to_owned(),
            source,
        })?;
        // With one thread a split buys nothing and costs its overlaps and
        // merge: about 4% of a 1-thread scan of the 1 GiB bench corpus.
        let map = std::sync::Arc::new(map);
        let opts = giva_content::typed_options(&opts, &map);
        let root = if workers == 1 || len <= split_at {
            engine.scan_mapped(&map, &opts)
        } else {
            pool.scan_bytes(
                &engine,
                Shared(map.clone()),
                &opts,
                "local",
                Priority::OnDemand,
            )?
            .wait()?
        };
        Ok(decomposer.scan_inside(&map, &file_name(path), root, started))
    };
    // As clamscan: with --alert-exceeds-max (--alert-encrypted), a limit
    // (an encrypted member) is a detection of its own.
    let alerting =
        |r: Report| -> Report { r.with_alerts(args.alert_exceeds_max, args.alert_encrypted) };
    // The files as the walk finds them (bounded: a walk far ahead of the
    // scans would only hold memory).
    let queue = Backlog::<PathBuf>::new(BACKLOG);
    let dirs = std::thread::scope(|s| {
        let walker = s.spawn(|| {
            // The queue closes when the walk ends (or fails), and the
            // workers stop once it is empty.
            let _close = CloseOnDrop(&queue);
            walk(
                &args.paths,
                args.recursive,
                |path| {
                    if let Some(b) = &bar {
                        b.inc_length(1);
                    }
                    queue.push(path);
                },
                |path, err| {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    emit(render(args, &path, Err(&err)));
                },
            )
        });
        for _ in 0..workers {
            s.spawn(|| {
                let _release = CloseOnPanic(&queue);
                let mut buf = Vec::new();
                while let Some(path) = queue.pop() {
                    let path = path.as_path();
                    let result = scan_one(path, &mut buf).map(alerting);
                    // As clamscan: an empty file is said to be empty, and
                    // not counted as scanned.
                    if !result.as_ref().is_ok_and(is_empty) {
                        totals.files.fetch_add(1, Ordering::Relaxed);
                    }
                    match &result {
                        Ok(r) => {
                            totals
                                .bytes
                                .fetch_add(r.result.bytes_scanned, Ordering::Relaxed);
                            if r.result.is_infected() {
                                totals.infected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let infected = matches!(&result, Ok(r) if r.result.is_infected());
                    if !args.infected_only || infected || result.is_err() {
                        let shown = result.as_ref().map_err(ToString::to_string);
                        emit(render(
                            args,
                            path,
                            shown.as_ref().copied().map_err(String::as_str),
                        ));
                    }
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
            });
        }
        walker.join().unwrap_or_default()
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let infected = totals.infected.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);
    if !args.no_summary && args.json {
        let summary = JsonSummary {
            known_viruses: known,
            skipped: &info.skipped,
            database_version: db.version(),
            scanned_directories: dirs,
            scanned_files: totals.files.load(Ordering::Relaxed),
            infected_files: infected,
            errors,
            bytes_scanned: totals.bytes.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
        };
        let row = serde_json::json!({ "summary": summary });
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "{row}");
    }
    if !args.no_summary && !args.json {
        let elapsed = started.elapsed().as_secs_f64();
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "\n----------- SCAN SUMMARY -----------");
        let _ = writeln!(o, "Known viruses: {known}");
        let _ = writeln!(o, "Engine version: giva {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(o, "Database version: {}", db.version());
        let _ = writeln!(o, "Scanned directories: {dirs}");
        let _ = writeln!(o, "Scanned files: {}", totals.files.load(Ordering::Relaxed));
        let _ = writeln!(o, "Infected files: {infected}");
        if errors > 0 {
            let _ = writeln!(o, "Total errors: {errors}");
        }
        let mib = totals.bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
        let _ = writeln!(o, "Data scanned: {mib:.2} MiB");
        let _ = writeln!(o, "Time: {elapsed:.3} sec");
    }
    // The signatures are freed beside the exit rather than before it: at
    // 100k text signatures that took 20-35 ms of the run.
    let _ = std::thread::Builder::new()
        .name("giva-free".into())
        .spawn(move || drop((db, engine, decomposer, idle)));
    Ok(if infected > 0 {
        1
    } else if errors > 0 {
        2
    } else {
        0
    })
}

/// The last line of `--json` output (unless `--no-summary`): the text
/// summary's numbers, and what the database skipped.
#[derive(Serialize)]
struct JsonSummary<'a> {
    known_viruses: u64,
    skipped: &'a std::collections::BTreeMap<String, u64>,
    database_version: &'a str,
    scanned_directories: u64,
    scanned_files: u64,
    infected_files: u64,
    errors: u64,
    bytes_scanned: u64,
    seconds: f64,
}

/// The one line printed to stderr at load when the databases held
/// signatures (or files) that were not loaded, with a count per reason,
/// as ClamAV warns at load. `None` when nothing was skipped.
pub(crate) fn skip_line(skipped: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = skipped.values().sum();
    if total == 0 {
        return None;
    }
    let kinds: Vec<String> = skipped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    Some(format!(
        "giva: skipped at load ({total}, by kind): {}",
        kinds.join(", ")
    ))
}

/// A file of no bytes (clamscan's `Empty file`).
fn is_empty(r: &Report) -> bool {
    r.result.outcome == Outcome::TooSmall && r.result.bytes_scanned == 0
}

fn render(args: &ScanArgs, path: &Path, result: Result<&Report, &str>) -> String {
    let (status, names, error, bytes) = match result {
        Ok(r) if is_empty(r) => ("empty", Vec::new(), None, 0),
        Ok(r) => match r.result.outcome {
            Outcome::Infected => ("found", r.result.names(), None, r.result.bytes_scanned),
            Outcome::LimitExceeded(l) => {
                let what = r.gaps.first().map_or_else(
                    || format!("limit {}", l.name()),
                    |g| {
                        let at = if g.path.is_empty() {
                            String::new()
                        } else {
                            format!(" at {}", Report::joined(&file_name(path), &g.path))
                        };
                        format!("{}: {}{at}", l.name(), g.detail)
                    },
                );
                (
                    "not_scanned",
                    Vec::new(),
                    Some(what),
                    r.result.bytes_scanned,
                )
            }
            _ => ("ok", Vec::new(), None, r.result.bytes_scanned),
        },
        Err(e) => ("error", Vec::new(), Some(e.to_string()), 0),
    };
    if args.json {
        let name = file_name(path);
        let (found_in, not_scanned) = match result {
            Ok(r) => (
                r.found
                    .iter()
                    .map(|f| Report::joined(&name, &f.path))
                    .collect(),
                r.gaps
                    .iter()
                    .map(|g| JsonGap {
                        path: Report::joined(&name, &g.path),
                        why: g.limit.name(),
                        detail: g.detail.clone(),
                    })
                    .collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let row = JsonRow {
            path,
            status,
            signatures: names,
            found_in,
            not_scanned,
            error,
            bytes_scanned: bytes,
        };
        return serde_json::to_string(&row).unwrap_or_default();
    }
    let p = path.display();
    match status {
        "found" => names
            .iter()
            .map(|n| format!("{p}: {n} FOUND"))
            .collect::<Vec<_>>()
            .join("\n"),
        "ok" => format!("{p}: OK"),
        "empty" => format!("{p}: Empty file"),
        "not_scanned" => format!("{p}: NOT SCANNED ({})", error.unwrap_or_default()),
        _ => format!("{p}: ERROR {}", error.unwrap_or_default()),
    }
}
