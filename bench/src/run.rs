//! Running peer programs: wall time, peak RSS (through `/usr/bin/time`
//! when it is there) and a hard timeout on every run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run gave.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Wall time.
    pub wall: Duration,
    /// Peak resident set of the program, in KiB, if known.
    pub max_rss_kb: Option<u64>,
    /// The exit code (None if killed).
    pub code: Option<i32>,
    /// True if the timeout killed it.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (the last 4 KiB).
    pub stderr: String,
}

impl Run {
    /// Peak RSS in MiB, if known.
    pub fn rss_mib(&self) -> Option<f64> {
        self.max_rss_kb.map(|k| k as f64 / 1024.0)
    }
}

/// Finds `name` on `PATH` (or the sbin directories, where `clamd` lives).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Sends `signal` to the process group `pgid`.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Runs `program args` in its own process group, waits at most `timeout`
/// (then kills the group), and measures it. `scratch` holds the output
/// files.
///
/// # Errors
///
/// The program cannot be started.
pub fn run(
    program: &Path,
    args: &[String],
    timeout: Duration,
    scratch: &Path,
) -> anyhow::Result<Run> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(scratch)?;
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let time_path = scratch.join("time");
    let _ = std::fs::remove_file(&time_path);
    let gnu_time = Path::new("/usr/bin/time");
    let mut cmd = if gnu_time.is_file() {
        let mut c = Command::new(gnu_time);
        c.arg("-f")
            .arg("%e %M")
            .arg("-o")
            .arg(&time_path)
            .arg(program)
            .args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
    let pid = child.id();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > timeout {
            timed_out = true;
            kill_group(pid, "KILL");
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    let max_rss_kb = std::fs::read_to_string(&time_path).ok().and_then(|t| {
        t.lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse().ok())
    });
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let mut cut = stderr.len().saturating_sub(4096);
    while !stderr.is_char_boundary(cut) {
        cut += 1;
    }
    let stderr = stderr[cut..].to_string();
    // /usr/bin/time exits with the program's code.
    let code = status.and_then(|s| s.code());
    Ok(Run {
        wall,
        max_rss_kb,
        code,
        timed_out,
        stdout,
        stderr,
    })
}

/// `VmHWM` (peak RSS) of a running process, in KiB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
}

/// The machine's load averages (`/proc/loadavg`).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
