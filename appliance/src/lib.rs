//! The giva appliance: the per-host scan service behind `giva serve`, and
//! the local tools `giva scan` and `giva db`.
//!
//! - [`Appliance`] holds everything a running appliance shares: the
//!   [`config::Config`], the compiled [`policy::Policy`], the
//!   [`scan::Signatures`] in service, the VM [`registry::Registry`], the
//!   [`reporter::Reporter`] towards the manager, and the counters.
//! - [`serve`] runs the gRPC service (`giva.shim.v1`) and the reporter until
//!   a shutdown future fires.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod flight;
pub mod outbox;
pub mod policy;
pub mod registry;
pub mod reporter;
pub mod scan;
pub mod service;
pub mod session;
pub mod stats;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use giva_engine::Engine;
use giva_proto::shim::shim_service_server::ShimServiceServer;
use giva_signatures::Database;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::info;

use crate::config::Config;
use crate::policy::Policies;
use crate::registry::Registry;
use crate::reporter::Reporter;
use crate::scan::Signatures;
use crate::stats::Stats;

/// A running appliance's shared state.
#[derive(Debug)]
pub struct Appliance {
    /// The configuration it was started with.
    pub config: Config,
    /// The policies for VMs (default and per group).
    pub policies: Policies,
    /// The signatures in service.
    pub signatures: Signatures,
    /// Registered VMs.
    pub registry: Arc<Registry>,
    /// The link to the manager.
    pub reporter: Arc<Reporter>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The work-stealing scan pool.
    pub pool: giva_engine::ScanPool,
    /// Verdicts by file identity and content digest.
    pub cache: giva_engine::VerdictCache,
    /// Scans other VMs wait for.
    pub flights: Arc<flight::Flights>,
    /// Full-scan slots (storm control).
    pub full_scan_slots: Arc<Semaphore>,
    /// VMs waiting for a full-scan slot.
    pub full_scan_waiting: AtomicUsize,
    /// Set once a graceful shutdown begins; sessions watch it.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Why the last reload failed, while the old database stays in service.
    reload_error: std::sync::Mutex<Option<String>>,
    /// The database files as they were when the database in service (or
    /// the last attempt) was loaded; the watcher reloads when they differ.
    loaded_files: std::sync::Mutex<Fingerprint>,
}

impl Appliance {
    /// Builds an appliance from its configuration and a loaded database.
    ///
    /// # Errors
    ///
    /// An invalid configuration or a database the engine cannot use.
    pub async fn new(config: Config, database: Database) -> anyhow::Result<Arc<Self>> {
        let engine = Engine::new(&database)
            .map_err(|e| anyhow::anyhow!("cannot build the scan engine: {e}"))?;
        Self::with_engine(config, database, engine).await
    }

    /// Builds an appliance from its configuration, a loaded database and
    /// the engine built for it ([`load_signatures`]).
    ///
    /// # Errors
    ///
    /// An invalid configuration.
    pub async fn with_engine(
        config: Config,
        database: Database,
        engine: Engine,
    ) -> anyhow::Result<Arc<Self>> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let policies =
            Policies::new(&config).map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?;
        let signatures = Signatures::new(database, engine);
        let stats = Arc::new(Stats::default());
        stats.set_database(&signatures.version());
        let outbox_path = config.outbox_path();
        let outbox = outbox::Outbox::open(&outbox_path, config.outbox.quota_bytes)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open the outbox {}: {e}", outbox_path.display())
            })?;
        let reporter = Reporter::new(
            outbox,
            config.effective_appliance_id(),
            &config.manager.url,
            Duration::from_secs(config.manager.heartbeat_interval_secs),
            config.manager.notify_immediately,
            Duration::from_millis(config.manager.request_timeout_ms),
            stats.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Arc::new(Appliance {
            pool: giva_engine::ScanPool::new(giva_engine::PoolConfig {
                workers: config.pool.workers,
                queue_capacity: config.pool.queue_capacity,
            }),
            cache: giva_engine::VerdictCache::new(giva_engine::CacheConfig {
                max_entries: config.cache.max_entries,
                max_bytes: config.cache.max_bytes,
            }),
            flights: Arc::new(flight::Flights::default()),
            full_scan_slots: Arc::new(Semaphore::new(config.full_scan.max_concurrent)),
            full_scan_waiting: AtomicUsize::new(0),
            shutdown: tokio::sync::watch::Sender::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            reload_error: std::sync::Mutex::new(None),
            loaded_files: std::sync::Mutex::new(fingerprint(&config.database.paths)),
            config,
            policies,
            signatures,
            registry: Arc::new(Registry::default()),
            reporter: Arc::new(reporter),
            stats,
        }))
    }
}

impl Appliance {
    /// Starts a graceful shutdown: sessions refuse new events, finish the
    /// files in flight, and close their streams.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns true when a graceful shutdown begins.
    pub fn shutdown_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Problems to report in health checks and heartbeats.
    pub fn problems(&self) -> Vec<String> {
        let err = self
            .reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        err.map(|e| format!("database reload failed, previous database in service: {e}"))
            .into_iter()
            .collect()
    }

    /// Loads the configured database again, validates it and builds its
    /// engine off the async threads, then swaps it in atomically. Scans in
    /// flight finish on the old one. A bad database is refused and the old
    /// one stays in service. Returns the new version.
    ///
    /// # Errors
    ///
    /// The new database cannot be loaded or built; the message says why.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<String, String> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let app = self.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let files = fingerprint(&app.config.database.paths);
            *app.loaded_files.lock().unwrap_or_else(|e| e.into_inner()) = files;
            let (db, engine) =
                load_signatures(&app.config.database.paths).map_err(|e| format!("{e:#}"))?;
            let version = db.version().to_string();
            app.signatures.replace(db, engine);
            Ok::<_, String>(version)
        })
        .await
        .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        let mut err = self.reload_error.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(version) => {
                *err = None;
                self.stats.set_database(version);
                self.stats
                    .reloads
                    .get_or_create(&vec![("result".into(), "ok".into())])
                    .inc();
                info!(%version, why, seconds = started.elapsed().as_secs_f64(), "database reloaded");
            }
            Err(e) => {
                *err = Some(e.clone());
                self.stats
                    .reloads
                    .get_or_create(&vec![("result".into(), "failed".into())])
                    .inc();
                tracing::error!(error = %e, why, "database reload refused; the previous database stays in service");
            }
        }
        result
    }
}

/// Size and modification time of every database file.
type Fingerprint = Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)>;

/// A cheap fingerprint of the database paths (size and modification time of
/// every file), to notice changes without reading them.
fn fingerprint(paths: &[std::path::PathBuf]) -> Fingerprint {
    let mut out = Vec::new();
    for p in paths {
        let entries: Vec<std::path::PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        for e in entries {
            let md = std::fs::metadata(&e).ok();
            out.push((
                e,
                md.as_ref().map_or(0, |m| m.len()),
                md.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out.sort();
    out
}

/// Reloads when the database files change, checking every
/// `database.watch_interval_secs` (a change must hold still for one check
/// before it is loaded, so half-written files are not picked up).
async fn watch_database(app: Arc<Appliance>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let secs = app.config.database.watch_interval_secs;
    if secs == 0 || app.config.database.paths.is_empty() {
        return;
    }
    let paths = app.config.database.paths.clone();
    let mut candidate: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
        }
        let now = fingerprint(&paths);
        let loaded = app
            .loaded_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if now == loaded {
            candidate = None;
            continue;
        }
        if candidate.as_ref() == Some(&now) {
            let _ = app.reload("database files changed").await;
            candidate = None;
        } else {
            candidate = Some(now);
        }
    }
}

/// Loads the database named by the configuration: the bundled default when
/// no path is given.
///
/// # Errors
///
/// The signatures cannot be read or compiled; the message names the file
/// and line.
pub fn load_database(config: &Config) -> anyhow::Result<giva_signatures::Database> {
    crate::cli::load_databases(&config.database.paths)
}

/// Loads the signatures `paths` name (the bundled default when none) and
/// builds their scan engine. A compiled database's stored engine is
/// decoded while the file's checksum is verified, which is what makes a
/// large database start fast ([`Engine::load`]).
///
/// # Errors
///
/// The signatures cannot be read or compiled, or the engine cannot be
/// built; the message says which and why.
pub fn load_signatures(paths: &[std::path::PathBuf]) -> anyhow::Result<(Database, Engine)> {
    if paths.is_empty() {
        let db = giva_signatures::bundled();
        let engine =
            Engine::new(&db).map_err(|e| anyhow::anyhow!("cannot build the engine: {e}"))?;
        return Ok((db, engine));
    }
    Engine::load(paths).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Serves `app` on `listener` until `shutdown` completes; then stops taking
/// new streams, lets the reporter flush, and returns.
///
/// # Errors
///
/// A transport error from the gRPC server.
pub async fn serve(
    app: Arc<Appliance>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reporter_task = {
        let app2 = app.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(app.reporter.clone().run(
            app.registry.clone(),
            move || (app2.signatures.version(), app2.problems()),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    };
    let watcher = tokio::spawn(watch_database(app.clone(), stop_rx.clone()));
    let sighup = tokio::spawn(reload_on_sighup(app.clone(), stop_rx.clone()));
    let scheduler = tokio::spawn(schedule_full_scans(app.clone(), stop_rx.clone()));
    let admin = match app.config.server.admin_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr} for the admin endpoint: {e}")
            })?;
            info!(addr = ?l.local_addr().ok(), "admin endpoint (/metrics, /healthz, POST /reload)");
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(admin::serve(app.clone(), l, async move {
                let _ = rx.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ShimServiceServer<service::ShimGrpc>>()
        .await;
    let router = || {
        let svc = ShimServiceServer::new(service::ShimGrpc(app.clone()))
            .max_decoding_message_size(app.config.server.max_message_bytes);
        tonic::transport::Server::builder()
            .add_service(health_service.clone())
            .add_service(svc)
    };
    let draining = |app: Arc<Appliance>| async move {
        let mut rx = app.shutdown_watch();
        stopped(&mut rx).await;
    };
    let addr = listener.local_addr().ok();
    info!(?addr, database = %app.signatures.version(), "appliance serving");
    let tcp = router().serve_with_incoming_shutdown(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        draining(app.clone()),
    );
    let unix = match &app.config.server.unix_socket {
        Some(path) => {
            let l = bind_unix(path)?;
            info!(path = %path.display(), "appliance serving on a Unix socket");
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            Some(router().serve_with_incoming_shutdown(incoming, draining(app.clone())))
        }
        None => None,
    };
    let vsock = match app.config.server.vsock_port {
        Some(port) => {
            let incoming = bind_vsock(port)?;
            info!(port, "appliance serving on vsock");
            Some(tokio::spawn(router().serve_with_incoming_shutdown(
                incoming,
                draining(app.clone()),
            )))
        }
        None => None,
    };
    let servers = async move {
        let unix = async move {
            match unix {
                Some(u) => u.await,
                None => Ok(()),
            }
        };
        let vsock = async move {
            match vsock {
                Some(v) => v.await.unwrap_or(Ok(())),
                None => Ok(()),
            }
        };
        let (a, b, c) = tokio::join!(tcp, unix, vsock);
        a.and(b).and(c)
    };
    tokio::pin!(servers);
    let deadline = Duration::from_secs(app.config.server.shutdown_deadline_secs);
    let result = tokio::select! {
        r = &mut servers => r,
        _ = async {
            shutdown.await;
            info!("draining sessions");
            app.begin_shutdown();
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!(deadline_secs = deadline.as_secs(), "sessions did not drain before the deadline; closing them");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = sighup.await;
    let _ = scheduler.await;
    if let Some(a) = admin {
        let _ = tokio::time::timeout(deadline, a).await;
    }
    if tokio::time::timeout(deadline, reporter_task).await.is_err() {
        let pending = app.reporter.pending().await;
        tracing::warn!(
            pending,
            "reporter did not flush before the deadline; the outbox keeps the rest"
        );
    }
    result.map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))
}

/// Listens on vsock `port` (any CID).
#[cfg(feature = "vsock")]
fn bind_vsock(port: u32) -> anyhow::Result<tokio_vsock::Incoming> {
    let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
    let listener = tokio_vsock::VsockListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on vsock port {port}: {e}"))?;
    Ok(listener.incoming())
}

/// Without vsock support, a configured vsock port is an error, not a
/// silently missing listener.
#[cfg(not(feature = "vsock"))]
fn bind_vsock(
    port: u32,
) -> anyhow::Result<tokio_stream::Empty<std::io::Result<tokio::net::TcpStream>>> {
    anyhow::bail!(
        "server.vsock_port = {port} is set, but this giva was built without vsock support (build with --features vsock)"
    )
}

/// Binds a Unix socket at `path`, replacing a stale socket file (but never
/// another kind of file).
fn bind_unix(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            std::fs::remove_file(path).map_err(|e| {
                anyhow::anyhow!("cannot remove the stale socket {}: {e}", path.display())
            })?;
        } else {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on the Unix socket {}: {e}", path.display()))
}

/// Scheduled full scans: every `full_scan.every_hours`, each connected VM
/// is asked for a full scan at a random point within the window. Storm
/// control (the full-scan slots) still applies when they start.
async fn schedule_full_scans(app: Arc<Appliance>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let hours = app.config.full_scan.every_hours;
    if hours == 0 {
        return;
    }
    let period = Duration::from_secs(hours.saturating_mul(3600));
    let window_ms = app
        .config
        .full_scan
        .window_minutes
        .saturating_mul(60_000)
        .max(1);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(period) => {}
        }
        let vms = app.registry.connected();
        info!(
            vms = vms.len(),
            window_minutes = app.config.full_scan.window_minutes,
            "scheduling full scans"
        );
        for vm in vms {
            let delay = Duration::from_millis(fastrand::u64(0..window_ms));
            let registry = app.registry.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stopped(&mut stop) => {}
                    _ = tokio::time::sleep(delay) => {
                        session::send_full_scan_command(&registry, &vm, "schedule");
                    }
                }
            });
        }
    }
}

/// Reloads the database on SIGHUP.
async fn reload_on_sighup(app: Arc<Appliance>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /reload instead");
        return;
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = hup.recv() => {
                let _ = app.reload("SIGHUP").await;
            }
        }
    }
}

/// Completes when the watched flag turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
