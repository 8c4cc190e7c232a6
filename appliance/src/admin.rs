//! The admin HTTP endpoint: `GET /metrics` (Prometheus), `GET /healthz`
//! (is anything wrong: 503 with the reasons), `GET /readyz` (are verdicts
//! served), `POST /reload` (reload the signature database now).
//!
//! Reading is open to whoever can reach the endpoint (it listens on
//! loopback by default); `POST /reload` needs the admin token
//! (`Authorization: Bearer <token>`, from the file the configuration
//! names), so that a process that can reach the port cannot make the
//! appliance do work on demand.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use giva_runtime::Secret;
use tokio::net::TcpListener;

use crate::appliance::Appliance;

async fn metrics(
    State(Admin { app, .. }): State<Admin>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        {
            app.stats.observe(&app.cache.stats(), &app.pool.stats());
            app.stats
                .outbox_dead_letters
                .set(i64::try_from(app.reporter.outbox().dead_letters()).unwrap_or(i64::MAX));
            app.stats.render()
        },
    )
}

/// 200 `ok <database version>`, or 503 `unhealthy: <reasons>`.
async fn healthz(State(Admin { app, .. }): State<Admin>) -> (StatusCode, String) {
    let problems = app.health().await;
    if problems.is_empty() {
        (StatusCode::OK, format!("ok {}\n", app.signatures.version()))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", problems.join("; ")),
        )
    }
}

/// 200 `ready <database version>` while verdicts are served, or 503 with
/// the reason. An unhealthy appliance that still answers is ready: a
/// manager outage must not make shims stop asking.
async fn readyz(State(Admin { app, .. }): State<Admin>) -> (StatusCode, String) {
    match app.ready() {
        Ok(()) => (
            StatusCode::OK,
            format!("ready {}\n", app.signatures.version()),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Admin {
    app: Arc<Appliance>,
    token: Secret,
}

async fn reload(State(admin): State<Admin>, headers: HeaderMap) -> (StatusCode, String) {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(giva_runtime::token::bearer);
    match given {
        None => {
            return (
                StatusCode::UNAUTHORIZED,
                "POST /reload needs `Authorization: Bearer <token>`, the token in the \
                 appliance's admin token file (server.admin_token_file)\n"
                    .into(),
            );
        }
        Some(t) if !giva_runtime::token::matches(t, &admin.token) => {
            return (StatusCode::UNAUTHORIZED, "unknown token\n".into());
        }
        Some(_) => {}
    }
    match admin.app.reload("admin request").await {
        Ok(version) => match admin.app.reload_tls() {
            Ok(()) => (StatusCode::OK, format!("reloaded: {version}\n")),
            Err(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reloaded: {version}; TLS reload refused, old files kept: {e}\n"),
            ),
        },
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, old database kept: {e}\n"),
        ),
    }
}

/// Serves the admin endpoint on `listener` until `shutdown` completes;
/// `POST /reload` needs `token`.
///
/// # Errors
///
/// The HTTP server fails.
pub async fn serve(
    app: Arc<Appliance>,
    token: Secret,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/reload", post(reload))
        .with_state(Admin { app, token });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
