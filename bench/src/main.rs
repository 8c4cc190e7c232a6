//! `bench`: giva's measurements. Results go to `bench/results/<date>/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use giva_bench::corpus::{self, CorpusSpec, parse_size};
use giva_bench::notify::{self, Scenario};
use giva_bench::sigs::{self, SigSpec};
use giva_bench::{compare, e2e, plot, report};

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
    /// Generate a deterministic corpus and its manifest of planted matches.
    Corpus {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Total size (e.g. 100MiB, 1GiB).
        #[arg(long, default_value = "100MiB", value_parser = parse_size)]
        size: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate ClamAV-format signatures (.ndb, .ldb, .hdb, .hsb).
    Sigs {
        /// Seed (the corpus plants matches of the same seed's signatures).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Body signatures.
        #[arg(long, default_value_t = 1000)]
        body: usize,
        /// Hash signatures.
        #[arg(long, default_value_t = 0)]
        hashes: usize,
        /// Logical signatures.
        #[arg(long, default_value_t = 100)]
        logical: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// giva scan beside clamscan (raw and default) and clamd, with the
    /// memory bandwidth as the ceiling, on one generated corpus.
    Compare {
        /// Seed of corpus and signatures.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Corpus size (the full run: 1GiB).
        #[arg(long, default_value = "100MiB", value_parser = parse_size)]
        size: u64,
        /// Body-signature counts, comma-separated (the full run: 1000,10000,100000).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        body: Vec<usize>,
        /// Logical signatures in every configuration.
        #[arg(long, default_value_t = 100)]
        logical: usize,
        /// Hash signatures in every configuration (the full run: 1000000).
        #[arg(long, default_value_t = 1_000_000)]
        hashes: usize,
        /// Where corpora and signatures are generated and kept for reuse.
        #[arg(long, default_value = "bench/results/tmp")]
        work: PathBuf,
        /// Timeout of each program run, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
        /// Skip clamd.
        #[arg(long)]
        no_clamd: bool,
        /// Skip clamscan's default (non-raw) mode.
        #[arg(long)]
        no_clamscan_default: bool,
        /// Run every scan and load this many times and keep the fastest
        /// (use 3 on a busy machine).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Manager, appliance and `giva-shim load` as real processes: events/s,
    /// verdict latency, detection → manager latency, instant-clone storm.
    E2e {
        /// VMs in the instant-clone storm.
        #[arg(long, default_value_t = 500)]
        storm_vms: usize,
        /// VM counts for the cache-hit runs, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,200")]
        hit_vms: Vec<usize>,
        /// Heartbeat interval of the heartbeat-only run, in seconds.
        #[arg(long, default_value_t = 10)]
        heartbeat_secs: u64,
        /// Limit of each load run, in seconds.
        #[arg(long, default_value_t = 120)]
        duration_secs: u64,
        /// Signature database for the appliance (default: bundled).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Scratch directory (removed and recreated).
        #[arg(long, default_value = "bench/results/tmp/e2e")]
        work: PathBuf,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// The memory-read bandwidth probe alone.
    Bandwidth {
        /// Buffer size.
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        size: u64,
    },
    /// Quarantine tagging: detection → NSX tag latency, and an outbreak.
    Tagging {
        /// Detections for the latency run.
        #[arg(long, default_value_t = 200)]
        latency_count: u32,
        /// Detections per second in the latency run.
        #[arg(long, default_value_t = 20)]
        latency_rate: u32,
        /// VMs in the outbreak.
        #[arg(long, default_value_t = 500)]
        vms: u32,
        /// Detections per Notify in the outbreak.
        #[arg(long, default_value_t = 50)]
        batch: u32,
        /// The manager's tagging concurrency.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
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

fn bin_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => Ok(std::env::current_exe()?
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Corpus { seed, size, out } => {
            let m = corpus::write(&CorpusSpec::new(seed, size), &out)?;
            let planted: usize = m.files.iter().map(|f| f.plants.len()).sum();
            eprintln!(
                "{} files, {} bytes, {planted} planted matches; manifest: {}",
                m.files.len(),
                m.total_bytes,
                out.join("manifest.json").display()
            );
        }
        Command::Sigs {
            seed,
            body,
            hashes,
            logical,
            out,
        } => {
            sigs::write(
                &SigSpec {
                    seed,
                    body,
                    logical,
                    hashes,
                },
                &out,
            )?;
            eprintln!("written: {}", out.display());
        }
        Command::Bandwidth { size } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let one = giva_bench::bandwidth::read_bandwidth(size as usize, 8, 1);
            let all = giva_bench::bandwidth::read_bandwidth(size as usize, 8, cores);
            println!("memory read: {one:.1} GB/s on one core, {all:.1} GB/s on {cores} cores");
        }
        Command::Compare {
            seed,
            size,
            body,
            logical,
            hashes,
            work,
            timeout_secs,
            no_clamd,
            no_clamscan_default,
            repeat,
            bin_dir: bd,
        } => {
            let load_before = giva_bench::run::loadavg();
            let args = compare::CompareArgs {
                seed,
                size,
                body: body.clone(),
                logical,
                hashes,
                work,
                timeout: Duration::from_secs(timeout_secs),
                no_clamd,
                no_clamscan_default,
                repeat,
                bin_dir: bin_dir(bd)?,
            };
            let started = std::time::Instant::now();
            let r = compare::run(&args)?;
            let body_list: Vec<String> = body.iter().map(ToString::to_string).collect();
            let mut md = report::header(
                "giva beside ClamAV: throughput, load, detections",
                &format!(
                    "cargo run -p giva-bench --release -- compare --seed {seed} --size {size} --body {} --logical {logical} --hashes {hashes} --repeat {repeat}",
                    body_list.join(",")
                ),
            );
            md.push_str(&format!(
                "- load average (1/5/15 min) before: {load_before}, after: {}; run took {:.0} s\n\n",
                giva_bench::run::loadavg(),
                started.elapsed().as_secs_f64()
            ));
            md.push_str(&r.markdown());
            md.push_str("\n![throughput](compare-throughput.svg)\n![load](compare-load.svg)\n");
            let dir = report::results_dir(&cli.results)?;
            let tmp = tempfile::tempdir()?;
            plot::write(&r, tmp.path())?;
            std::fs::copy(
                tmp.path().join("throughput.svg"),
                dir.join("compare-throughput.svg"),
            )?;
            std::fs::copy(tmp.path().join("load.svg"), dir.join("compare-load.svg"))?;
            let path = dir.join("compare.md");
            std::fs::write(&path, md)?;
            eprintln!("written: {}", path.display());
        }
        Command::E2e {
            storm_vms,
            hit_vms,
            heartbeat_secs,
            duration_secs,
            db,
            work,
            bin_dir: bd,
        } => {
            let load_before = giva_bench::run::loadavg();
            let started = std::time::Instant::now();
            let args = e2e::E2eArgs {
                bin_dir: bin_dir(bd)?,
                work,
                storm_vms,
                hit_vms: hit_vms.clone(),
                heartbeat_secs,
                duration_secs,
                db,
            };
            let r = e2e::run(&args)?;
            let hv: Vec<String> = hit_vms.iter().map(ToString::to_string).collect();
            let mut md = report::header(
                "End to end: manager, appliance and shim load generator as processes",
                &format!(
                    "cargo run -p giva-bench --release -- e2e --storm-vms {storm_vms} --hit-vms {} --heartbeat-secs {heartbeat_secs}",
                    hv.join(",")
                ),
            );
            md.push_str(&format!(
                "- load average (1/5/15 min) before: {load_before}, after: {}; run took {:.0} s\n\n",
                giva_bench::run::loadavg(),
                started.elapsed().as_secs_f64()
            ));
            md.push_str(&r.markdown());
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("e2e.md");
            std::fs::write(&path, md)?;
            eprintln!("written: {}", path.display());
        }
        Command::Tagging {
            latency_count,
            latency_rate,
            vms,
            batch,
            concurrency,
        } => {
            let b = giva_bench::tagging::TaggingBench {
                latency_count,
                latency_rate,
                outbreak_vms: vms,
                batch,
                concurrency,
                ..Default::default()
            };
            let r = rt.block_on(giva_bench::tagging::run(&b))?;
            let mut md = report::header(
                "Quarantine tagging",
                &format!(
                    "cargo run -p giva-bench --release -- tagging --latency-count {latency_count} --latency-rate {latency_rate} --vms {vms} --batch {batch} --concurrency {concurrency}"
                ),
            );
            md.push_str(&r.markdown());
            let path = report::results_dir(&cli.results)?.join("tagging.md");
            std::fs::write(&path, md)?;
            eprintln!("written: {}", path.display());
        }
        Command::Notify {
            slow_count,
            fast_count,
            heartbeat_secs,
        } => {
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
                    let mode_label = if immediate {
                        mode.to_string()
                    } else {
                        format!("{mode} ({heartbeat_secs} s)")
                    };
                    eprintln!("running: {mode_label} at {rate}/s ({count} detections)");
                    let p = rt.block_on(notify::run(Scenario {
                        rate,
                        count,
                        immediate,
                        heartbeat,
                    }))?;
                    let row = format!(
                        "| {mode_label} | {rate}/s | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                        p.n, p.p50, p.p90, p.p99, p.max
                    );
                    eprint!("{row}");
                    md.push_str(&row);
                }
            }
            md.push_str("\nWith the product default heartbeat of 600 s, heartbeat-only latency scales with the interval: on average half of it, at worst all of it. Target: immediate p99 < 100 ms.\n");
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("notify.md");
            std::fs::write(&path, md)?;
            eprintln!("written: {}", path.display());
        }
    }
    Ok(())
}
