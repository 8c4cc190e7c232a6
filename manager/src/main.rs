//! `giva-manager`: the central manager.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The giva manager: records detections from appliances and quarantines VMs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the manager service.
    Serve {
        /// Address to listen on for appliances and operators.
        #[arg(long, default_value = "127.0.0.1:7412")]
        listen: SocketAddr,
        /// The SQLite database file for events and VMs (`:memory:` keeps
        /// nothing across restarts). Default: /var/lib/giva-manager/manager.sqlite
        /// as root, else ~/.local/state/giva-manager/manager.sqlite.
        #[arg(long)]
        db: Option<std::path::PathBuf>,
        /// Log format: text or json.
        #[arg(long, default_value = "text")]
        log_format: String,
        /// The TOML configuration (quarantine policy and tagging actions).
        /// Without it: tag on any detection, untag after a clean full scan,
        /// no tagging action (quarantines are recorded only).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Print the effective configuration as TOML and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// List stored events.
    Events {
        /// The manager's URL.
        #[arg(long, env = "GIVA_MANAGER", default_value = "http://127.0.0.1:7412")]
        manager: String,
        /// Only events of this VM.
        #[arg(long)]
        vm: Option<String>,
        /// Only events received since this time (RFC 3339) or duration ago (10m).
        #[arg(long, value_parser = giva_manager::cli::parse_since)]
        since: Option<i64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List known VMs and their state.
    Vms {
        /// The manager's URL.
        #[arg(long, env = "GIVA_MANAGER", default_value = "http://127.0.0.1:7412")]
        manager: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a VM's quarantine tag and mark it clean (manual override).
    Untag {
        /// The manager's URL.
        #[arg(long, env = "GIVA_MANAGER", default_value = "http://127.0.0.1:7412")]
        manager: String,
        /// The VM id.
        vm: String,
    },
    /// Ask a VM's appliance for a full scan (a clean result releases the VM).
    Scan {
        /// The manager's URL.
        #[arg(long, env = "GIVA_MANAGER", default_value = "http://127.0.0.1:7412")]
        manager: String,
        /// The VM id.
        vm: String,
    },
    /// List VM state changes, with their causes and tagging actions, from
    /// the manager's database file.
    Transitions {
        /// The SQLite database file (default as for `serve`).
        #[arg(long)]
        db: Option<std::path::PathBuf>,
        /// Only this VM.
        #[arg(long)]
        vm: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("giva-manager: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("giva-manager: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            db,
            log_format,
            config,
            print_config,
        } => {
            let config = match &config {
                Some(path) => giva_manager::config::Config::load(path)?,
                None => giva_manager::config::Config::default(),
            };
            if print_config {
                print!("{}", config.to_toml());
                return Ok(());
            }
            giva_proto::process::init_tracing(&log_format, "info");
            let db = db.unwrap_or_else(|| giva_manager::default_state_dir().join("manager.sqlite"));
            let store = giva_manager::store::SqliteStore::open(&db)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", db.display()))?;
            tracing::info!(db = %db.display(), "store opened");
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, "giva-manager serving");
            let manager =
                giva_manager::Manager::with_config(std::sync::Arc::new(store.clone()), &config)
                    .map_err(|e| anyhow::anyhow!("cannot set up the tagging actions: {e}"))?;
            tracing::info!(
                actions = ?manager.tagger().rules().actions,
                "quarantine policy loaded"
            );
            giva_manager::serve(manager, listener, giva_proto::process::shutdown_signal()).await?;
            store.close().await;
            tracing::info!("giva-manager stopped");
            Ok(())
        }
        Command::Events {
            manager,
            vm,
            since,
            json,
        } => giva_manager::cli::events(&manager, vm, since.unwrap_or(0), json).await,
        Command::Vms { manager, json } => giva_manager::cli::vms(&manager, json).await,
        Command::Untag { manager, vm } => giva_manager::cli::untag(&manager, &vm).await,
        Command::Scan { manager, vm } => giva_manager::cli::scan(&manager, &vm).await,
        Command::Transitions {
            db,
            vm,
            limit,
            json,
        } => {
            let db = db.unwrap_or_else(|| giva_manager::default_state_dir().join("manager.sqlite"));
            giva_manager::cli::transitions(&db, vm.as_deref(), limit, json).await
        }
    }
}
