//! The `giva-manager` binary as an operator runs it: `serve` makes its
//! tokens, and the operator commands need them.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{free_addr, manager, p, serve, text};

/// `GET path` on `addr`: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn operator_commands_need_the_operator_token_and_readers_only_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let op = dir.path().join("state/operator.token");
    let rd = dir.path().join("state/reader.token");
    let (_served, url, admin) = serve(
        dir.path(),
        &["--token-file", p(&op), "--reader-token-file", p(&rd)],
    );
    for token in [&op, &rd] {
        let mode = std::fs::metadata(token)
            .expect("token made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", token.display());
    }
    let none = dir.path().join("no-such.token");

    // No token: every call is refused, and the message says where the
    // token was looked for.
    for cmd in [&["vms"][..], &["untag", "vm-1"], &["scan", "vm-1"]] {
        let mut args = cmd.to_vec();
        args.extend(["--manager", &url, "--token-file", p(&none)]);
        let out = manager(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", text(&out));
        assert!(text(&out).contains("needs a token"), "{}", text(&out));
        assert!(text(&out).contains("no-such.token"), "{}", text(&out));
    }

    // The reader token reads, and may not change state.
    let out = manager(&["vms", "--manager", &url, "--token-file", p(&rd)])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let out = manager(&["untag", "vm-1", "--manager", &url, "--token-file", p(&rd)])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("reader token may not"),
        "{}",
        text(&out)
    );

    // The operator token passes the check: the VM is simply unknown.
    let out = manager(&["untag", "vm-1", "--manager", &url, "--token-file", p(&op)])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("token"), "{}", text(&out));
    assert!(text(&out).contains("vm-1"), "{}", text(&out));

    // Refusals are counted, and health and metrics need no token.
    let (code, body) = get(&admin, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, metrics) = get(&admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "giva_manager_refused_calls_total{call=\"UntagVm\",code=\"Unauthenticated\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("giva_manager_tag_queue_depth 0"),
        "{metrics}"
    );
}

#[test]
fn a_token_file_others_may_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let op = dir.path().join("operator.token");
    std::fs::write(&op, "0123456789abcdef\n").expect("write");
    std::fs::set_permissions(&op, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let addr = free_addr();
    let db = dir.path().join("manager.sqlite");
    let out = manager(&[
        "serve",
        "--listen",
        &addr,
        "--db",
        p(&db),
        "--token-file",
        p(&op),
        "--no-admin",
    ])
    .output()
    .expect("run");
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}

#[test]
fn plaintext_on_a_network_address_is_refused_unless_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("manager.sqlite");
    let token = dir.path().join("operator.token");
    let out = manager(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--no-admin",
        "--db",
        p(&db),
        "--token-file",
        p(&token),
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--insecure-plaintext"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_ca_issues_certificates_that_name_their_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let db = dir.path().join("manager.sqlite");
    let out = manager(&["ca", "--db", p(&db), "init", "--dir", p(&ca)])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let issued = dir.path().join("issued");
    let out = manager(&[
        "ca",
        "--db",
        p(&db),
        "issue",
        "app-1",
        "--role",
        "appliance",
        "--out",
        p(&issued),
        "--ip",
        "127.0.0.1",
    ])
    .output()
    .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let cert = std::fs::read_to_string(issued.join("app-1.pem")).expect("certificate");
    assert_eq!(
        giva_proto::tls::certificate_role_name_pem(&cert, giva_proto::tls::Role::Appliance)
            .as_deref(),
        Some("app-1")
    );
    let mode = std::fs::metadata(issued.join("app-1.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(issued.join("ca.pem").exists());
}
