//! Writing results: percentiles, and a markdown file per run under
//! `bench/results/history/<date>/` with the date, commit and machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Number of values.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// Computes percentiles (nearest rank) of `values`.
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    Percentiles {
        n: values.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    let now = std::time::SystemTime::now();
    humantime::format_rfc3339_seconds(now).to_string()[..10].to_string()
}

/// The machine: CPU model, cores and memory, from /proc.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    });
    let mem = mem_kb.map_or("? GiB".into(), |kb| {
        format!("{:.0} GiB", kb as f64 / 1048576.0)
    });
    format!("{cpu}, {cores} cores, {mem}")
}

/// The current git commit, if any, marked when the work tree has
/// uncommitted changes (numbers taken then belong to no commit exactly).
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c} (+ uncommitted changes)"),
            _ => c,
        },
        None => "unknown".into(),
    }
}

/// Today's directory of dated runs under `root` (`history/<date>/`),
/// created if needed.
///
/// # Errors
///
/// The directory cannot be created.
pub fn results_dir(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join("history").join(today());
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The header every report starts with.
pub fn header(title: &str, command: &str) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "# {title}\n\n- date: {now}\n- commit: {}\n- machine: {}\n- command: `{command}`\n\n",
        commit(),
        machine()
    )
}

/// Milliseconds in a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
