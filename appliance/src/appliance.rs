//! [`Appliance`]: everything a running appliance shares, and the
//! operations on it as a whole (reload, shutdown, health problems).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use giva_engine::Engine;
use giva_signatures::Database;
use tokio::sync::Semaphore;
use tracing::info;

use crate::config::Config;
use crate::flight;
use crate::loading::{load_signatures, options};
use crate::outbox;
use crate::policy::Policies;
use crate::registry::Registry;
use crate::reload::{ReloadState, fingerprint};
use crate::reporter::Reporter;
use crate::scan::Signatures;
use crate::stats::Stats;

/// A running appliance's shared state.
#[derive(Debug)]
pub struct Appliance {
    /// The configuration it was started with.
    pub config: Config,
    /// Where large members of containers are spooled (made at start);
    /// `None`: the system's temporary directory.
    pub spool: Option<std::path::PathBuf>,
    /// The policies for VMs (default and per group).
    pub policies: Arc<Policies>,
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
    pub cache: Arc<giva_engine::VerdictCache>,
    /// Scans other VMs wait for.
    pub flights: Arc<flight::Flights>,
    /// Full-scan slots (storm control).
    pub full_scan_slots: Arc<Semaphore>,
    /// Content bytes all sessions together may have received and not yet
    /// scanned (`server.max_pending_content_total_bytes`), a permit a
    /// byte; each session also has its own share.
    pub content_budget: Arc<Semaphore>,
    /// VMs waiting for a full-scan slot.
    pub full_scan_waiting: AtomicUsize,
    /// Set once a graceful shutdown begins; sessions watch it.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The state of database reloads.
    pub(crate) reloads: ReloadState,
    /// The shims' TLS listener's configuration, once serving with TLS.
    pub(crate) tls: std::sync::OnceLock<Arc<giva_proto::tls::ServerTls>>,
    /// Signs instant clones' certificates (`[clones]`), if configured.
    pub clones: Option<crate::clones::CloneSigner>,
}

/// Why a reload was refused (the previous database stays in service).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new database cannot be loaded, or its engine built.
    #[error(transparent)]
    Database(#[from] giva_engine::OpenError),
    /// The reload task died.
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
            Arc::new(Policies::new(&config).map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?);
        let signatures = Signatures::new(database, engine);
        let stats = Arc::new(Stats::default());
        stats.set_database(&signatures.version());
        let outbox_path = config.outbox_path();
        let outbox = outbox::Outbox::open_or_recover(&outbox_path, config.outbox.quota_bytes)
            .await
            .map(|o| o.with_reserve(config.outbox.reserve_bytes))
            .map_err(|e| {
                anyhow::anyhow!("cannot open the outbox {}: {e}", outbox_path.display())
            })?;
        for e in &config.inventory {
            if e.cid.is_some() && e.vm.contains('*') {
                anyhow::bail!(
                    "inventory entry {}: a vsock CID belongs to one VM; name it exactly",
                    e.vm
                );
            }
            if e.template && e.vm.contains('*') {
                anyhow::bail!(
                    "inventory entry {}: a pattern cannot make templates; name the template VM exactly",
                    e.vm
                );
            }
            if !e.group.is_empty() && !config.groups.contains_key(&e.group) {
                tracing::warn!(vm = %e.vm, group = %e.group, "the inventory names a group with no policy; the default policy applies");
            }
        }
        if config.server.vsock_port.is_some() && !config.inventory.iter().any(|e| e.cid.is_some()) {
            tracing::warn!(
                "vsock shims are not authenticated: no inventory entry gives a VM's cid, so a VM's id is its own claim"
            );
        }
        let registry = Arc::new(
            Registry::new(
                policies.clone(),
                crate::inventory::Inventory::new(&config.inventory),
            )
            .with_limits(
                config.server.max_registered_vms,
                std::time::Duration::from_secs(config.server.registration_ttl_secs),
            ),
        );
        let reporter = Reporter::new(
            outbox,
            config.effective_appliance_id(),
            &config.manager,
            stats.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let clones = crate::clones::CloneSigner::load(&config.clones, config.clone_nonce_journal())
            .map_err(|e| anyhow::anyhow!(e))?;
        let spool = config.spool_dir();
        if let Some(dir) = &spool {
            use std::os::unix::fs::DirBuilderExt;
            // Its files have no name; the directory is the appliance's own.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    anyhow::anyhow!("cannot make the spool directory {}: {e}", dir.display())
                })?;
        }
        Ok(Arc::new(Appliance {
            spool,
            clones,
            pool: giva_engine::ScanPool::new(giva_engine::PoolConfig {
                workers: config.pool.workers,
                queue_capacity: config.pool.queue_capacity,
            }),
            cache: Arc::new(giva_engine::VerdictCache::new(giva_engine::CacheConfig {
                max_entries: config.cache.max_entries,
                max_bytes: config.cache.max_bytes,
            })),
            flights: Arc::new(flight::Flights::default()),
            full_scan_slots: Arc::new(Semaphore::new(config.full_scan.max_concurrent)),
            content_budget: byte_budget(config.server.max_pending_content_total_bytes),
            full_scan_waiting: AtomicUsize::new(0),
            shutdown: tokio::sync::watch::Sender::new(false),
            reloads: ReloadState::new(&config.database.paths),
            tls: std::sync::OnceLock::new(),
            config,
            policies: policies.clone(),
            signatures,
            registry,
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

    /// Whether verdicts are being served (`/readyz`, and the shims' gRPC
    /// health): `Err` with the reason once a shutdown has begun.
    pub fn ready(&self) -> Result<(), String> {
        if *self.shutdown.borrow() {
            Err("draining: finishing the files in flight, taking no new events".into())
        } else {
            Ok(())
        }
    }

    /// Everything `/healthz` reports: the [`problems`](Self::problems) of
    /// the database, a detection waiting too long in the outbox, and a
    /// manager unreachable for too long. Empty when healthy.
    pub async fn health(&self) -> Vec<String> {
        let mut out = self.problems();
        if !self.reporter.has_manager() {
            return out;
        }
        let m = &self.config.manager;
        // Detections of a heartbeat-only policy wait for the heartbeat by
        // design.
        let heartbeat_only =
            !m.notify_immediately || self.policies.all().any(|p| !p.notify_immediately());
        let overdue = m.detection_overdue_secs
            + if heartbeat_only {
                m.heartbeat_interval_secs
            } else {
                0
            };
        if let Some(at) = self.reporter.outbox().oldest_prompt_us().await {
            let waited =
                u64::try_from(giva_proto::now_us().saturating_sub(at)).unwrap_or(0) / 1_000_000;
            if waited > overdue {
                out.push(format!(
                    "a detection has waited {waited} s in the outbox for the manager (over {overdue} s)"
                ));
            }
        }
        if let Some(d) = self.reporter.unreachable_for()
            && d.as_secs() > m.unreachable_overdue_secs
        {
            out.push(format!(
                "the manager at {} has been unreachable for {} s (over {} s)",
                m.url,
                d.as_secs(),
                m.unreachable_overdue_secs
            ));
        }
        out
    }

    /// Problems of the database and of the outbox (events held only in
    /// memory, its disk full), reported in health checks and heartbeats.
    pub fn problems(&self) -> Vec<String> {
        let err = self
            .reloads
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        err.map(|e| format!("database reload failed, previous database in service: {e}"))
            .into_iter()
            .chain(self.reporter.outbox().problems())
            .collect()
    }

    /// Reads the TLS files again: the shims' listener's certificate, key,
    /// client CAs and revocation lists, the manager link's, and the
    /// delegated CA and clone key. New
    /// connections use them; a file that is unusable keeps the ones in
    /// use, and is named in the error.
    ///
    /// # Errors
    ///
    /// What is wrong with which files.
    pub fn reload_tls(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(tls) = self.tls.get() {
            match tls.reload() {
                Ok(()) => info!("shims' TLS files reloaded"),
                Err(e) => errors.push(format!("the shims' TLS: {e}")),
            }
        }
        match self.reporter.reload_tls(&self.config.manager) {
            Ok(true) => info!("manager link's TLS files reloaded"),
            Ok(false) => {}
            Err(e) => errors.push(format!("the manager link's TLS: {e}")),
        }
        if let Some(clones) = &self.clones {
            match clones.reload(&self.config.clones) {
                Ok(()) => info!("delegated CA and clone key reloaded"),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let all = errors.join("; ");
            tracing::error!(error = %all, "TLS reload failed; the files in use stay");
            Err(all)
        }
    }

    /// Loads the configured database again, validates it and builds its
    /// engine off the async threads, then swaps it in atomically. Scans in
    /// flight finish on the old one. A bad database is refused and the old
    /// one stays in service. Returns the new version.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]: the new database cannot be loaded or built.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reloads.lock.lock().await;
        let app = self.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let files = fingerprint(&app.config.database.paths);
            *app.reloads
                .loaded_files
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = files;
            let (db, engine) = load_signatures(&app.config.database.paths, options(&app.config))?;
            let version = db.version().to_string();
            app.signatures.replace(db, engine);
            Ok::<_, ReloadError>(version)
        })
        .await
        .unwrap_or_else(|e| Err(ReloadError::Task(e)));
        let mut err = self.reloads.error.lock().unwrap_or_else(|e| e.into_inner());
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
                *err = Some(e.to_string());
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

/// Completes when the watched flag turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A budget of `bytes` content bytes, a permit a byte (held to what a
/// semaphore can count): the appliance's, and each session's.
pub(crate) fn byte_budget(bytes: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)))
}
