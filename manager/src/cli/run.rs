//! Running a `giva-manager` command.

use std::sync::Arc;

use anyhow::Context;

use crate::auth::Auth;
use crate::cli::args::{CaCommand, Cli, Command, ServeArgs, default_token_file};
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
        Command::Ca(cmd) => ca(cmd)?,
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

/// `giva-manager ca`.
fn ca(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { dir } => {
            let dir = dir.unwrap_or_else(crate::default_state_dir);
            crate::ca::Ca::init(&dir)?;
            println!("CA: {}", crate::ca::Ca::cert_path(&dir).display());
        }
        CaCommand::Issue {
            name,
            role,
            dir,
            out,
            dns,
            ip,
            days,
        } => {
            let dir = dir.unwrap_or_else(crate::default_state_dir);
            let (cert, key) =
                crate::ca::Ca::load(&dir)?.issue_files(&name, role, &dns, &ip, days, &out)?;
            println!(
                "{name} ({}): certificate {}, key {} (mode 0600), CA {}",
                role.as_str(),
                cert.display(),
                key.display(),
                crate::ca::Ca::cert_path(&out).display()
            );
        }
    }
    Ok(())
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
    let none = std::path::PathBuf::new();
    let tls = giva_proto::tls::server_config(
        args.tls_cert.as_ref().unwrap_or(&none),
        args.tls_key.as_ref().unwrap_or(&none),
        args.client_ca.as_ref().unwrap_or(&none),
    )?;
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
    crate::serve_tls(
        Arc::clone(&manager),
        listener,
        tls,
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
