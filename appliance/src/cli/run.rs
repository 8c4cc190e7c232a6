//! Running a `giva` command: `run` returns the exit code (for `scan`, 0
//! clean, 1 found, 2 errors, as `clamscan`).

use anyhow::Context;
use giva_runtime::LogFormat;
use giva_signatures::LoadOptions;

use crate::cli::args::{Cli, Command, DbCommand, ServeArgs};
use crate::cli::{db, enroll, scan};
use crate::loading::{load_signatures, options};

/// Runs the command `cli` names.
///
/// # Errors
///
/// The command could not run: a bad configuration, an unreadable
/// database, a port in use.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Scan(args) => {
            giva_runtime::telemetry::init(LogFormat::Text, "warn");
            scan::run(&args)
        }
        Command::Db(cmd) => {
            giva_runtime::telemetry::init(LogFormat::Text, "warn");
            match cmd {
                DbCommand::Compile {
                    output,
                    allow_empty,
                    sources,
                } => db::compile(&output, &sources, LoadOptions { allow_empty }).map(|()| 0),
                DbCommand::Info { json, paths } => db::info(&paths, json).map(|()| 0),
                DbCommand::Verify { allow_empty, paths } => {
                    Ok(db::verify(&paths, LoadOptions { allow_empty }))
                }
            }
        }
        Command::Enroll(args) => {
            giva_runtime::telemetry::init(LogFormat::Text, "warn");
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(enroll::run(&args)).map(|()| 0)
        }
    }
}

/// `giva serve`: the appliance until SIGINT or SIGTERM.
fn serve(args: &ServeArgs) -> anyhow::Result<u8> {
    let config = args.config()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(0);
    }
    giva_runtime::telemetry::init(args.log_format, "info");
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let started = std::time::Instant::now();
        let (db, engine) = load_signatures(&config.database.paths, options(&config))?;
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
        let app = crate::Appliance::with_engine(config, db, engine).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        crate::serve(app, listener, giva_runtime::signal::shutdown()).await?;
        tracing::info!("appliance stopped");
        Ok(0)
    })
}
