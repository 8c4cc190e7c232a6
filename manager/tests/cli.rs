//! The `giva-manager` binary as an operator runs it: `serve` makes its
//! tokens, and the operator commands need them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn manager(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_giva-manager"));
    c.args(args)
        .env_remove("GIVA_TOKEN_FILE")
        .env_remove("GIVA_MANAGER");
    c
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `giva-manager serve` killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn serve(dir: &Path, extra: &[&str]) -> (Served, String) {
    let addr = free_addr();
    let db = dir.join("manager.sqlite");
    let mut args = vec!["serve", "--listen", &addr, "--db", p(&db)];
    args.extend_from_slice(extra);
    let child = manager(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start giva-manager serve");
    let mut served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        if let Some(status) = served.0.try_wait().expect("wait") {
            panic!("giva-manager serve exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "giva-manager serve never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (served, format!("http://{addr}"))
}

#[test]
fn operator_commands_need_the_operator_token_and_readers_only_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let op = dir.path().join("state/operator.token");
    let rd = dir.path().join("state/reader.token");
    let (_served, url) = serve(
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
    ])
    .output()
    .expect("run");
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}
