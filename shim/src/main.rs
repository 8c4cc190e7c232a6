//! `giva-shim`: the thin agent in each guest VM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use giva_shim::scan::{ScanConfig, Summary};

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

#[derive(Debug, Subcommand)]
enum Command {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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

fn print_summary(s: &Summary, elapsed: std::time::Duration) {
    println!("\n----------- SCAN SUMMARY -----------");
    println!("Scanned files: {}", s.scanned);
    println!("Infected files: {}", s.infected);
    println!("Failed files: {}", s.failed);
    println!("Time: {:.3} sec", elapsed.as_secs_f64());
}
