//! The appliance's background tasks: reload on database changes and on
//! SIGHUP, and scheduled full scans.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::appliance::{Appliance, stopped};
use crate::fullscan::{OrderedBy, ScanOrder};
use crate::reload::{Fingerprint, fingerprint};

/// Reloads when the database files change, checking every
/// `database.watch_interval_secs` (a change must hold still for one check
/// before it is loaded, so half-written files are not picked up).
pub(crate) async fn watch_database(
    app: Arc<Appliance>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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
            .reloads
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

/// Scheduled full scans: every `full_scan.every_hours`, each connected VM
/// is asked for a full scan at a random point within the window. Storm
/// control (the full-scan slots) still applies when they start.
pub(crate) async fn schedule_full_scans(
    app: Arc<Appliance>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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
                        registry.send_full_scan_command(
                            &vm,
                            ScanOrder {
                                ordered_by: OrderedBy::Schedule,
                                order_id: String::new(),
                                reason: "schedule".into(),
                                roots: Vec::new(),
                                recheck: Vec::new(),
                            },
                        );
                    }
                }
            });
        }
    }
}

/// Reloads the database, the shims' TLS files and the manager link's TLS
/// files on SIGHUP.
pub(crate) async fn reload_on_sighup(
    app: Arc<Appliance>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mut hup) = giva_runtime::signal::hangups() else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /reload instead");
        return;
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = hup.recv() => {
                let _ = app.reload("SIGHUP").await;
                let _ = app.reload_tls();
            }
        }
    }
}

/// Puts in force the revocation lists the manager sends with its heartbeat
/// answers: written to `server.crl_file` and loaded at once, so that a
/// revoked shim certificate is refused within a heartbeat. Only over an
/// authenticated (TLS) manager link, and only when the shims' listener has
/// a revocation file; lists that do not load are not kept.
pub(crate) async fn apply_revocation_lists(
    app: Arc<Appliance>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let path = app.config.server.crl_file.clone();
    if path.as_os_str().is_empty() || app.config.manager.ca_file.as_os_str().is_empty() {
        return;
    }
    let mut news = app.reporter.revocation_news();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            changed = news.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let Some(n) = news.borrow_and_update().clone() else {
            continue;
        };
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if let Err(e) = giva_runtime::dirs::write_file(&path, &n.crl_pem, false) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the manager's revocation lists");
            continue;
        }
        match app.reload_tls() {
            Ok(()) => {
                app.reporter.set_revocation_version(&n.version);
                tracing::info!(version = %n.version, "revocation lists from the manager in force");
            }
            Err(e) => {
                let _ = giva_runtime::dirs::write_file(&path, &old, false);
                let _ = app.reload_tls();
                tracing::error!(error = %e, "the manager's revocation lists do not load; the previous ones stay");
            }
        }
    }
}

/// Renews this appliance's certificate when the manager's heartbeat answer
/// says it is due (a newer CA generation signs, or a third of its lifetime
/// is left): new keys made here, a `Renew` call on the current
/// certificate, the answer written over the manager link's files (and the
/// delegated CA's, when clones are signed here), and everything reloaded.
/// If the new files do not load, the old ones are put back.
pub(crate) async fn renew_certificate(
    app: Arc<Appliance>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let link = &app.config.manager;
    if link.cert_file.as_os_str().is_empty()
        || link.key_file.as_os_str().is_empty()
        || link.ca_file.as_os_str().is_empty()
    {
        return;
    }
    let mut due = app.reporter.renewal_due();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            changed = due.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        due.borrow_and_update();
        match renew_once(&app).await {
            Ok(serial) => {
                app.stats.certificate_renewals.inc();
                tracing::info!(%serial, "certificate renewed and in use");
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate renewal failed; it is tried again at the next heartbeat")
            }
        }
    }
}

/// One renewal; returns the new certificate's serial number.
async fn renew_once(app: &Appliance) -> Result<String, String> {
    let link = &app.config.manager;
    let clones = &app.config.clones;
    let delegated = !clones.delegate_cert_file.as_os_str().is_empty()
        && !clones.delegate_key_file.as_os_str().is_empty()
        && !clones.clone_key_file.as_os_str().is_empty();
    let (key, csr) = giva_proto::enroll::key_request().map_err(|e| e.to_string())?;
    let (delegate_key, delegate_csr) = if delegated {
        giva_proto::enroll::key_request().map_err(|e| e.to_string())?
    } else {
        (String::new(), String::new())
    };
    let answer = app
        .reporter
        .renew(csr, delegate_csr)
        .await
        .map_err(|s| format!("the manager refused: {}", s.message()))?;
    if answer.role != "appliance" || answer.name != app.config.appliance_id {
        return Err(format!(
            "the manager answered for {} {}, not this appliance",
            answer.role, answer.name
        ));
    }
    let serial = giva_proto::tls::certificate_serial_pem(&answer.cert_pem)
        .ok_or("the answer holds no certificate")?;
    let mut files = vec![
        (link.cert_file.clone(), answer.cert_pem, false),
        (link.key_file.clone(), key, true),
        (link.ca_file.clone(), answer.ca_pem, false),
    ];
    // The new CA's revocation list must be in force with it.
    if !app.config.server.crl_file.as_os_str().is_empty() && !answer.crl_pem.is_empty() {
        files.push((app.config.server.crl_file.clone(), answer.crl_pem, false));
    }
    if delegated {
        if !answer.delegate_cert_pem.contains("BEGIN CERTIFICATE") {
            return Err("the answer holds no delegated CA".into());
        }
        files.push((
            clones.delegate_cert_file.clone(),
            answer.delegate_cert_pem,
            false,
        ));
        files.push((clones.delegate_key_file.clone(), delegate_key, true));
        files.push((clones.clone_key_file.clone(), answer.clone_key, true));
    }
    let old: Vec<Option<String>> = files
        .iter()
        .map(|(p, _, _)| std::fs::read_to_string(p).ok())
        .collect();
    let put_back = || {
        for ((path, _, private), text) in files.iter().zip(&old) {
            if let Some(text) = text {
                let _ = giva_runtime::dirs::write_file(path, text, *private);
            }
        }
        let _ = app.reload_tls();
    };
    for (path, text, private) in &files {
        if let Err(e) = giva_runtime::dirs::write_file(path, text, *private) {
            put_back();
            return Err(format!("{}: {e}", path.display()));
        }
    }
    match app.reload_tls() {
        Ok(()) => Ok(serial),
        Err(e) => {
            put_back();
            Err(format!(
                "the renewed files do not load ({e}); the old ones are back"
            ))
        }
    }
}
