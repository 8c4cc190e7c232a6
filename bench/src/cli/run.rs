//! Running a `bench` command: each writes its report under
//! `history/<date>/` and regenerates `LATEST.md`.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::args::{Cli, Command};
use crate::corpus::{self, CorpusSpec};
use crate::latest::{self, Row, Summary};
use crate::notify::{self, Scenario};
use crate::sigs::{self, SigSpec};
use crate::{archives, compare, e2e, plot, report};

fn bin_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => Ok(std::env::current_exe()?
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()),
    }
}

/// Runs the measurement `cli` names and writes its report.
///
/// # Errors
///
/// The measurement failed (a missing binary, a service that does not
/// start), or its report cannot be written.
pub fn run(cli: Cli) -> anyhow::Result<()> {
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
        Command::Latest => {
            eprintln!("written: {}", latest::write(&cli.results)?.display());
        }
        Command::Bandwidth { size } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let one = crate::bandwidth::read_bandwidth(size as usize, 8, 1);
            let all = crate::bandwidth::read_bandwidth(size as usize, 8, cores);
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
            let load_before = crate::run::loadavg();
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
            let command = format!(
                "cargo run -p giva-bench --release -- compare --seed {seed} --size {size} --body {} --logical {logical} --hashes {hashes} --repeat {repeat}{}{}",
                body_list.join(","),
                if no_clamd { " --no-clamd" } else { "" },
                if no_clamscan_default {
                    " --no-clamscan-default"
                } else {
                    ""
                },
            );
            let mut md =
                report::header("giva beside ClamAV: throughput, load, detections", &command);
            md.push_str(&format!(
                "- load average (1/5/15 min) before: {load_before}, after: {}; run took {:.0} s\n\n",
                crate::run::loadavg(),
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
            r.summary(&command).write(&dir)?;
            eprintln!("written: {}", path.display());
            eprintln!("written: {}", latest::write(&cli.results)?.display());
        }
        Command::Archives {
            body,
            repeat,
            work,
            timeout_secs,
            bin_dir: bd,
        } => {
            let started = std::time::Instant::now();
            let r = archives::run(&archives::ArchivesArgs {
                bin_dir: bin_dir(bd)?,
                work,
                body,
                repeat,
                timeout: Duration::from_secs(timeout_secs),
            })?;
            let command = format!(
                "cargo run -p giva-bench --release -- archives --body {body} --repeat {repeat}"
            );
            publish(
                &cli.results,
                "Archives: giva scan beside clamscan's default mode",
                &command,
                started,
                &r.markdown(),
                &r.summary(&command),
            )?;
        }
        Command::Real {
            corpus,
            count,
            seeds,
            repeat,
            work,
            timeout_secs,
            bin_dir: bd,
            all_peers_up_to,
        } => {
            let started = std::time::Instant::now();
            let r = crate::real::run(&crate::real::RealArgs {
                all_peers_up_to: all_peers_up_to.unwrap_or(usize::MAX),
                bin_dir: bin_dir(bd)?,
                work,
                corpus_bytes: corpus,
                counts: count.clone(),
                seeds: seeds.clone(),
                repeat,
                timeout: Duration::from_secs(timeout_secs),
            })?;
            let join = |v: &[String]| v.join(",");
            let command = format!(
                "cargo run -p giva-bench --release -- real --corpus {corpus} --count {} --seeds {} --repeat {repeat}{}",
                join(&count.iter().map(ToString::to_string).collect::<Vec<_>>()),
                join(&seeds.iter().map(ToString::to_string).collect::<Vec<_>>()),
                all_peers_up_to.map_or(String::new(), |n| format!(" --all-peers-up-to {n}")),
            );
            publish(
                &cli.results,
                "Real files: giva beside clamscan, yara, YARA-X and Hyperscan",
                &command,
                started,
                &r.markdown(),
                &r.summary(&command),
            )?;
        }
        Command::E2e {
            storm_vms,
            storm_rate,
            hit_vms,
            heartbeat_secs,
            duration_secs,
            db,
            only,
            work,
            bin_dir: bd,
        } => {
            let load_before = crate::run::loadavg();
            let started = std::time::Instant::now();
            let args = e2e::E2eArgs {
                bin_dir: bin_dir(bd)?,
                work,
                storm_vms,
                storm_rate,
                hit_vms: hit_vms.clone(),
                heartbeat_secs,
                duration_secs,
                db,
                only: only.clone(),
            };
            let r = e2e::run(&args)?;
            if !only.is_empty() {
                // A partial run is for looking, not for the record.
                println!("{}", r.markdown());
                return Ok(());
            }
            let hv: Vec<String> = hit_vms.iter().map(ToString::to_string).collect();
            let command = format!(
                "cargo run -p giva-bench --release -- e2e --storm-vms {storm_vms} --storm-rate {storm_rate} --hit-vms {} --heartbeat-secs {heartbeat_secs}",
                hv.join(",")
            );
            let mut md = report::header(
                "End to end: manager, appliance and shim load generator as processes",
                &command,
            );
            md.push_str(&format!(
                "- load average (1/5/15 min) before: {load_before}, after: {}; run took {:.0} s\n\n",
                crate::run::loadavg(),
                started.elapsed().as_secs_f64()
            ));
            md.push_str(&r.markdown());
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("e2e.md");
            std::fs::write(&path, md)?;
            r.summary(&command).write(&dir)?;
            eprintln!("written: {}", path.display());
            eprintln!("written: {}", latest::write(&cli.results)?.display());
        }
        Command::Tagging {
            latency_count,
            latency_rate,
            vms,
            batch,
            concurrency,
        } => {
            let b = crate::tagging::TaggingBench {
                latency_count,
                latency_rate,
                outbreak_vms: vms,
                batch,
                concurrency,
                ..Default::default()
            };
            let r = rt.block_on(crate::tagging::run(&b))?;
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
        Command::Bigrams { out } => {
            let c = crate::bigrams::count(crate::bigrams::ROOTS, crate::bigrams::PER_ROOT);
            std::fs::write(&out, c.table())?;
            eprintln!(
                "written: {} ({} files, {:.0} MB counted)",
                out.display(),
                c.files,
                c.bytes as f64 / 1e6
            );
        }
        Command::Soak { secs, vms, release } => {
            let release_flag = if release { " --release" } else { "" };
            let command = format!(
                "cargo run -p giva-bench --release -- soak --secs {secs} --vms {vms}{release_flag}"
            );
            let figures =
                std::env::temp_dir().join(format!("giva-soak-{}.json", std::process::id()));
            let mut test = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            );
            test.args(["test", "-p", "giva-tests", "--test", "it"]);
            if release {
                test.arg("--release");
            }
            test.args([
                "--",
                "--ignored",
                "--exact",
                "hostile::soak_200_vms_with_manager_restarts",
                "--nocapture",
            ])
            .env("GIVA_SOAK_SECS", secs.to_string())
            .env("GIVA_SOAK_VMS", vms.to_string())
            .env("GIVA_SOAK_REPORT", &figures);
            eprintln!("running: the soak, {secs} s with {vms} VMs");
            let status = test.status()?;
            let text = std::fs::read_to_string(&figures)
                .map_err(|e| anyhow::anyhow!("the soak wrote no figures ({status}): {e}"))?;
            let _ = std::fs::remove_file(&figures);
            let rows: Vec<(String, String)> = serde_json::from_str(&text)?;
            let title = "Reliability soak: VMs, manager restarts, a full outbox disk";
            let mut md = report::header(title, &command);
            let mut summary = Summary::new("soak", title, &command, "soak.md");
            summary.setup = format!(
                "{vms} simulated VMs against one appliance for {secs} s (one EICAR and three clean files each, then a pause); the manager restarted every minute; the outbox's disk, a 64 MiB tmpfs, full for the middle sixth of the run, with the manager down all that time, so that the outbox must grow. The RSS is the test process's: appliance, manager and VMs together; the verdict cache fills towards its bound as every file is new. Passes when every detection reaches the manager exactly once and RSS is flat. The test ({}): `hostile::soak_200_vms_with_manager_restarts`.",
                if status.success() {
                    "passed"
                } else {
                    "**failed**"
                }
            );
            md.push_str(&format!(
                "{}\n\n| figure | value |\n|---|---|\n",
                summary.setup
            ));
            for (measure, value) in rows {
                md.push_str(&format!("| {measure} | {value} |\n"));
                summary.rows.push(Row {
                    measure,
                    giva: value,
                    peer: String::new(),
                    ratio: String::new(),
                    target: String::new(),
                    met: None,
                });
            }
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("soak.md");
            std::fs::write(&path, md)?;
            summary.write(&dir)?;
            eprintln!("written: {}", path.display());
            eprintln!("written: {}", latest::write(&cli.results)?.display());
            if !status.success() {
                anyhow::bail!("the soak test failed ({status}); its figures are written");
            }
        }
        Command::Notify {
            slow_count,
            fast_count,
            heartbeat_secs,
        } => {
            let heartbeat = Duration::from_secs(heartbeat_secs);
            let command = format!(
                "cargo run -p giva-bench --release -- notify --slow-count {slow_count} --fast-count {fast_count} --heartbeat-secs {heartbeat_secs}"
            );
            let mut md = report::header("Detection → manager latency", &command);
            let mut summary = Summary::new(
                "notify",
                "Detection → manager latency",
                &command,
                "notify.md",
            );
            summary.setup = "The manager and the appliance in one process, real gRPC on loopback, SQLite with fsync on both sides; from the appliance's detection time to the manager's commit.".into();
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
                    summary.rows.push(Row {
                        measure: format!("p99, {mode_label}, {rate}/s"),
                        giva: format!("{:.1} ms", p.p99),
                        peer: String::new(),
                        ratio: String::new(),
                        target: if immediate {
                            "< 100 ms".into()
                        } else {
                            String::new()
                        },
                        met: immediate.then_some(p.p99 < 100.0),
                    });
                }
            }
            md.push_str("\nWith the product default heartbeat of 600 s, heartbeat-only latency scales with the interval: on average half of it, at worst all of it. Target: immediate p99 < 100 ms.\n");
            let dir = report::results_dir(&cli.results)?;
            let path = dir.join("notify.md");
            std::fs::write(&path, md)?;
            summary.write(&dir)?;
            eprintln!("written: {}", path.display());
            eprintln!("written: {}", latest::write(&cli.results)?.display());
        }
    }
    Ok(())
}

/// Writes a workload's full report (`title`, `command`, how long the run
/// took since `started`, then `body`) as `<summary's report file>` in
/// today's results directory, with its summary beside it, and regenerates
/// LATEST.md.
fn publish(
    results: &std::path::Path,
    title: &str,
    command: &str,
    started: std::time::Instant,
    body: &str,
    summary: &Summary,
) -> anyhow::Result<()> {
    let mut md = report::header(title, command);
    md.push_str(&format!(
        "- run took {:.0} s\n\n",
        started.elapsed().as_secs_f64()
    ));
    md.push_str(body);
    let dir = report::results_dir(results)?;
    let path = dir.join(&summary.report);
    std::fs::write(&path, md)?;
    summary.write(&dir)?;
    eprintln!("written: {}", path.display());
    eprintln!("written: {}", latest::write(results)?.display());
    Ok(())
}
