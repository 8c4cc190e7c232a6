//! `giva`: the appliance daemon and the local scan and database tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use giva_appliance::cli::scan::ScanArgs;
use giva_appliance::config::Config;

/// giva: the guest-introspection scan appliance.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance: serve shims over gRPC and report to the manager.
    Serve(ServeArgs),
    /// Scan local files, like clamscan on raw files.
    Scan(ScanCli),
    /// Compile, inspect and verify signature databases.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Options given on the command line win.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Address to listen on for shims.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The manager's URL (e.g. http://127.0.0.1:7412).
    #[arg(long)]
    manager: Option<String>,
    /// Address of the admin endpoint (/metrics, /healthz, POST /reload).
    #[arg(long, conflicts_with = "no_admin")]
    admin_listen: Option<SocketAddr>,
    /// Run without the admin endpoint.
    #[arg(long)]
    no_admin: bool,
    /// Also serve shims on this Unix socket.
    #[arg(long)]
    unix_socket: Option<PathBuf>,
    /// Signature database: files, directories, containers or a compiled
    /// database (repeatable). Default: the bundled database.
    #[arg(short = 'd', long = "db")]
    db: Vec<PathBuf>,
    /// Seconds between heartbeats to the manager.
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Directory for the appliance's state (the outbox). Default:
    /// /var/lib/giva as root, else ~/.local/state/giva.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Print the effective configuration (defaults plus overrides) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, clap::Args)]
struct ScanCli {
    /// Signature database (repeatable). Default: the bundled database.
    #[arg(short = 'd', long = "database")]
    database: Vec<PathBuf>,
    /// Scan directories recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Report every matching signature, not just the first.
    #[arg(long)]
    allmatch: bool,
    /// One JSON object per file.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Do not print the summary.
    #[arg(long)]
    no_summary: bool,
    /// Print only infected files.
    #[arg(short, long)]
    infected: bool,
    /// Files and directories to scan.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Compile signature sources into one database file.
    Compile {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Sources: signature files, directories, .cvd/.cld/.cud containers.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Show what a database holds (default: the bundled database).
    Info {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Database files, directories or containers.
        paths: Vec<PathBuf>,
    },
    /// Check compiled databases or containers without using them.
    Verify {
        /// Files to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Scan(s) => {
            giva_proto::process::init_tracing("text", "warn");
            let args = ScanArgs {
                databases: s.database,
                recursive: s.recursive,
                all_match: s.allmatch,
                json: s.json,
                threads: s.threads,
                no_summary: s.no_summary,
                infected_only: s.infected,
                paths: s.paths,
            };
            giva_appliance::cli::scan::run(&args)
        }
        Command::Db(cmd) => {
            giva_proto::process::init_tracing("text", "warn");
            match cmd {
                DbCommand::Compile { output, sources } => {
                    giva_appliance::cli::db::compile(&output, &sources).map(|()| 0)
                }
                DbCommand::Info { json, paths } => {
                    giva_appliance::cli::db::info(&paths, json).map(|()| 0)
                }
                DbCommand::Verify { paths } => Ok(giva_appliance::cli::db::verify(&paths)),
            }
        }
    };
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("giva: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    if let Some(m) = args.manager {
        config.manager.url = m;
    }
    if let Some(a) = args.admin_listen {
        config.server.admin_listen = Some(a);
    }
    if args.no_admin {
        config.server.admin_listen = None;
    }
    if let Some(u) = args.unix_socket {
        config.server.unix_socket = Some(u);
    }
    if !args.db.is_empty() {
        config.database.paths = args.db;
    }
    if let Some(d) = args.data_dir {
        config.outbox.path = d.join("outbox.sqlite");
    }
    if let Some(h) = args.heartbeat_interval {
        config.manager.heartbeat_interval_secs = h;
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(0);
    }
    giva_proto::process::init_tracing(&args.log_format, "info");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let started = std::time::Instant::now();
        let (db, engine) = giva_appliance::load_signatures(&config.database.paths)?;
        let skipped: u64 = db.info().skipped.values().sum();
        tracing::info!(
            version = %db.version(),
            signatures = db.info().loaded.values().sum::<u64>(),
            skipped,
            seconds = started.elapsed().as_secs_f64(),
            "database loaded"
        );
        for (reason, n) in &db.info().skipped {
            tracing::warn!(%reason, count = n, "unsupported signatures skipped");
        }
        let listen = config.server.listen;
        let app = giva_appliance::Appliance::with_engine(config, db, engine).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        giva_appliance::serve(app, listener, giva_proto::process::shutdown_signal()).await?;
        tracing::info!("appliance stopped");
        Ok(0)
    })
}
