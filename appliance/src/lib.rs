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

pub mod cli;
pub mod config;
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

use giva_proto::shim::shim_service_server::ShimServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

use crate::config::Config;
use crate::policy::Policy;
use crate::registry::Registry;
use crate::reporter::Reporter;
use crate::scan::Signatures;
use crate::stats::Stats;

/// A running appliance's shared state.
#[derive(Debug)]
pub struct Appliance {
    /// The configuration it was started with.
    pub config: Config,
    /// The policy for VMs.
    pub policy: Policy,
    /// The signatures in service.
    pub signatures: Signatures,
    /// Registered VMs.
    pub registry: Arc<Registry>,
    /// The link to the manager.
    pub reporter: Arc<Reporter>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Full-scan slots (storm control).
    pub full_scan_slots: Arc<Semaphore>,
    /// VMs waiting for a full-scan slot.
    pub full_scan_waiting: AtomicUsize,
    /// Set once a graceful shutdown begins; sessions watch it.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Appliance {
    /// Builds an appliance from its configuration and a loaded database.
    ///
    /// # Errors
    ///
    /// An invalid configuration or a database the engine cannot use.
    pub async fn new(
        config: Config,
        database: giva_signatures::Database,
    ) -> anyhow::Result<Arc<Self>> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let policy = Policy::new(config.policy.clone(), config.limits.clone())
            .map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?;
        let signatures = Signatures::new(database)
            .map_err(|e| anyhow::anyhow!("cannot build the scan engine: {e}"))?;
        let stats = Arc::new(Stats::default());
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
            full_scan_slots: Arc::new(Semaphore::new(config.full_scan.max_concurrent)),
            full_scan_waiting: AtomicUsize::new(0),
            shutdown: tokio::sync::watch::Sender::new(false),
            config,
            policy,
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
}

/// Loads the database named by the configuration: the bundled default when
/// no path is given.
///
/// # Errors
///
/// The signatures cannot be read or compiled; the message names the file
/// and line.
pub fn load_database(config: &Config) -> anyhow::Result<giva_signatures::Database> {
    if config.database.paths.is_empty() {
        return Ok(giva_signatures::bundled());
    }
    giva_signatures::load(&config.database.paths).map_err(|e| anyhow::anyhow!("{e}"))
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
            move || app2.signatures.version(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ShimServiceServer<service::ShimGrpc>>()
        .await;
    let svc = ShimServiceServer::new(service::ShimGrpc(app.clone()))
        .max_decoding_message_size(app.config.server.max_message_bytes);
    let addr = listener.local_addr().ok();
    info!(?addr, database = %app.signatures.version(), "appliance serving");
    let deadline = Duration::from_secs(app.config.server.shutdown_deadline_secs);
    let app_for_signal = app.clone();
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            info!("draining sessions");
            app_for_signal.begin_shutdown();
        });
    tokio::pin!(server);
    let mut draining = app.shutdown_watch();
    let result = tokio::select! {
        r = &mut server => r,
        _ = async {
            let _ = draining.wait_for(|s| *s).await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!(deadline_secs = deadline.as_secs(), "sessions did not drain before the deadline; closing them");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    if tokio::time::timeout(deadline, reporter_task).await.is_err() {
        let pending = app.reporter.pending().await;
        tracing::warn!(
            pending,
            "reporter did not flush before the deadline; the outbox keeps the rest"
        );
    }
    result.map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))
}
