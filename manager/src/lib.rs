//! The giva manager: receives detections and heartbeats from appliances,
//! stores them, and (later) tags infected VMs.
//!
//! - [`service::Manager`] holds the state and [`service::ManagerGrpc`] serves
//!   it over gRPC (`giva.manager.v1`).
//! - [`serve`] runs the service on a listener until a shutdown future fires.
//! - [`cli`] holds the operator commands (`events`, `vms`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod service;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use giva_proto::manager::manager_service_server::ManagerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use service::{Manager, ManagerGrpc};

/// Largest gRPC message the manager accepts (a heartbeat with many events).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the manager keeps its state by default (see
/// [`giva_proto::state_dir`]).
pub fn default_state_dir() -> std::path::PathBuf {
    giva_proto::state_dir("giva-manager")
}

/// Serves `manager` on `listener` until `shutdown` completes, then drains
/// in-flight requests.
///
/// # Errors
///
/// A transport error from the gRPC server.
pub async fn serve(
    manager: Arc<Manager>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let svc = ManagerServiceServer::new(ManagerGrpc(manager))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
