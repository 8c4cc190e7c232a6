//! The CA in the manager's store, as an operator runs it: an appliance
//! enrolls against a one-time token, a revoked certificate is refused at
//! once, and the CA rotates while the manager serves (SIGHUP), with no
//! appliance cut off until the old CA is retired.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{manager, p, serve, text};
use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{EnrollRequest, EnrollResponse, HeartbeatRequest};
use giva_proto::tls::ClientFiles;

/// Runs `giva-manager ca --db DB ARGS`; returns its standard output.
fn ca(db: &Path, args: &[&str]) -> String {
    let mut all = vec!["ca", "--db", p(db)];
    all.extend_from_slice(args);
    let out = manager(&all).output().expect("run");
    assert!(out.status.success(), "ca {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn client(
    url: &str,
    files: &ClientFiles,
) -> Result<ManagerServiceClient<tonic::transport::Channel>, String> {
    let endpoint = files.endpoint(url).map_err(|e| e.to_string())?;
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map(ManagerServiceClient::new)
        .map_err(|e| giva_proto::tls::explain(&e))
}

async fn enroll(
    url: &str,
    ca: &Path,
    token: &str,
    out: &Path,
) -> Result<(EnrollResponse, ClientFiles), tonic::Status> {
    let (key, csr) = giva_proto::enroll::request(out, "appliance", false).expect("request");
    let mut c = client(
        url,
        &ClientFiles {
            ca: ca.to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    let answer = c
        .enroll(EnrollRequest {
            token: token.to_string(),
            csr_pem: csr,
            role: "appliance".into(),
            delegate_csr_pem: String::new(),
        })
        .await?
        .into_inner();
    let saved = giva_proto::enroll::save(out, "appliance", &key, &answer).expect("save");
    Ok((
        answer,
        ClientFiles {
            ca: saved.ca,
            cert: saved.cert,
            key: saved.key,
        },
    ))
}

/// A heartbeat as `appliance` with `files`: Ok, or the refusal's message.
async fn heartbeat(url: &str, files: &ClientFiles, appliance: &str) -> Result<(), String> {
    let mut c = client(url, files).await?;
    c.heartbeat(HeartbeatRequest {
        appliance_id: appliance.into(),
        healthy: true,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|s| format!("{:?}: {}", s.code(), giva_proto::tls::explain(&s)))
}

/// True when a call failed at the TLS handshake: with the alert named
/// (`why`), or, when the connection closed before the client read the
/// alert (TLS 1.3 checks the client's certificate after the client has
/// sent its first request), as a transport failure. Never an answer from
/// the service.
fn refused_at_handshake(e: &str, why: &str) -> bool {
    let transport = [
        "transport error",
        "operation was canceled",
        "connection closed",
    ]
    .iter()
    .any(|t| e.contains(t));
    let service = e.contains("PermissionDenied") || e.contains("Unauthenticated");
    e.contains(why) || (transport && !service)
}

fn hangup(served: &common::Served) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &served.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // The reload is logged, not answered: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
}

/// The manager's server certificate for 127.0.0.1, from the signing CA.
fn issue_manager_certificate(db: &Path, out: &Path) {
    let args = [
        "issue",
        "manager",
        "--role",
        "server",
        "--ip",
        "127.0.0.1",
        "--out",
    ];
    let mut all = args.to_vec();
    all.push(p(out));
    ca(db, &all);
}

fn token(db: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", name, "--role", "appliance"];
    args.extend_from_slice(extra);
    ca(db, &args).trim().to_string()
}

#[test]
fn appliances_enroll_once_revocation_is_at_once_and_the_ca_rotates_while_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let db = d.join("manager.sqlite");
    let pki = d.join("pki");
    ca(&db, &["init", "--dir", p(&pki)]);
    let tls = d.join("tls");
    issue_manager_certificate(&db, &tls);
    let ca_file = pki.join("ca.pem");
    let crl_file = pki.join("crl.pem");
    let serve_args = [
        "--tls-cert",
        &*tls.join("manager.pem").to_string_lossy().into_owned(),
        "--tls-key",
        &*tls.join("manager.key").to_string_lossy().into_owned(),
        "--client-ca",
        &*ca_file.to_string_lossy().into_owned(),
        "--crl",
        &*crl_file.to_string_lossy().into_owned(),
    ]
    .map(String::from);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    // serve() reads the plain URL; this manager speaks TLS.
    let (served, url, _) = serve(d, &serve_args);
    let url = url.replace("http://", "https://");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    rt.block_on(async {
        // An appliance enrolls with its token: the certificate names it.
        let t1 = token(&db, "app-1", &["--ip", "127.0.0.1"]);
        assert!(t1.starts_with("giva-enroll-"), "{t1}");
        let (answer, app1) = enroll(&url, &ca_file, &t1, &d.join("app-1"))
            .await
            .expect("enrolled");
        assert_eq!(
            (answer.role.as_str(), answer.name.as_str()),
            ("appliance", "app-1")
        );
        assert_eq!(
            giva_proto::tls::certificate_role_name_pem(
                &answer.cert_pem,
                giva_proto::tls::Role::Appliance
            )
            .as_deref(),
            Some("app-1")
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&app1.key).expect("key").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        heartbeat(&url, &app1, "app-1")
            .await
            .expect("app-1 reports as itself");
        let e = heartbeat(&url, &app1, "app-2")
            .await
            .expect_err("not as another");
        assert!(e.contains("PermissionDenied"), "{e}");

        // The token works once; a made-up one never.
        let e = enroll(&url, &ca_file, &t1, &d.join("again"))
            .await
            .expect_err("used");
        assert!(e.message().contains("used already"), "{}", e.message());
        let e = enroll(&url, &ca_file, "giva-enroll-00", &d.join("forged"))
            .await
            .expect_err("unknown");
        assert!(
            e.message().contains("unknown enrollment token"),
            "{}",
            e.message()
        );
        // A token past its time.
        let late = token(&db, "app-late", &["--ttl", "1s"]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let e = enroll(&url, &ca_file, &late, &d.join("late"))
            .await
            .expect_err("expired");
        assert!(e.message().contains("expired"), "{}", e.message());

        // Revoked: refused at once, with no reload.
        let t9 = token(&db, "app-9", &[]);
        let (_, app9) = enroll(&url, &ca_file, &t9, &d.join("app-9"))
            .await
            .expect("enrolled");
        heartbeat(&url, &app9, "app-9")
            .await
            .expect("before revocation");
        let out = ca(
            &db,
            &[
                "revoke",
                "--role",
                "appliance",
                "--name",
                "app-9",
                "--reason",
                "host stolen",
                "--dir",
                p(&pki),
            ],
        );
        assert!(out.contains("revoked appliance app-9"), "{out}");
        let e = heartbeat(&url, &app9, "app-9").await.expect_err("revoked");
        assert!(e.contains("revoked"), "{e}");
        // And after a reload, the revocation list refuses it at the
        // handshake already.
        hangup(&served);
        let e = heartbeat(&url, &app9, "app-9").await.expect_err("revoked");
        assert!(
            refused_at_handshake(&e, "this certificate was revoked"),
            "{e}"
        );

        // Rotation: a new CA signs; both are trusted while hosts renew.
        let out = ca(&db, &["rotate", "--dir", p(&pki)]);
        assert!(out.contains("generation 2"), "{out}");
        let bundle = std::fs::read_to_string(&ca_file).expect("bundle");
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
        // The manager's own certificate is renewed under the new CA.
        issue_manager_certificate(&db, &tls);
        hangup(&served);
        let fresh = |files: &ClientFiles| ClientFiles {
            ca: ca_file.clone(),
            ..files.clone()
        };
        // app-1, still on the old CA, goes on reporting.
        heartbeat(&url, &fresh(&app1), "app-1")
            .await
            .expect("old CA still trusted");
        // app-2 enrolls under the new one.
        let t2 = token(&db, "app-2", &[]);
        let (answer, app2) = enroll(&url, &ca_file, &t2, &d.join("app-2"))
            .await
            .expect("enrolled");
        heartbeat(&url, &app2, "app-2").await.expect("new CA");
        assert!(answer.ca_pem.matches("BEGIN CERTIFICATE").count() == 2);

        // Retired: the old CA's certificates are refused at the handshake;
        // the new CA's carry on.
        let out = ca(&db, &["retire", "1", "--dir", p(&pki)]);
        assert!(out.contains("no longer trusted"), "{out}");
        let e = manager(&["ca", "--db", p(&db), "retire", "2"])
            .output()
            .expect("run");
        assert!(!e.status.success(), "the signing CA cannot be retired");
        hangup(&served);
        heartbeat(&url, &app2, "app-2").await.expect("new CA");
        let e = heartbeat(&url, &fresh(&app1), "app-1")
            .await
            .expect_err("old CA retired");
        assert!(refused_at_handshake(&e, "does not trust the CA"), "{e}");
    });

    // The store holds the CA's keys: its owner's alone.
    for f in [db.clone(), d.join("manager.sqlite-wal")] {
        if let Ok(meta) = std::fs::metadata(&f) {
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
        }
    }
    // An appliance revoked by name loses its delegated CA too.
    ca(
        &db,
        &[
            "issue",
            "app-d",
            "--role",
            "appliance",
            "--delegate",
            "--out",
            p(&d.join("app-d")),
        ],
    );
    let out = ca(
        &db,
        &[
            "revoke",
            "--role",
            "appliance",
            "--name",
            "app-d",
            "--dir",
            p(&pki),
        ],
    );
    assert!(
        out.contains("revoked appliance app-d") && out.contains("revoked delegate app-d"),
        "{out}"
    );
    // A clone token lives a day at most; the clone key can be replaced.
    let long = manager(&["ca", "--db", p(&db), "clone-token", "vm-1", "--ttl", "2d"])
        .output()
        .expect("run");
    assert!(!long.status.success(), "{}", text(&long));
    let before = std::fs::read_to_string(d.join("app-d/clone.key")).expect("clone key");
    ca(&db, &["rotate-clone-key", "--dir", p(&d.join("rotated"))]);
    let after = std::fs::read_to_string(d.join("rotated/clone.key")).expect("clone key");
    assert_ne!(before, after);

    // The record of it all.
    let list = ca(&db, &["list"]);
    assert!(
        list.contains("app-9") && list.contains("revoked") && list.contains("host stolen"),
        "{list}"
    );
    assert!(list.contains("retired"), "{list}");
    drop(served);
    let _: PathBuf = d.to_owned();
}
