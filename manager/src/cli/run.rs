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
        Command::Ca(args) => crate::cli::ca::run(args, default_db()).await?,
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

/// Reads the TLS files again on each SIGHUP: a renewed certificate, a
/// rotated CA or a new revocation list takes effect for new connections.
async fn reload_tls_on_sighup(tls: Arc<giva_proto::tls::ServerTls>) {
    let Some(mut hup) = giva_runtime::signal::hangups() else {
        tracing::warn!("cannot listen for SIGHUP: TLS files are read at start only");
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate, key, CAs and revocation lists reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS reload failed; the files in use stay"),
        }
    }
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
    let tls = giva_proto::tls::ServerTls::load(giva_proto::tls::ServerFiles {
        cert: args.tls_cert.clone().unwrap_or_default(),
        key: args.tls_key.clone().unwrap_or_default(),
        client_ca: args.client_ca.clone().unwrap_or_default(),
        crl: args.crl.clone().unwrap_or_default(),
    })?;
    giva_proto::tls::check_plaintext(
        "the manager's listener",
        &listen,
        tls.is_some(),
        args.insecure_plaintext,
    )?;
    if !args.no_admin {
        giva_proto::tls::check_plaintext(
            "the admin endpoint",
            &args.admin_listen,
            false,
            args.insecure_plaintext,
        )?;
    }
    // Tokens before the port opens: whoever sees the port can find them.
    let token_file = args.token_file.clone().unwrap_or_else(default_token_file);
    let auth = Auth::from_files(&token_file, args.reader_token_file.as_deref())?;
    tracing::info!(token_file = %token_file.display(), "operator token");
    let manager = crate::Manager::with_config(store.clone(), &config, auth)
        .context("cannot set up the tagging actions")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "giva-manager serving");
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
    if args.client_ca.is_some() {
        manager.require_appliance_certificates();
        tracing::info!("appliances are authenticated by their certificates");
    } else {
        tracing::warn!(
            "appliances are not authenticated (no --client-ca): anyone who reaches this port can report events"
        );
    }
    let reloader = tls
        .clone()
        .map(|tls| tokio::spawn(reload_tls_on_sighup(tls)));
    crate::serve_tls(
        Arc::clone(&manager),
        listener,
        tls,
        giva_runtime::signal::shutdown(),
    )
    .await?;
    if let Some(r) = reloader {
        r.abort();
    }
    let _ = stop_admin.send(());
    if let Some(a) = admin {
        let _ = a.await;
    }
    store.close().await;
    tracing::info!("giva-manager stopped");
    Ok(())
}
