//! The giva manager: receives detections and heartbeats from appliances,
//! stores them, and quarantines infected VMs by tagging them.
//!
//! - [`service::Manager`] holds the state and [`service::ManagerGrpc`] serves
//!   it over gRPC (`giva.manager.v1`).
//! - [`serve`] runs the service and the tagging worker on a listener until a
//!   shutdown future fires.
//! - [`store`] keeps events, VMs, transitions and the action queue (SQLite).
//! - [`quarantine`] is the VM state machine (clean → infected →
//!   scan_requested → clean) and the policy; [`config`] its TOML file.
//! - [`tagging`] holds the actions (NSX-T, webhook, command) behind the
//!   [`tagging::TagAction`] trait; [`tagger::Tagger`] runs them with
//!   retries and a concurrency limit.
//! - [`auth`] checks the operators' and readers' tokens.
//! - [`cli`] is the command line: `serve`, and the operator commands
//!   (`events`, `vms`, `untag`, `scan`, `transitions`); `main.rs` only
//!   parses it and runs it.
//! - [`time`] formats times for people.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod ca;
pub mod cli;
pub mod config;
pub mod pki;
pub mod quarantine;
pub mod service;
pub mod stats;
pub mod store;
pub mod tagger;
pub mod tagging;
pub mod time;

use std::future::Future;
use std::sync::Arc;

use giva_proto::manager::manager_service_server::ManagerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use service::{Manager, ManagerGrpc};

/// Largest gRPC message the manager accepts (a heartbeat with many events).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the manager keeps its state by default (see
/// [`giva_runtime::dirs::state_dir`]).
pub fn default_state_dir() -> std::path::PathBuf {
    giva_runtime::dirs::state_dir("giva-manager")
}

/// Serves `manager` on `listener`, and runs its tagging worker (which
/// first resumes pending actions), until `shutdown` completes; then drains
/// in-flight requests and gives running actions `quarantine.drain_ms` to
/// finish (unfinished ones stay pending for the next start).
///
/// # Errors
///
/// A transport error from the gRPC server.
pub async fn serve(
    manager: Arc<Manager>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_tls(manager, listener, None, shutdown).await
}

/// [`serve`], with TLS when `tls` is given. A TLS configuration with a
/// client CA makes the manager take appliances' calls (`Notify`,
/// `Heartbeat`, `Subscribe`) only from the appliance their certificate
/// names ([`Manager::require_appliance_certificates`]).
///
/// # Errors
///
/// A transport error from the gRPC server, or an unusable TLS setup.
pub async fn serve_tls(
    manager: Arc<Manager>,
    listener: TcpListener,
    tls: Option<Arc<giva_proto::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(manager.tagger().clone().run(stop_rx));
    let svc = ManagerServiceServer::new(ManagerGrpc(manager.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder().add_service(svc);
    let shutdown = async move {
        shutdown.await;
        manager.close_subscriptions();
    };
    let served = match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(tls.incoming(listener, "manager"), shutdown)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
    };
    let _ = stop_tx.send(true);
    let _ = worker.await;
    served
}
