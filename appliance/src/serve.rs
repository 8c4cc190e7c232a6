//! [`serve`]: the gRPC service, its listeners, the admin endpoint and the
//! background tasks, until a shutdown; then the drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use giva_proto::shim::shim_service_server::ShimServiceServer;
use tokio::net::TcpListener;
use tracing::info;

use crate::admin;
use crate::appliance::{Appliance, stopped};
use crate::listen::{ConnectionCap, Peer, bind_unix, bind_vsock, vsock_peer};
use crate::service;
use crate::tasks::{
    apply_revocation_lists, reload_on_sighup, renew_certificate, schedule_full_scans,
    watch_database,
};

/// TCP keepalive on shims' plaintext connections (TLS ones rely on HTTP/2
/// pings alone).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

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
    let server = &app.config.server;
    let tls = giva_proto::tls::ServerTls::load(giva_proto::tls::ServerFiles {
        cert: server.tls_cert_file.clone(),
        key: server.tls_key_file.clone(),
        client_ca: server.client_ca_file.clone(),
        crl: server.crl_file.clone(),
    })
    .map_err(|e| anyhow::anyhow!("the shims' TLS: {e}"))?;
    if let Ok(addr) = listener.local_addr() {
        giva_proto::tls::check_plaintext(
            "the shims' listener",
            &addr,
            tls.is_some(),
            server.insecure_plaintext,
        )?;
        if tls.is_none() && !giva_proto::tls::is_loopback(&addr) {
            tracing::warn!(%addr, "shims connect in plaintext on a network address (--insecure-plaintext)");
        }
    }
    if let Some(addr) = &server.admin_listen {
        giva_proto::tls::check_plaintext(
            "the admin endpoint",
            addr,
            false,
            server.insecure_plaintext,
        )?;
    }
    if tls.is_some() && server.client_ca_file.as_os_str().is_empty() {
        tracing::warn!(
            "shims are not authenticated: no server.client_ca_file, so a VM's id is its own claim"
        );
    }
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
    if let Some(tls) = &tls {
        let _ = app.tls.set(tls.clone());
    }
    let sighup = tokio::spawn(reload_on_sighup(app.clone(), stop_rx.clone()));
    let revocations = tokio::spawn(apply_revocation_lists(app.clone(), stop_rx.clone()));
    let renewals = tokio::spawn(renew_certificate(app.clone(), stop_rx.clone()));
    let scheduler = tokio::spawn(schedule_full_scans(app.clone(), stop_rx.clone()));
    // Memory freed after a burst (a flood of sessions, a storm of scans)
    // goes back to the system instead of staying in the allocator.
    let trimmer = {
        let mut rx = stop_rx.clone();
        tokio::spawn(giva_runtime::system::give_back_periodically(
            Duration::from_secs(5),
            32 << 20,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    };
    let admin = match app.config.server.admin_listen {
        Some(addr) => {
            // The token before the port opens.
            let token_file = app.config.admin_token_path();
            let token = giva_runtime::token::load_or_create(&token_file)
                .map_err(|e| anyhow::anyhow!("the admin endpoint's token: {e}"))?;
            let l = TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr} for the admin endpoint: {e}")
            })?;
            info!(
                addr = ?l.local_addr().ok(),
                token_file = %token_file.display(),
                "admin endpoint (/metrics, /healthz, /readyz, POST /reload with the token)"
            );
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(admin::serve(
                app.clone(),
                token,
                l,
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    // The shims' gRPC health follows readiness: serving until the drain
    // begins. A manager outage leaves it serving.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ShimServiceServer<service::ShimGrpc>>()
        .await;
    {
        let mut rx = app.shutdown_watch();
        tokio::spawn(async move {
            stopped(&mut rx).await;
            health_reporter
                .set_not_serving::<ShimServiceServer<service::ShimGrpc>>()
                .await;
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        });
    }
    // TLS on the TCP listener; a Unix socket and vsock stay on the host.
    let router = || {
        let svc = ShimServiceServer::new(service::ShimGrpc(app.clone()))
            .max_decoding_message_size(app.config.server.max_message_bytes);
        tonic::transport::Server::builder()
            // tonic's default is no limit at all (not even hyper's 200).
            .max_concurrent_streams(app.config.server.max_streams_per_connection)
            // A peer that vanished (a VM reset, a NAT mapping gone) does not
            // answer pings: its connection, and its place in the per-peer
            // count, is given back within half a minute.
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(tower::util::MapResponseLayer::new(
                crate::status::unary_codes::<tonic::body::Body>,
            ))
            .add_service(health_service.clone())
            .add_service(svc)
    };
    let draining = |app: Arc<Appliance>| async move {
        let mut rx = app.shutdown_watch();
        stopped(&mut rx).await;
    };
    let addr = listener.local_addr().ok();
    info!(?addr, database = %app.signatures.version(), "appliance serving");
    // Connections open at once are capped per peer on the network
    // listeners; a Unix socket's peers are this host's own processes. Each
    // connection is a descriptor: the cap stays under the process's limit,
    // with room for the databases, the spool and the admin endpoint.
    let max_connections = match giva_runtime::system::raise_open_files_limit() {
        Some(fds) => {
            let room = usize::try_from(fds.saturating_sub(512) / 2)
                .unwrap_or(usize::MAX)
                .max(64);
            if room < server.max_connections {
                tracing::warn!(
                    open_files_limit = fds,
                    max_connections = server.max_connections,
                    cap = room,
                    "the open-files limit holds each listener to fewer connections than server.max_connections; raise the limit (LimitNOFILE= under systemd)"
                );
            }
            room.min(server.max_connections)
        }
        None => server.max_connections,
    };
    let cap = |what| {
        ConnectionCap::new(
            server.max_connections_per_peer,
            max_connections,
            app.stats.connections_refused.clone(),
            what,
        )
    };
    let tcp = {
        let router = router();
        let draining = draining(app.clone());
        let cap = cap("shims (TCP)");
        async move {
            match tls {
                Some(tls) => {
                    // Counted as accepted, before the handshake: a peer at
                    // its cap costs no handshake.
                    let incoming = tls.incoming_with(listener, "shims", move |tcp, addr| {
                        cap.admit(tcp, Some(Peer::of(addr)))
                    });
                    router
                        .serve_with_incoming_shutdown(incoming, draining)
                        .await
                }
                None => {
                    let incoming = cap.apply(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true))
                            .with_keepalive(Some(TCP_KEEPALIVE)),
                        |s| s.peer_addr().ok().map(Peer::of),
                    );
                    router
                        .serve_with_incoming_shutdown(incoming, draining)
                        .await
                }
            }
        }
    };
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
            let incoming = cap("shims (vsock)").apply(bind_vsock(port)?, vsock_peer);
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
    let _ = revocations.await;
    let _ = renewals.await;
    let _ = scheduler.await;
    let _ = trimmer.await;
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
    // What the outbox could not write (a full disk) goes to disk now, in
    // the space set aside for it, rather than be lost with the process.
    app.reporter.outbox().persist_fallback().await;
    result.map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))
}
