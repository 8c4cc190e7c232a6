//! The manager's admin HTTP endpoint: `GET /metrics` (Prometheus) and
//! `GET /healthz` (200 `ok`, or 503 with what is wrong). Both only read; it
//! listens on loopback by default.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::Manager;

async fn metrics(
    State(manager): State<Arc<Manager>>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        manager.render_metrics(),
    )
}

async fn healthz(State(manager): State<Arc<Manager>>) -> (StatusCode, String) {
    let problems = manager.health().await;
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", problems.join("; ")),
        )
    }
}

/// Serves the admin endpoint on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The HTTP server fails.
pub async fn serve(
    manager: Arc<Manager>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(manager);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
