//! `giva-shim`: the thin agent in each guest VM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use giva_shim::scan::{ScanConfig, Summary};
use giva_shim::watch::{ActiveBackend, Backend, MarkScope, WatchConfig, Watcher};

/// The giva guest shim: reports file activity to the appliance and enforces
/// its verdicts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Identity {
    /// The appliance's URL.
    #[arg(long, env = "GIVA_APPLIANCE", default_value = "http://127.0.0.1:7411")]
    appliance: String,
    /// This VM's id (default: /etc/machine-id, or the host name).
    #[arg(long)]
    vm_id: Option<String>,
    /// This VM's name (default: the host name).
    #[arg(long)]
    vm_name: Option<String>,
    /// The image this VM was cloned from (clones of one image share verdicts).
    #[arg(long, default_value = "")]
    image_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MarkArg {
    /// A mount mark for mount points, inode marks otherwise.
    Auto,
    /// Inode marks on each directory and its subdirectories.
    Inode,
    /// A mount mark on the mount holding each path.
    Mount,
    /// A file-system mark on the file system holding each path.
    Filesystem,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// On-access protection: hold opens and execs of files under PATH until
    /// the appliance's verdict (fanotify), or quarantine infected files after
    /// they are written (inotify fallback).
    Watch {
        #[command(flatten)]
        identity: Identity,
        /// Deny held accesses when no verdict comes in time (overrides the policy).
        #[arg(long, conflicts_with = "fail_open")]
        fail_closed: bool,
        /// Allow held accesses when no verdict comes in time (overrides the policy).
        #[arg(long)]
        fail_open: bool,
        /// How long a held access waits for a verdict (overrides the policy).
        #[arg(long)]
        decision_timeout_ms: Option<u64>,
        /// Use notify-only watching (inotify) even where fanotify works.
        #[arg(long)]
        no_fanotify: bool,
        /// Fail instead of falling back when fanotify is unavailable.
        #[arg(long, conflicts_with = "no_fanotify")]
        require_fanotify: bool,
        /// Where fanotify marks go.
        #[arg(long, value_enum, default_value = "auto")]
        mark: MarkArg,
        /// Where notify-only watching moves infected files.
        #[arg(long, default_value = giva_shim::watch::DEFAULT_VAULT)]
        vault: PathBuf,
        /// Events in flight to the appliance at once.
        #[arg(long, default_value_t = 64)]
        max_inflight: usize,
        /// Directories, mount points or files to watch.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Load generator: simulate N VMs instant-cloned from one image directory
    /// and measure the appliance (registration storm, then blocking opens).
    Load {
        /// The appliance's URL.
        #[arg(long, env = "GIVA_APPLIANCE", default_value = "http://127.0.0.1:7411")]
        appliance: String,
        /// Number of VMs to simulate.
        #[arg(long)]
        vms: usize,
        /// The image directory every VM is cloned from.
        #[arg(long)]
        image: PathBuf,
        /// The image id the VMs share.
        #[arg(long, default_value = "load-image")]
        image_id: String,
        /// Files each VM opens (default: each file of the image once).
        #[arg(long)]
        opens_per_vm: Option<usize>,
        /// Share of the opens sent as EXEC, in percent.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
        exec_percent: u8,
        /// VMs opening files at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// VMs registering at once during the storm.
        #[arg(long, default_value_t = 256)]
        register_concurrency: usize,
        /// Events in flight per VM.
        #[arg(long, default_value_t = 4)]
        inflight_per_vm: usize,
        /// gRPC connections shared by the VMs.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Stop issuing events after this many seconds.
        #[arg(long, default_value_t = 300)]
        duration: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full scan: send every file under PATH to the appliance and print the verdicts.
    Scan {
        #[command(flatten)]
        identity: Identity,
        /// One JSON object per file instead of clamscan-style lines.
        #[arg(long)]
        json: bool,
        /// Files in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Do not print the summary.
        #[arg(long)]
        no_summary: bool,
        /// Files and directories to scan.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    giva_proto::process::init_tracing("text", "warn");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("giva-shim: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("giva-shim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn vm_identity(id: Identity) -> (String, giva_proto::shim::VmIdentity) {
    let mut vm = giva_shim::client::default_identity();
    if let Some(v) = id.vm_id {
        vm.vm_id = v;
    }
    if let Some(n) = id.vm_name {
        vm.name = n;
    }
    vm.image_id = id.image_id;
    (id.appliance, vm)
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Load {
            appliance,
            vms,
            image,
            image_id,
            opens_per_vm,
            exec_percent,
            concurrency,
            register_concurrency,
            inflight_per_vm,
            connections,
            duration,
            json,
        } => {
            let mut config = giva_shim::load::LoadConfig::new(appliance, vms, image);
            config.image_id = image_id;
            config.opens_per_vm = opens_per_vm;
            config.exec_percent = exec_percent;
            config.concurrency = concurrency;
            config.register_concurrency = register_concurrency;
            config.inflight_per_vm = inflight_per_vm;
            config.connections = connections;
            config.duration = std::time::Duration::from_secs(duration);
            let report = giva_shim::load::run(&config).await?;
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            Ok(if report.errors + report.register_errors > 0 {
                2
            } else {
                0
            })
        }
        Command::Watch {
            identity,
            fail_closed,
            fail_open,
            decision_timeout_ms,
            no_fanotify,
            require_fanotify,
            mark,
            vault,
            max_inflight,
            paths,
        } => {
            let (appliance, vm) = vm_identity(identity);
            let mut config = WatchConfig::new(appliance, vm, paths);
            config.overrides.fail_open = match (fail_open, fail_closed) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            config.overrides.decision_timeout =
                decision_timeout_ms.map(std::time::Duration::from_millis);
            config.backend = match (no_fanotify, require_fanotify) {
                (true, _) => Backend::Notify,
                (_, true) => Backend::Fanotify,
                _ => Backend::Auto,
            };
            config.mark = match mark {
                MarkArg::Auto => MarkScope::Auto,
                MarkArg::Inode => MarkScope::Inode,
                MarkArg::Mount => MarkScope::Mount,
                MarkArg::Filesystem => MarkScope::Filesystem,
            };
            config.vault = vault.clone();
            config.max_inflight = max_inflight;
            let watcher = Watcher::start(config).await?;
            match watcher.backend() {
                ActiveBackend::Fanotify => eprintln!(
                    "giva-shim: on-access protection with fanotify: opens and execs wait for the appliance's verdict"
                ),
                ActiveBackend::Notify { reason } => eprintln!(
                    "giva-shim: fanotify not used: {reason}\n\
                     giva-shim: falling back to notify-only watching (inotify): files are scanned after they are written, \
                     nothing is blocked, and infected files are moved into {}",
                    vault.display()
                ),
            }
            wait_for_signal().await;
            let stats = watcher.stop().await;
            eprintln!(
                "giva-shim: stopped: {}",
                serde_json::to_string(&stats).unwrap_or_default()
            );
            Ok(0)
        }
        Command::Scan {
            identity,
            json,
            concurrency,
            no_summary,
            paths,
        } => {
            let (appliance, vm) = vm_identity(identity);
            let mut config = ScanConfig::new(appliance, vm, paths);
            config.concurrency = concurrency;
            let bar = (!json && std::io::stderr().is_terminal()).then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {pos}/{len} files [{elapsed_precise}] {wide_bar} {per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let started = std::time::Instant::now();
            let summary = giva_shim::scan::run(
                &config,
                |r| {
                    let line = if json {
                        serde_json::to_string(r)
                            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
                    } else {
                        r.line()
                    };
                    match &bar {
                        Some(b) => b.println(line),
                        None => println!("{line}"),
                    }
                },
                |done, total| {
                    if let Some(b) = &bar {
                        b.set_length(total);
                        b.set_position(done);
                    }
                },
            )
            .await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if !json && !no_summary {
                print_summary(&summary, started.elapsed());
            }
            Ok(summary.exit_code())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn print_summary(s: &Summary, elapsed: std::time::Duration) {
    println!("\n----------- SCAN SUMMARY -----------");
    println!("Scanned files: {}", s.scanned);
    println!("Infected files: {}", s.infected);
    println!("Failed files: {}", s.failed);
    println!("Time: {:.3} sec", elapsed.as_secs_f64());
}
