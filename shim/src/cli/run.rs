//! Running a `giva-shim` command: `run` returns the exit code (0 clean,
//! 1 found, 2 errors).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::cli::args::{Cli, Command, EnrollArgs, LoadArgs, ScanArgs, WatchArgs};
use crate::scan::Summary;
use crate::watch::{ActiveBackend, WatchConfig, Watcher};

/// Runs the command `cli` names.
///
/// # Errors
///
/// The command could not start (a bad path, no appliance for `scan`,
/// fanotify required but unavailable).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Load(args) => load(&args).await,
        Command::Watch(args) => watch(args).await,
        Command::Scan(args) => scan(&args).await,
        Command::Enroll(args) => enroll(&args).await.map(|()| 0),
    }
}

async fn enroll(args: &EnrollArgs) -> anyhow::Result<()> {
    let token = giva_proto::enroll::read_token(args.token_file.as_deref())?;
    let (key_pem, csr_pem) = giva_proto::enroll::request(&args.out, "vm", args.force)?;
    let tls = giva_proto::tls::ClientFiles {
        ca: args.ca_file.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut client = crate::client::connect(&args.appliance, &tls).await?;
    // The appliance passes one enrollment at a time to the manager and
    // queues none: try again a few times when it is busy.
    let mut attempt = 0;
    let answer = loop {
        let request = giva_proto::shim::EnrollRequest {
            token: token.clone(),
            csr_pem: csr_pem.clone(),
        };
        match client.enroll(request).await {
            Ok(a) => break a.into_inner(),
            Err(s) if s.code() == tonic::Code::ResourceExhausted && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(s) => anyhow::bail!("the enrollment was refused: {}", s.message()),
        }
    };
    let saved = giva_proto::enroll::save(&args.out, "vm", &key_pem, &answer)?;
    eprintln!(
        "enrolled as VM {}: certificate {}, key {} (mode 0600)",
        saved.name,
        saved.cert.display(),
        saved.key.display()
    );
    println!(
        "--vm-id {} --ca-file {} --cert {} --key {}",
        saved.name,
        saved.ca.display(),
        saved.cert.display(),
        saved.key.display()
    );
    Ok(())
}

async fn load(args: &LoadArgs) -> anyhow::Result<u8> {
    let report = crate::load::run(&args.into()).await?;
    if args.json {
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

async fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    let config = WatchConfig::from(args);
    let vault = config.vault.clone();
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
    giva_runtime::signal::shutdown().await;
    let stats = watcher.stop().await;
    eprintln!(
        "giva-shim: stopped: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    Ok(0)
}

async fn scan(args: &ScanArgs) -> anyhow::Result<u8> {
    let config = args.config();
    let json = args.json;
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
    let started = Instant::now();
    let summary = crate::scan::run(
        &config,
        |r| {
            let line = if json {
                serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
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
    if !json && !args.no_summary {
        print_summary(&summary, started.elapsed());
    }
    Ok(summary.exit_code())
}

fn print_summary(s: &Summary, elapsed: Duration) {
    println!("\n----------- SCAN SUMMARY -----------");
    println!("Scanned files: {}", s.scanned);
    println!("Infected files: {}", s.infected);
    println!("Failed files: {}", s.failed);
    if s.skipped > 0 {
        println!("Not scanned (limits): {}", s.skipped);
    }
    if s.excluded > 0 {
        println!("Excluded by policy: {}", s.excluded);
    }
    if s.vanished > 0 {
        println!("Vanished during the scan: {}", s.vanished);
    }
    println!("Time: {:.3} sec", elapsed.as_secs_f64());
}
