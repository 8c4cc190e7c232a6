//! Operating the appliance: metrics, health, reload, configuration.

use std::time::Duration;

use giva_appliance::config::Config;

use crate::common::{
    EICAR, config_with_manager, eventually, shim_scan, start_appliance, start_manager_with,
    test_config, write,
};

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "").await
}

/// As [`http`], with `headers` (each ending in `\r\n`) added.
async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_reload_over_the_admin_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sigs");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(
        db.join("a.ndb"),
        "Test.Alpha:0:*:414c5048412d4d41524b4552\n",
    )
    .expect("write");
    let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    drop(admin);
    let mut config = test_config();
    config.database.paths = vec![db.clone()];
    config.database.watch_interval_secs = 0;
    config.server.admin_listen = Some(admin_addr);
    let token_file = dir.path().join("state/admin.token");
    config.server.admin_token_file = token_file.clone();
    let (appliance, app) = start_appliance(config).await;
    // Made when the admin endpoint starts, just after the gRPC listener.
    eventually(Duration::from_secs(10), || async { token_file.exists() }).await;
    let token = std::fs::read_to_string(&token_file).expect("the admin token was made");
    let auth = format!("Authorization: Bearer {}\r\n", token.trim());

    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "alpha.bin", b"\x00\x01ALPHA-MARKER and more");
    write(&guest, "beta.bin", b"\x00\x01BETA-MARKER and more");
    let s = shim_scan(&appliance.url(), "vm-ops", &guest).await;
    assert_eq!(s.infected, 1);

    let (code, body) = http(admin_addr, "GET", "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "giva_events_total 2",
        "giva_verdicts_total{kind=\"deny\"} 1",
        "giva_verdicts_total{kind=\"allow\"} 1",
        "giva_verdict_latency_seconds_count{source=\"scan\"} 2",
        "giva_sessions 0",
        "giva_database_info{version=",
        // Two files, each under its identity and its content digest.
        "giva_cache_entries 4",
        "giva_cache_bytes ",
        "giva_cache_evictions 0",
        "giva_scan_queue_depth{priority=\"on_access\"} 0",
        "giva_scan_queue_rejected 0",
        "giva_split_segments 0",
        "giva_split_segments_stolen 0",
        "giva_split_yields 0",
        "giva_scan_queue_abandoned 0",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }
    let v1 = app.signatures.version();

    // A good new database is swapped in; the new signature applies.
    std::fs::write(db.join("b.ndb"), "Test.Beta:0:*:424554412d4d41524b4552\n").expect("write");
    // Not without the token, nor with a wrong one.
    let (code, body) = http(admin_addr, "POST", "/reload").await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("admin token"), "{body}");
    let wrong = "Authorization: Bearer 00000000\r\n";
    let (code, _) = http_with(admin_addr, "POST", "/reload", wrong).await;
    assert_eq!(code, 401);
    assert_eq!(app.signatures.version(), v1, "nothing reloaded");
    let (code, body) = http_with(admin_addr, "POST", "/reload", &auth).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(app.signatures.version(), v1);
    let s = shim_scan(&appliance.url(), "vm-ops", &guest).await;
    assert_eq!(s.infected, 2);

    // A bad one is refused and the previous one stays in service.
    let v2 = app.signatures.version();
    std::fs::write(db.join("c.ndb"), "Broken:0:*:41\n").expect("write");
    let (code, body) = http_with(admin_addr, "POST", "/reload", &auth).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("c.ndb"), "the error names the file: {body}");
    assert_eq!(app.signatures.version(), v2);
    let (code, health) = http(admin_addr, "GET", "/healthz").await;
    assert_eq!(code, 503, "a failed reload is unhealthy: {health}");
    assert!(
        health.starts_with("unhealthy: database reload failed"),
        "{health}"
    );
    let (code, ready) = http(admin_addr, "GET", "/readyz").await;
    assert_eq!(code, 200, "verdicts are still served: {ready}");
    let s = shim_scan(&appliance.url(), "vm-ops", &guest).await;
    assert_eq!(s.infected, 2, "still scanning with the previous database");
    let (_, metrics) = http(admin_addr, "GET", "/metrics").await;
    assert!(
        metrics.contains("giva_database_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_changes_are_picked_up_by_the_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sigs.ndb");
    std::fs::write(&db, "Test.Alpha:0:*:414c5048412d4d41524b4552\n").expect("write");
    let mut config = test_config();
    config.database.paths = vec![db.clone()];
    config.database.watch_interval_secs = 1;
    let (appliance, app) = start_appliance(config).await;
    let v1 = app.signatures.version();
    std::fs::write(
        &db,
        "Test.Alpha:0:*:414c5048412d4d41524b4552\nTest.Beta:0:*:424554412d4d41524b4552\n",
    )
    .expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.signatures.version() == v1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        app.signatures.version(),
        v1,
        "the watcher reloaded the changed file: {:?}",
        app.problems()
    );
    let guest = tempfile::tempdir().expect("tempdir");
    write(guest.path(), "beta.bin", b"\x00\x01BETA-MARKER and more");
    write(guest.path(), "eicar.com", EICAR);
    let s = shim_scan(&appliance.url(), "vm-watch", guest.path()).await;
    assert_eq!(s.infected, 1, "beta found; EICAR is not in this database");
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_503_while_a_detection_cannot_reach_the_manager() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir().expect("tempdir");
    // A manager address nobody listens on yet.
    let manager_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let admin_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut config = config_with_manager(&format!("http://{manager_addr}"));
    config.server.admin_listen = Some(admin_addr);
    config.server.admin_token_file = dir.path().join("admin.token");
    config.manager.detection_overdue_secs = 1;
    config.manager.unreachable_overdue_secs = 1;
    config.manager.request_timeout_ms = 500;
    let (appliance, _app) = start_appliance(config).await;
    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let s = shim_scan(&appliance.url(), "vm-health", &guest).await;
    assert_eq!(s.infected, 1);

    let unhealthy = eventually(Duration::from_secs(15), || async {
        let (code, body) = http(admin_addr, "GET", "/healthz").await;
        code == 503 && body.contains("waited") && body.contains("unreachable")
    })
    .await;
    let (_, body) = http(admin_addr, "GET", "/healthz").await;
    assert!(
        unhealthy,
        "a stuck detection and a lost manager show: {body}"
    );
    // Still ready, and the shims' gRPC health still says serving: a
    // manager outage must not make fail-open shims stop asking.
    let (code, _) = http(admin_addr, "GET", "/readyz").await;
    assert_eq!(code, 200);
    let channel = tonic::transport::Endpoint::from_shared(appliance.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "giva.shim.v1.ShimService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The manager comes up: the detection is delivered and health returns.
    let (manager, _mgr) = start_manager_with(
        Some(manager_addr),
        None,
        &giva_manager::config::Config::default(),
    )
    .await;
    let healthy = eventually(Duration::from_secs(20), || async {
        http(admin_addr, "GET", "/healthz").await.0 == 200
    })
    .await;
    let (_, body) = http(admin_addr, "GET", "/healthz").await;
    assert!(healthy, "healthy once the detection is delivered: {body}");
    appliance.stop().await;
    manager.stop().await;
}

#[test]
fn printed_default_config_parses_back_to_the_defaults() {
    let text = Config::default().to_toml();
    let parsed: Config = toml::from_str(&text).expect("defaults parse");
    assert_eq!(parsed, Config::default());
    let bad = toml::from_str::<Config>("[server]\nlisten_typo = 1\n");
    assert!(bad.is_err(), "unknown keys are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shims_on_the_host_can_use_the_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("run/giva.sock");
    // A stale socket file from a previous run is replaced.
    std::fs::create_dir_all(sock.parent().expect("parent")).expect("mkdir");
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("stale socket"));
    let mut config = test_config();
    config.server.unix_socket = Some(sock.clone());
    let (appliance, _app) = start_appliance(config).await;
    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let url = format!("unix:{}", sock.display());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::UnixStream::connect(&sock).await.is_err()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = shim_scan(&url, "vm-unix", &guest).await;
    assert_eq!(s.infected, 1);
    appliance.stop().await;

    // Anything else at that path is never replaced.
    let mut config = test_config();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"data").expect("write");
    config.server.unix_socket = Some(file.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let db = giva_signatures::bundled();
    let app = giva_appliance::Appliance::new(config, db)
        .await
        .expect("appliance");
    let err = giva_appliance::serve(app, listener, std::future::pending())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).expect("still there"), b"data");
}
