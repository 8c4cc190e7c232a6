//! Starting real services for tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use giva_appliance::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The EICAR test file, exactly 68 bytes.
pub const EICAR: &[u8] =
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A running in-process server; stops when dropped.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a manager on a free loopback port.
pub async fn start_manager() -> (Running, Arc<giva_manager::Manager>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind manager");
    let addr = listener.local_addr().expect("addr");
    let manager = giva_manager::Manager::new();
    let (tx, rx) = oneshot::channel();
    let m = manager.clone();
    let task = tokio::spawn(async move {
        giva_manager::serve(m, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("manager serves");
    });
    (Running { addr, stop: Some(tx), task: Some(task) }, manager)
}

/// Starts an appliance with `config` (its listen address is replaced by a
/// free loopback port) and the bundled database unless the config names one.
pub async fn start_appliance(mut config: Config) -> (Running, Arc<giva_appliance::Appliance>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind appliance");
    let addr = listener.local_addr().expect("addr");
    config.server.listen = addr;
    if config.appliance_id.is_empty() {
        config.appliance_id = "test-appliance".into();
    }
    let db = giva_appliance::load_database(&config).expect("database loads");
    let app = giva_appliance::Appliance::new(config, db).expect("appliance builds");
    let (tx, rx) = oneshot::channel();
    let a = app.clone();
    let task = tokio::spawn(async move {
        giva_appliance::serve(a, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("appliance serves");
    });
    (Running { addr, stop: Some(tx), task: Some(task) }, app)
}

/// An appliance configuration that reports to `manager_url`.
pub fn config_with_manager(manager_url: &str) -> Config {
    let mut c = Config::default();
    c.manager.url = manager_url.to_string();
    c.manager.request_timeout_ms = 2000;
    c
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write test file");
    p
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
