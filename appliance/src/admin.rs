//! The admin HTTP endpoint: `GET /metrics` (Prometheus), `GET /healthz`,
//! `POST /reload` (reload the signature database now).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::appliance::Appliance;

async fn metrics(
    State(app): State<Arc<Appliance>>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        {
            app.stats.observe(&app.cache.stats(), &app.pool.stats());
            app.stats.render()
        },
    )
}

async fn healthz(State(app): State<Arc<Appliance>>) -> (StatusCode, String) {
    let problems = app.problems();
    if problems.is_empty() {
        (StatusCode::OK, format!("ok {}\n", app.signatures.version()))
    } else {
        (
            StatusCode::OK,
            format!("degraded: {}\n", problems.join("; ")),
        )
    }
}

async fn reload(State(app): State<Arc<Appliance>>) -> (StatusCode, String) {
    match app.reload("admin request").await {
        Ok(version) => (StatusCode::OK, format!("reloaded: {version}\n")),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, old database kept: {e}\n"),
        ),
    }
}

/// Serves the admin endpoint on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The HTTP server fails.
pub async fn serve(
    app: Arc<Appliance>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/reload", post(reload))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
