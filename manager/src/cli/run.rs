//! Running a `giva-manager` command.

use std::sync::Arc;

use anyhow::Context;

use crate::auth::Auth;
use crate::cli::args::{Cli, Command, ServeArgs, default_token_file};
use crate::cli::operator;
use crate::config::Config;
use crate::store::Store;

/// Runs the command `cli` names; returns the exit code.
///
/// # Errors
///
/// The command failed: a bad configuration, an unreachable manager, a
/// database that cannot be opened.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => serve(args).await?,
        Command::Events {
            manager,
            vm,
            since,
            json,
        } => operator::events(&manager, vm, since.unwrap_or(0), json).await?,
        Command::Vms { manager, json } => operator::vms(&manager, json).await?,
        Command::Untag { manager, vm } => operator::untag(&manager, &vm).await?,
        Command::Scan { manager, vm } => operator::scan(&manager, &vm).await?,
        Command::Cancel { manager, vm } => operator::cancel(&manager, &vm).await?,
        Command::Except {
            manager,
            vm,
            path,
            sha256,
            reason,
        } => operator::except(&manager, &vm, &path, &sha256, &reason).await?,
        Command::Transitions {
            db,
            vm,
            limit,
            json,
        } => {
            let db = db.unwrap_or_else(default_db);
            operator::transitions(&db, vm.as_deref(), limit, json).await?;
        }
    }
    Ok(0)
}

/// The store's default file.
fn default_db() -> std::path::PathBuf {
    crate::default_state_dir().join("manager.sqlite")
}

/// `giva-manager serve`: the manager service until SIGINT or SIGTERM.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    giva_runtime::telemetry::init(args.log_format, "info");
    let db = args.db.unwrap_or_else(default_db);
    let store = Store::open(&db)
        .await
        .with_context(|| format!("cannot open the store {}", db.display()))?;
    tracing::info!(db = %db.display(), "store opened");
    let listen = args.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "giva-manager serving");
    let token_file = args.token_file.clone().unwrap_or_else(default_token_file);
    let auth = Auth::from_files(&token_file, args.reader_token_file.as_deref())?;
    tracing::info!(token_file = %token_file.display(), "operator token");
    let manager = crate::Manager::with_config(store.clone(), &config, auth)
        .context("cannot set up the tagging actions")?;
    tracing::info!(actions = ?manager.tagger().rules().actions, "quarantine policy loaded");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = if args.no_admin {
        None
    } else {
        let addr = args.admin_listen;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the admin endpoint"))?;
        tracing::info!(%addr, "admin endpoint (/metrics, /healthz)");
        Some(tokio::spawn(crate::admin::serve(
            Arc::clone(&manager),
            l,
            async move {
                let _ = admin_stopped.await;
            },
        )))
    };
    crate::serve(
        Arc::clone(&manager),
        listener,
        giva_runtime::signal::shutdown(),
    )
    .await?;
    let _ = stop_admin.send(());
    if let Some(a) = admin {
        let _ = a.await;
    }
    store.close().await;
    tracing::info!("giva-manager stopped");
    Ok(())
}
