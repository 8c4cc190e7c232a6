//! Signals: when to drain and stop, and when to reload.

/// Resolves on SIGINT or SIGTERM (on SIGINT alone if SIGTERM cannot be
/// watched), for a server's graceful drain.
pub async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested; draining");
}

/// A stream of SIGHUP deliveries (the operator's "reload" request), or
/// `None` if SIGHUP cannot be watched here.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
