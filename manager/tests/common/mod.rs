//! What the `giva-manager` binary's tests share: running it, and serving.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn manager(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_giva-manager"));
    c.args(args)
        .env_remove("GIVA_TOKEN_FILE")
        .env_remove("GIVA_MANAGER");
    c
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `giva-manager serve` killed when dropped.
pub struct Served(pub Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// Starts `giva-manager serve` in `dir`; returns it, its URL and its admin
/// address.
pub fn serve(dir: &Path, extra: &[&str]) -> (Served, String, String) {
    let addr = free_addr();
    let admin = free_addr();
    let db = dir.join("manager.sqlite");
    let mut args = vec![
        "serve",
        "--listen",
        &addr,
        "--admin-listen",
        &admin,
        "--db",
        p(&db),
    ];
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
    (served, format!("http://{addr}"), admin)
}
