//! TLS on every link, with certificates from the manager's CA: the
//! appliance and the manager know each other's calls are their own, a shim
//! registers only as the VM its certificate names, and handshake failures
//! say what is wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use giva_manager::ca::Role;
use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{NotifyRequest, SubscribeRequest};
use giva_proto::tls::ClientFiles;
use giva_shim::scan::ScanConfig;
use tokio::net::TcpListener;

use crate::common::{EICAR, Running, eventually, start_appliance, test_config, write};

/// A manager's CA (in a store of its own, in memory) with its CAs to
/// trust in `dir/ca`, and the files of the certificates it issues.
struct TestCa {
    dir: PathBuf,
    pki: giva_manager::pki::Pki,
}

impl TestCa {
    async fn new(dir: &Path) -> Self {
        let store = giva_manager::store::Store::open(Path::new(":memory:"))
            .await
            .expect("store");
        let pki = giva_manager::pki::Pki::new(store);
        pki.init(None).await.expect("CA");
        pki.export(&dir.join("ca")).await.expect("export");
        TestCa {
            dir: dir.to_owned(),
            pki,
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }

    /// A certificate for `name` in `role`, valid for 127.0.0.1 too.
    async fn issue(&self, name: &str, role: Role) -> (PathBuf, PathBuf) {
        self.issue_for(name, role, &["127.0.0.1".parse().expect("ip")], 1)
            .await
    }

    async fn issue_for(
        &self,
        name: &str,
        role: Role,
        ips: &[std::net::IpAddr],
        days: u32,
    ) -> (PathBuf, PathBuf) {
        let issued = self
            .pki
            .issue(name, role, &[], ips, days, "test")
            .await
            .expect("issue");
        let out = self.dir.join("issued").join(role.as_str());
        let (cert, key) = (
            out.join(format!("{name}.pem")),
            out.join(format!("{name}.key")),
        );
        giva_manager::ca::write_file(&cert, &issued.cert_pem, false).expect("cert");
        giva_manager::ca::write_file(&key, &issued.key_pem, true).expect("key");
        (cert, key)
    }

    /// A client's files: the CA, and a certificate for `name` in `role`.
    async fn client(&self, holder: Option<(&str, Role)>) -> ClientFiles {
        let (cert, key) = match holder {
            Some((n, r)) => self.issue(n, r).await,
            None => Default::default(),
        };
        ClientFiles {
            ca: self.ca_file(),
            cert,
            key,
        }
    }
}

/// Enrolls a VM at the appliance at `url` with `token`, keeping its files
/// in `out`: its id and the files to connect with.
async fn enroll_vm(
    url: &str,
    anonymous: &ClientFiles,
    token: String,
    out: &Path,
) -> Result<(String, ClientFiles), tonic::Status> {
    use giva_proto::shim::shim_service_client::ShimServiceClient;
    let (key, csr) = giva_proto::enroll::request(out, "vm", false).expect("request");
    let channel = anonymous
        .endpoint(url)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let answer = ShimServiceClient::new(channel)
        .enroll(giva_proto::shim::EnrollRequest {
            token,
            csr_pem: csr,
        })
        .await?
        .into_inner();
    let saved = giva_proto::enroll::save(out, "vm", &key, &answer).expect("save");
    Ok((
        answer.vm_id,
        ClientFiles {
            ca: saved.ca,
            cert: saved.cert,
            key: saved.key,
        },
    ))
}

/// A full scan of `guest` as `vm_id`, with `tls`.
async fn scan_as(
    url: &str,
    guest: &Path,
    vm_id: &str,
    tls: ClientFiles,
) -> Result<giva_shim::scan::Summary, giva_shim::client::ClientError> {
    let vm = giva_proto::shim::VmIdentity {
        vm_id: vm_id.into(),
        ..Default::default()
    };
    let mut c = ScanConfig::new(url.to_string(), vm, vec![guest.to_owned()]);
    c.tls = tls;
    giva_shim::scan::run(&c, |_| {}, |_, _| {}).await
}

/// A manager (in memory) with its CA in its store, the CAs to trust and
/// their revocation lists exported under `dir/pki`.
async fn manager_with_ca(
    dir: &Path,
) -> (
    std::sync::Arc<giva_manager::Manager>,
    giva_manager::pki::Pki,
    PathBuf,
    PathBuf,
) {
    let manager = giva_manager::Manager::in_memory().await.expect("store");
    let pki = giva_manager::pki::Pki::new(manager.store().clone());
    pki.init(None).await.expect("CA");
    let (ca_file, crl_file) = pki.export(&dir.join("pki")).await.expect("export");
    (manager, pki, ca_file, crl_file)
}

/// Writes `text` to `dir/name`.
fn put(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crl: &Path,
) -> std::sync::Arc<giva_proto::tls::ServerTls> {
    giva_proto::tls::ServerTls::load(giva_proto::tls::ServerFiles {
        cert: cert.to_owned(),
        key: key.to_owned(),
        client_ca: client_ca.to_owned(),
        crl: crl.to_owned(),
    })
    .expect("TLS")
    .expect("configured")
}

/// A manager serving TLS with `pki`'s certificate, taking appliances'
/// calls only from the appliance their certificate names.
async fn start_tls_manager(
    pki: &TestCa,
) -> (Running, std::sync::Arc<giva_manager::Manager>, String) {
    let (cert, key) = pki.issue("manager", Role::Server).await;
    let tls = server_tls(&cert, &key, &pki.ca_file(), Path::new(""));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let manager = giva_manager::Manager::in_memory().await.expect("store");
    manager.require_appliance_certificates();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let m = manager.clone();
    let task = tokio::spawn(async move {
        giva_manager::serve_tls(m, listener, Some(tls), async {
            let _ = rx.await;
        })
        .await
        .expect("manager serves");
    });
    let running = Running::spawned(addr, stop, task);
    (running, manager, format!("https://{addr}"))
}

async fn tls_client(
    url: &str,
    files: &ClientFiles,
) -> Result<ManagerServiceClient<tonic::transport::Channel>, String> {
    let endpoint = files.endpoint(url).map_err(|e| e.to_string())?;
    endpoint
        .connect()
        .await
        .map(ManagerServiceClient::new)
        .map_err(|e| giva_proto::tls::explain(&e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_and_manager_know_each_others_calls_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestCa::new(dir.path()).await;
    let (manager, mgr, url) = start_tls_manager(&pki).await;

    // The appliance reports over mTLS as the appliance its certificate names.
    let (cert, key) = pki.issue("app-1", Role::Appliance).await;
    let mut config = test_config();
    config.appliance_id = "app-1".into();
    config.manager.url = url.clone();
    config.manager.ca_file = pki.ca_file();
    config.manager.cert_file = cert;
    config.manager.key_file = key;
    let (appliance, _app) = start_appliance(config).await;
    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let s = crate::common::shim_scan(&appliance.url(), "vm-tls", &guest).await;
    assert_eq!(s.infected, 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            !crate::common::detections(&mgr).await.is_empty()
        })
        .await,
        "the detection arrived over mTLS"
    );

    // Another appliance's certificate cannot speak for app-1.
    let forged = NotifyRequest {
        appliance_id: "app-1".into(),
        events: Vec::new(),
    };
    let mut rogue = tls_client(&url, &pki.client(Some(("app-2", Role::Appliance))).await)
        .await
        .expect("TLS connects");
    let e = rogue.notify(forged.clone()).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = rogue
        .subscribe(SubscribeRequest {
            appliance_id: "app-1".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Nor a VM's certificate, even one that bears the appliance's name:
    // it sits in a guest, where malware can read it.
    let mut guest = tls_client(&url, &pki.client(Some(("app-1", Role::Vm))).await)
        .await
        .expect("TLS connects");
    let e = guest.notify(forged.clone()).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not an appliance's"), "{e:?}");
    // Nor can a caller without a certificate.
    let mut anon = tls_client(&url, &pki.client(None).await)
        .await
        .expect("TLS connects");
    let e = anon.notify(forged).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // The appliance itself may vouch for a clean scheduled scan of its VM:
    // the manager knows its calls are its own.
    let eicar_path = dir.path().join("guest/eicar.com").display().to_string();
    let record = giva_proto::manager::Event {
        event_id: "app-1-scheduled-1".into(),
        kind: giva_proto::manager::EventKind::ScanCompleted as i32,
        appliance_id: "app-1".into(),
        vm_id: "vm-tls".into(),
        detected_at_us: giva_proto::now_us(),
        scan: Some(giva_proto::manager::ScanSummary {
            completed: true,
            ordered_by: "schedule".into(),
            roots: vec!["/".into()],
            started_at_us: giva_proto::now_us(),
            finished_at_us: giva_proto::now_us(),
            rechecked: vec![eicar_path],
            ..Default::default()
        }),
        ..Default::default()
    };
    tls_client(&url, &pki.client(Some(("app-1", Role::Appliance))).await)
        .await
        .expect("TLS connects")
        .notify(NotifyRequest {
            appliance_id: "app-1".into(),
            events: vec![record],
        })
        .await
        .expect("the appliance's own call");
    let v = mgr
        .store()
        .vm("vm-tls")
        .await
        .expect("store")
        .expect("known");
    assert_eq!(v.state, "clean", "{v:?}");

    // A plaintext URL to a TLS port, or https without a CA, never works.
    let e = tls_client(&url, &ClientFiles::default())
        .await
        .expect_err("no CA");
    assert!(e.contains("needs TLS"), "{e}");
    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestCa::new(dir.path()).await;
    let (manager, _mgr, url) = start_tls_manager(&pki).await;
    // A client that trusts another CA.
    let other = TestCa::new(&dir.path().join("other")).await;
    let e = tls_client(&url, &other.client(None).await)
        .await
        .expect_err("unknown CA");
    assert!(e.contains("CA that is not trusted"), "{e}");
    manager.stop().await;

    // A server whose certificate does not name the address dialled, and
    // one whose certificate has expired. giva refuses to serve an expired
    // certificate, so the second server is a bare tonic one: what a client
    // of giva says of a peer that shows one.
    for (name, ips, days, expect) in [
        ("elsewhere", vec![], 1, "does not name the host"),
        (
            "stale",
            vec!["127.0.0.1".parse().expect("ip")],
            0,
            "has expired",
        ),
    ] {
        let (cert, key) = pki.issue_for(name, Role::Server, &ips, days).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = if days == 0 {
            // Valid until now: expired a moment later.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let e = giva_proto::tls::ServerTls::load(giva_proto::tls::ServerFiles {
                cert: cert.clone(),
                key: key.clone(),
                ..Default::default()
            })
            .expect_err("an expired certificate is not served");
            assert!(e.to_string().contains("has expired"), "{e}");
            let identity = tonic::transport::Identity::from_pem(
                std::fs::read(&cert).expect("cert"),
                std::fs::read(&key).expect("key"),
            );
            let (_, health) = tonic_health::server::health_reporter();
            let server = tonic::transport::Server::builder()
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .expect("tls")
                .add_service(health);
            tokio::spawn(async move {
                let _ = server
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = rx.await;
                        },
                    )
                    .await;
            })
        } else {
            let tls = server_tls(&cert, &key, Path::new(""), Path::new(""));
            let manager = giva_manager::Manager::in_memory().await.expect("store");
            tokio::spawn(async move {
                let _ = giva_manager::serve_tls(manager, listener, Some(tls), async {
                    let _ = rx.await;
                })
                .await;
            })
        };
        let e = tls_client(&format!("https://{addr}"), &pki.client(None).await)
            .await
            .expect_err("refused");
        assert!(e.contains(expect), "{name}: {e}");
        let _ = stop.send(());
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_registers_only_as_the_vm_its_certificate_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestCa::new(dir.path()).await;
    let (cert, key) = pki.issue("appliance-host", Role::Appliance).await;
    let mut config = test_config();
    config.server.tls_cert_file = cert;
    config.server.tls_key_file = key;
    config.server.client_ca_file = pki.ca_file();
    let (appliance, app) = start_appliance(config).await;
    let url = format!("https://{}", appliance.addr);
    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let ok = scan_as(
        &url,
        &guest,
        "vm-1",
        pki.client(Some(("vm-1", Role::Vm))).await,
    )
    .await
    .expect("scan");
    assert_eq!(ok.infected, 1);
    // vm-1's certificate claiming vm-2: refused, and counted.
    let e = scan_as(
        &url,
        &guest,
        "vm-2",
        pki.client(Some(("vm-1", Role::Vm))).await,
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("names VM vm-1, not vm-2"), "{e}");
    // An appliance's certificate is no VM's.
    let e = scan_as(
        &url,
        &guest,
        "app",
        pki.client(Some(("app", Role::Appliance))).await,
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("not a VM's"), "{e}");
    // No certificate at all.
    let e = scan_as(&url, &guest, "vm-1", pki.client(None).await)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("client certificate"), "{e}");
    app.stats.observe(&app.cache.stats(), &app.pool.stats());
    let metrics = app.stats.render();
    assert!(
        metrics.contains("giva_identity_refusals_total{why=\"other_vm\"} 1"),
        "{metrics}"
    );
    appliance.stop().await;
}

/// A VM enrolls through its appliance against a one-time token from the
/// manager's CA, and registers as the VM the token named; a token for an
/// appliance is refused there unspent; a revoked VM certificate is refused
/// at the handshake once the appliance reads its revocation list again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_enrolls_through_its_appliance_and_revocation_reaches_the_appliance() {
    use giva_manager::pki::Pki;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let manager = giva_manager::Manager::in_memory().await.expect("store");
    manager.require_appliance_certificates();
    let pki = Pki::new(manager.store().clone());
    pki.init(None).await.expect("CA");
    let (ca_file, crl_file) = pki.export(&d.join("pki")).await.expect("export");
    let write_pair = |name: &str, issued: giva_manager::ca::Issued| {
        let cert = d.join(format!("{name}.pem"));
        let key = d.join(format!("{name}.key"));
        std::fs::write(&cert, issued.cert_pem).expect("cert");
        std::fs::write(&key, issued.key_pem).expect("key");
        (cert, key)
    };
    let localhost = ["127.0.0.1".parse().expect("ip")];
    let (mcert, mkey) = write_pair(
        "manager",
        pki.issue("manager", Role::Server, &[], &localhost, 1, "test")
            .await
            .expect("issue"),
    );
    let tls = server_tls(&mcert, &mkey, &ca_file, &crl_file);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let maddr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let m = manager.clone();
    let mtask = tokio::spawn(async move {
        let _ = giva_manager::serve_tls(m, listener, Some(tls), async {
            let _ = rx.await;
        })
        .await;
    });

    let (acert, akey) = write_pair(
        "app-1",
        pki.issue("app-1", Role::Appliance, &[], &localhost, 1, "test")
            .await
            .expect("issue"),
    );
    let mut config = crate::common::config_with_manager(&format!("https://{maddr}"));
    config.appliance_id = "app-1".into();
    config.manager.heartbeat_interval_secs = 1;
    config.manager.ca_file = ca_file.clone();
    config.manager.cert_file = acert.clone();
    config.manager.key_file = akey.clone();
    config.server.tls_cert_file = acert;
    config.server.tls_key_file = akey;
    config.server.client_ca_file = ca_file.clone();
    config.server.crl_file = crl_file.clone();
    let (appliance, _app) = start_appliance(config).await;
    let url = format!("https://{}", appliance.addr);
    let anonymous = ClientFiles {
        ca: ca_file.clone(),
        ..Default::default()
    };

    // An appliance's token is refused through the appliance, unspent.
    let app_token = pki
        .make_token(Role::Appliance, "app-2", &[], &[], Duration::from_secs(60))
        .await
        .expect("token");
    let e = enroll_vm(&url, &anonymous, app_token.clone(), &d.join("stolen"))
        .await
        .expect_err("not a VM's");
    assert!(e.message().contains("for an appliance"), "{}", e.message());
    let (_, csr) = giva_proto::enroll::request(&d.join("app-2"), "appliance", false).expect("csr");
    let e = pki
        .enroll(&app_token, &csr, None, Some(Role::Appliance), 1)
        .await
        .expect("the refused token was not spent");
    assert_eq!((e.role, e.name.as_str()), (Role::Appliance, "app-2"));

    // The VM's token buys a certificate for the VM it names.
    let token = pki
        .make_token(Role::Vm, "vm-7", &[], &[], Duration::from_secs(60))
        .await
        .expect("token");
    let (vm_id, files) = enroll_vm(&url, &anonymous, token.clone(), &d.join("vm-7"))
        .await
        .expect("enrolled");
    assert_eq!(vm_id, "vm-7");
    let e = enroll_vm(&url, &anonymous, token, &d.join("again"))
        .await
        .expect_err("once");
    assert!(e.message().contains("used already"), "{}", e.message());

    let guest = d.join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let ok = scan_as(&url, &guest, "vm-7", files.clone())
        .await
        .expect("scan as vm-7");
    assert_eq!(ok.infected, 1);
    let e = scan_as(&url, &guest, "vm-8", files.clone())
        .await
        .expect_err("as another VM");
    assert!(e.to_string().contains("names VM vm-7, not vm-8"), "{e}");

    // Revoked at the manager: the next heartbeat's answer carries the new
    // lists, the appliance puts them in force, and the handshake fails. No
    // file is copied and no signal sent.
    pki.revoke(None, Some((Role::Vm, "vm-7")), "reimaged")
        .await
        .expect("revoke");
    let mut refused = None;
    for _ in 0..100 {
        if let Err(e) = scan_as(&url, &guest, "vm-7", files.clone()).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = refused.expect("revoked within a few heartbeats");
    // Named when the shim reads the alert before the connection closes
    // (TLS 1.3 checks a client's certificate after its first request).
    let e = e.to_string();
    assert!(
        e.contains("this certificate was revoked")
            || ([
                "transport error",
                "operation was canceled",
                "connection closed"
            ]
            .iter()
            .any(|t| e.contains(t))
                && !e.contains("PermissionDenied")),
        "{e}"
    );

    // The appliance's command stream takes the manager's orders; once the
    // appliance is revoked, the stream it opened before takes no more (an
    // ordered scan of its VM is not delivered).
    let channel = anonymous
        .endpoint(&format!("https://{maddr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let operator =
        giva_proto::manager::manager_service_client::ManagerServiceClient::with_interceptor(
            channel,
            giva_manager::cli::WithToken::new(manager.auth().operator_token()),
        );
    let order = || {
        let mut operator = operator.clone();
        async move {
            operator
                .request_scan(giva_proto::manager::RequestScanRequest {
                    vm_id: "vm-7".into(),
                })
                .await
                .expect("the order is recorded")
                .into_inner()
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            order().await.delivered
        })
        .await,
        "the subscribed appliance takes orders"
    );
    pki.revoke(None, Some((Role::Appliance, "app-1")), "host retired")
        .await
        .expect("revoke");
    let ordered = order().await;
    assert!(!ordered.delivered, "a revoked appliance takes no command");

    appliance.stop().await;
    let _ = stop.send(());
    let _ = mtask.await;
}

/// A revocation file must hold a list from every client CA: after a
/// rotation, an old crl.pem with the new ca.pem would leave the new CA's
/// certificates unchecked, so the server refuses the pair, by name.
#[tokio::test]
async fn revocation_lists_must_cover_every_client_ca() {
    use giva_manager::pki::Pki;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let manager = giva_manager::Manager::in_memory().await.expect("store");
    let pki = Pki::new(manager.store().clone());
    pki.init(None).await.expect("CA");
    let (_, old_crl) = pki.export(&d.join("before")).await.expect("export");
    pki.rotate().await.expect("rotate");
    let (ca, new_crl) = pki.export(&d.join("after")).await.expect("export");
    let server = pki
        .issue("manager", Role::Server, &[], &[], 1, "test")
        .await
        .expect("issue");
    let cert = d.join("s.pem");
    let key = d.join("s.key");
    std::fs::write(&cert, &server.cert_pem).expect("cert");
    std::fs::write(&key, &server.key_pem).expect("key");
    let load = |crl: &Path| {
        giva_proto::tls::ServerTls::load(giva_proto::tls::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: ca.clone(),
            crl: crl.to_owned(),
        })
    };
    let e = load(&old_crl).expect_err("a CA without a list");
    assert!(
        e.to_string().contains("no revocation list from the CA"),
        "{e}"
    );
    assert!(load(&new_crl).expect("both lists").is_some());
}

/// Instant clones: each enrolls at its appliance with a clone token and
/// gets a certificate of its own, signed by the appliance's delegated CA
/// with no manager round trip (here there is no manager at all). A token
/// works once, cannot be altered, and buys a certificate for its VM only;
/// and the delegated CA cannot make a certificate that passes as a host
/// or as an appliance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_clones_get_their_own_certificates_from_the_appliance_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (store_manager, pki, ca_file, crl_file) = manager_with_ca(d).await;
    let put = |name: &str, text: &str| put(d, name, text);
    let localhost = ["127.0.0.1".parse().expect("ip")];
    let app = pki
        .issue("app-1", Role::Appliance, &[], &localhost, 1, "test")
        .await
        .expect("issue");
    let delegate = pki.issue_delegate("app-1", 1).await.expect("delegate");
    let mut config = test_config();
    config.appliance_id = "app-1".into();
    config.server.tls_cert_file = put("app.pem", &app.cert_pem);
    config.server.tls_key_file = put("app.key", &app.key_pem);
    config.server.client_ca_file = ca_file.clone();
    config.server.crl_file = crl_file;
    config.clones.delegate_cert_file = put("delegate.pem", &delegate.cert_pem);
    config.clones.delegate_key_file = put("delegate.key", &delegate.key_pem);
    config.clones.clone_key_file = put("clone.key", &pki.clone_key().await.expect("key"));
    // On disk, so that used clone tokens are remembered across a restart.
    config.outbox.path = d.join("state").join("outbox.sqlite");
    let (appliance, app_state) = start_appliance(config.clone()).await;
    let url = format!("https://{}", appliance.addr);
    let anonymous = ClientFiles {
        ca: ca_file.clone(),
        ..Default::default()
    };
    let guest = d.join("guest");
    std::fs::create_dir(&guest).expect("mkdir");
    write(&guest, "eicar.com", EICAR);
    let ttl = Duration::from_secs(600);

    // Two clones of one parent, each with its own token and certificate.
    let t1 = pki.clone_token("clone-1", ttl).await.expect("token");
    let t2 = pki.clone_token("clone-2", ttl).await.expect("token");
    let (id1, c1) = enroll_vm(&url, &anonymous, t1.clone(), &d.join("clone-1"))
        .await
        .expect("clone-1 enrolls");
    let (id2, c2) = enroll_vm(&url, &anonymous, t2, &d.join("clone-2"))
        .await
        .expect("clone-2 enrolls");
    assert_eq!((id1.as_str(), id2.as_str()), ("clone-1", "clone-2"));
    assert_eq!(
        scan_as(&url, &guest, "clone-1", c1.clone())
            .await
            .expect("scan")
            .infected,
        1
    );
    assert_eq!(
        scan_as(&url, &guest, "clone-2", c2)
            .await
            .expect("scan")
            .infected,
        1
    );
    let e = scan_as(&url, &guest, "clone-2", c1)
        .await
        .expect_err("clone-1 as clone-2");
    assert!(
        e.to_string().contains("names VM clone-1, not clone-2"),
        "{e}"
    );

    // Used once; altered or foreign tokens are refused.
    let e = enroll_vm(&url, &anonymous, t1.clone(), &d.join("again"))
        .await
        .expect_err("replayed");
    assert!(e.message().contains("used already"), "{}", e.message());
    let e = enroll_vm(
        &url,
        &anonymous,
        t1.replace("clone-1", "clone-9"),
        &d.join("forged"),
    )
    .await
    .expect_err("altered");
    assert!(e.message().contains("signature"), "{}", e.message());
    let foreign =
        giva_runtime::clone_token::mint(b"another manager", "clone-3", u64::MAX).expect("mint");
    let e = enroll_vm(&url, &anonymous, foreign, &d.join("foreign"))
        .await
        .expect_err("other key");
    assert!(e.message().contains("signature"), "{}", e.message());
    app_state
        .stats
        .observe(&app_state.cache.stats(), &app_state.pool.stats());
    let metrics = app_state.stats.render();
    assert!(
        metrics.contains("giva_clone_enrollments_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("giva_identity_refusals_total{why=\"clone_token\"} 3"),
        "{metrics}"
    );
    appliance.stop().await;

    // A restarted appliance still knows the token was used.
    let (appliance, _) = start_appliance(config).await;
    let url = format!("https://{}", appliance.addr);
    let e = enroll_vm(&url, &anonymous, t1, &d.join("after-restart"))
        .await
        .expect_err("replayed after a restart");
    assert!(e.message().contains("used already"), "{}", e.message());
    appliance.stop().await;

    // What a stolen delegated key can sign is worth nothing elsewhere: a
    // server certificate for 127.0.0.1 breaks the delegated CA's name
    // constraints, and an appliance's certificate is refused by the
    // manager.
    let issuer = giva_proto::issue::issuer(&delegate.cert_pem, &delegate.key_pem).expect("issuer");
    let (params, serial) =
        giva_proto::issue::leaf_params("manager", Role::Server, &[], &localhost, 1)
            .expect("params");
    let fake = giva_proto::issue::sign_new_key(&issuer, params, serial).expect("sign");
    let chain = put(
        "fake.pem",
        &format!("{}{}", fake.cert_pem, delegate.cert_pem),
    );
    let key = put("fake.key", &fake.key_pem);
    let tls = server_tls(&chain, &key, Path::new(""), Path::new(""));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let m = giva_manager::Manager::in_memory().await.expect("store");
    let task = tokio::spawn(async move {
        let _ = giva_manager::serve_tls(m, listener, Some(tls), async {
            let _ = rx.await;
        })
        .await;
    });
    let e = tls_client(&format!("https://{addr}"), &anonymous)
        .await
        .expect_err("a host certificate from a delegated CA");
    assert!(
        e.contains("NameConstraint") || e.contains("not valid"),
        "{e}"
    );
    let _ = stop.send(());
    let _ = task.await;

    // The real manager, asked by an "appliance" with a delegated-CA
    // certificate.
    let (mcert, mkey) = {
        let m = pki
            .issue("manager", Role::Server, &[], &localhost, 1, "test")
            .await
            .expect("issue");
        (put("m.pem", &m.cert_pem), put("m.key", &m.key_pem))
    };
    let tls = server_tls(&mcert, &mkey, &ca_file, Path::new(""));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    store_manager.require_appliance_certificates();
    let m = store_manager.clone();
    let task = tokio::spawn(async move {
        let _ = giva_manager::serve_tls(m, listener, Some(tls), async {
            let _ = rx.await;
        })
        .await;
    });
    let forge = |name: &str| {
        let (params, serial) =
            giva_proto::issue::leaf_params(name, Role::Appliance, &[], &[], 1).expect("params");
        let forged = giva_proto::issue::sign_new_key(&issuer, params, serial).expect("sign");
        ClientFiles {
            ca: ca_file.clone(),
            cert: put(
                &format!("{name}.pem"),
                &format!("{}{}", forged.cert_pem, delegate.cert_pem),
            ),
            key: put(&format!("{name}.key"), &forged.key_pem),
        }
    };
    let heartbeat = |files: ClientFiles, appliance: &'static str| async move {
        let mut c = tls_client(&format!("https://{addr}"), &files).await?;
        c.heartbeat(giva_proto::manager::HeartbeatRequest {
            appliance_id: appliance.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|s| giva_proto::tls::explain(&s))
    };
    // Its host name breaks the name constraints: refused at the handshake.
    let e = heartbeat(forge("app-1"), "app-1")
        .await
        .expect_err("refused");
    assert!(!e.contains("PermissionDenied"), "{e}");
    // A name inside the allowed zone passes the handshake, and the manager
    // still refuses it: an appliance's certificate comes from its CA only.
    let zone = "app-1.clones.giva.invalid";
    let e = heartbeat(forge(zone), zone).await.expect_err("refused");
    assert!(e.contains("delegated CA"), "{e}");
    let _ = stop.send(());
    let _ = task.await;
}

/// Keys and the CA rotate without downtime: after `ca rotate`, the
/// manager's heartbeat answer tells the appliance its certificate is due,
/// the appliance renews it on its current one (no token), writes and loads
/// the new files, and its old certificate is revoked as superseded once
/// the new one is used; the old generation can then be retired while the
/// appliance keeps reporting. A certificate that is not due is not renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_renews_its_certificate_when_the_ca_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (manager, pki, ca_file, crl_file) = manager_with_ca(d).await;
    manager.require_appliance_certificates();
    let put = |name: &str, text: &str| put(d, name, text);
    let localhost = ["127.0.0.1".parse().expect("ip")];
    let mserver = pki
        .issue("manager", Role::Server, &[], &localhost, 30, "test")
        .await
        .expect("issue");
    let tls = server_tls(
        &put("manager.pem", &mserver.cert_pem),
        &put("manager.key", &mserver.key_pem),
        &ca_file,
        &crl_file,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let maddr = listener.local_addr().expect("addr");
    let murl = format!("https://{maddr}");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let (m, mtls) = (manager.clone(), tls.clone());
    let mtask = tokio::spawn(async move {
        let _ = giva_manager::serve_tls(m, listener, Some(mtls), async {
            let _ = rx.await;
        })
        .await;
    });

    // The appliance's own copies of the CA and revocation files, as
    // `giva enroll` would have written them.
    let a = d.join("appliance");
    std::fs::create_dir(&a).expect("mkdir");
    let app_ca = a.join("ca.pem");
    let app_crl = a.join("crl.pem");
    std::fs::copy(&ca_file, &app_ca).expect("copy");
    std::fs::copy(&crl_file, &app_crl).expect("copy");
    let first = pki
        .issue("app-1", Role::Appliance, &[], &localhost, 30, "test")
        .await
        .expect("issue");
    let delegate = pki.issue_delegate("app-1", 30).await.expect("delegate");
    let (acert, akey) = (
        put("appliance/app.pem", &first.cert_pem),
        put("appliance/app.key", &first.key_pem),
    );
    let mut config = crate::common::config_with_manager(&murl);
    config.appliance_id = "app-1".into();
    config.manager.heartbeat_interval_secs = 1;
    config.manager.ca_file = app_ca.clone();
    config.manager.cert_file = acert.clone();
    config.manager.key_file = akey.clone();
    config.server.tls_cert_file = acert.clone();
    config.server.tls_key_file = akey.clone();
    config.server.client_ca_file = app_ca.clone();
    config.server.crl_file = app_crl;
    config.clones.delegate_cert_file = put("appliance/delegate.pem", &delegate.cert_pem);
    config.clones.delegate_key_file = put("appliance/delegate.key", &delegate.key_pem);
    config.clones.clone_key_file = put(
        "appliance/clone.key",
        &pki.clone_key().await.expect("clone key"),
    );
    let (appliance, app_state) = start_appliance(config).await;

    // Not due: a fresh certificate from the signing CA is refused renewal.
    let old_files = ClientFiles {
        ca: ca_file.clone(),
        cert: acert.clone(),
        key: akey.clone(),
    };
    let (_, csr) = giva_proto::enroll::key_request().expect("csr");
    let e = tls_client(&murl, &old_files)
        .await
        .expect("connect")
        .renew(giva_proto::manager::RenewRequest {
            csr_pem: csr.clone(),
            delegate_csr_pem: String::new(),
        })
        .await
        .expect_err("not due");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("not due"), "{}", e.message());
    // Nor without a certificate.
    let anonymous = ClientFiles {
        ca: ca_file.clone(),
        ..Default::default()
    };
    let e = tls_client(&murl, &anonymous)
        .await
        .expect("connect")
        .renew(giva_proto::manager::RenewRequest {
            csr_pem: csr,
            delegate_csr_pem: String::new(),
        })
        .await
        .expect_err("no certificate");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    // Rotate: the manager trusts both generations and signs with the new.
    pki.rotate().await.expect("rotate");
    pki.export(&d.join("pki")).await.expect("export");
    tls.reload().expect("manager reloads");
    let old_serial = giva_proto::tls::certificate_serial_pem(&first.cert_pem).expect("serial");
    assert!(
        eventually(Duration::from_secs(20), || async {
            // The certificate and the delegated CA are written one after
            // the other: both, before either is checked.
            std::fs::read_to_string(&acert).ok().as_deref() != Some(first.cert_pem.as_str())
                && std::fs::read_to_string(a.join("delegate.pem"))
                    .ok()
                    .as_deref()
                    != Some(delegate.cert_pem.as_str())
        })
        .await,
        "the appliance renews within a few heartbeats"
    );
    let renewed = std::fs::read_to_string(&acert).expect("cert");
    let new_serial = giva_proto::tls::certificate_serial_pem(&renewed).expect("serial");
    let record = manager
        .store()
        .certificate(&new_serial)
        .await
        .expect("store")
        .expect("recorded");
    assert_eq!(record.generation, 2);
    assert_eq!(record.name, "app-1");
    assert_ne!(
        std::fs::read_to_string(a.join("delegate.pem")).expect("delegate"),
        delegate.cert_pem,
        "the delegated CA is renewed with it"
    );
    assert!(
        std::fs::read_to_string(&app_ca)
            .expect("ca")
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2,
        "the appliance now trusts both generations"
    );
    // The old certificate is superseded once the new one is used.
    assert!(
        eventually(Duration::from_secs(10), || async {
            manager
                .store()
                .certificate(&old_serial)
                .await
                .ok()
                .flatten()
                .is_some_and(|c| c.revoked_at_us != 0 && c.revoke_reason == "superseded")
        })
        .await,
        "the old certificate is revoked as superseded"
    );

    // Retire the old generation: the appliance keeps reporting.
    pki.retire(1).await.expect("retire");
    pki.export(&d.join("pki")).await.expect("export");
    tls.reload().expect("manager reloads");
    let renewals = app_state.stats.certificate_renewals.get();
    assert_eq!(renewals, 1, "renewed once, not at every heartbeat");
    let heartbeat = |files: ClientFiles| {
        let murl = murl.clone();
        async move {
            tls_client(&murl, &files)
                .await?
                .heartbeat(giva_proto::manager::HeartbeatRequest {
                    appliance_id: "app-1".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| s.to_string())
        }
    };
    let renewed_files = ClientFiles {
        ca: app_ca.clone(),
        cert: acert.clone(),
        key: akey.clone(),
    };
    heartbeat(renewed_files)
        .await
        .expect("the renewed certificate is taken after the retirement");
    std::fs::write(d.join("old.pem"), &first.cert_pem).expect("write");
    std::fs::write(d.join("old.key"), &first.key_pem).expect("write");
    let old = ClientFiles {
        ca: ca_file.clone(),
        cert: d.join("old.pem"),
        key: d.join("old.key"),
    };
    heartbeat(old)
        .await
        .expect_err("the old certificate is not");
    // A call that failed while the manager reloaded is retried with
    // backoff: on a loaded machine the next success may take a few seconds.
    assert!(
        eventually(Duration::from_secs(15), || async {
            app_state.reporter.unreachable_for().is_none()
        })
        .await,
        "the appliance reaches the manager on its renewed certificate: unreachable for {:?}",
        app_state.reporter.unreachable_for()
    );
    appliance.stop().await;
    let _ = stop.send(());
    let _ = mtask.await;
}
