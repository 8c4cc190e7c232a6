//! `bench`: giva's measurements. Results go to `bench/results/<date>/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use giva_bench::notify::{self, Scenario};
use giva_bench::report;

/// giva's benchmark harness.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Where results are written (a dated subdirectory is created).
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detection → manager-commit latency, immediate notify vs heartbeat only.
    Notify {
        /// Detections per scenario at 1/s.
        #[arg(long, default_value_t = 20)]
        slow_count: u32,
        /// Detections per scenario at 100/s.
        #[arg(long, default_value_t = 1000)]
        fast_count: u32,
        /// Heartbeat interval for the heartbeat-only runs, in seconds (the
        /// product default is 600; a shorter one keeps the run short, and
        /// the latency scales with it).
        #[arg(long, default_value_t = 10)]
        heartbeat_secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Notify { slow_count, fast_count, heartbeat_secs } => {
            let heartbeat = Duration::from_secs(heartbeat_secs);
            let mut md = report::header(
                "Detection → manager latency",
                &format!(
                    "cargo run -p giva-bench --release -- notify --slow-count {slow_count} --fast-count {fast_count} --heartbeat-secs {heartbeat_secs}"
                ),
            );
            md.push_str("Latency from `detected_at` (appliance) to `received_at` (manager commit), one clock, real gRPC on loopback, SQLite with fsync on both sides.\n\n");
            md.push_str("| mode | rate | detections | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n");
            for (immediate, mode) in [(true, "immediate notify"), (false, "heartbeat only")] {
                for (rate, count) in [(1, slow_count), (100, fast_count)] {
                    let mode_label = if immediate { mode.to_string() } else { format!("{mode} ({heartbeat_secs} s)") };
                    eprintln!("running: {mode_label} at {rate}/s ({count} detections)");
                    let p = rt.block_on(notify::run(Scenario { rate, count, immediate, heartbeat }))?;
                    let row = format!(
                        "| {mode_label} | {rate}/s | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                        p.n, p.p50, p.p90, p.p99, p.max
                    );
                    eprint!("{row}");
                    md.push_str(&row);
                }
            }
            md.push_str(&format!("\nWith the product default heartbeat of 600 s, heartbeat-only latency scales with the interval: on average half of it, at worst all of it. Target: immediate p99 < 100 ms.\n"));
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("notify.md");
            std::fs::write(&path, md)?;
            eprintln!("written: {}", path.display());
        }
    }
    Ok(())
}
