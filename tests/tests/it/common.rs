//! Starting real services for tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use giva_appliance::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The EICAR test file, exactly 68 bytes.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A running in-process server; stops when dropped.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// A server running as `task`, stopped through `stop`.
    pub fn spawned(
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Running {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

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
            // A graceful stop that hangs is a bug (a stream that never
            // ends holds it open), not something to wait out.
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("server drained within 15 s")
                .expect("server task");
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
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind manager");
    let addr = listener.local_addr().expect("addr");
    let manager = giva_manager::Manager::in_memory()
        .await
        .expect("manager store");
    let (tx, rx) = oneshot::channel();
    let m = manager.clone();
    let task = tokio::spawn(async move {
        giva_manager::serve(m, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("manager serves");
    });
    (
        Running {
            addr,
            stop: Some(tx),
            task: Some(task),
        },
        manager,
    )
}

/// Starts an appliance with `config` (its listen address is replaced by a
/// free loopback port) and the bundled database unless the config names one.
pub async fn start_appliance(mut config: Config) -> (Running, Arc<giva_appliance::Appliance>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind appliance");
    let addr = listener.local_addr().expect("addr");
    config.server.listen = addr;
    if config.appliance_id.is_empty() {
        config.appliance_id = "test-appliance".into();
    }
    let db = giva_appliance::load_database(&config).expect("database loads");
    if config.outbox.path.as_os_str().is_empty() {
        config.outbox.path = ":memory:".into();
    }
    // Many appliances run at once here: none takes the fixed admin port.
    if config.server.admin_listen == Config::default().server.admin_listen {
        config.server.admin_listen = None;
    }
    let app = giva_appliance::Appliance::new(config, db)
        .await
        .expect("appliance builds");
    let (tx, rx) = oneshot::channel();
    let a = app.clone();
    let task = tokio::spawn(async move {
        giva_appliance::serve(a, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("appliance serves");
    });
    (
        Running {
            addr,
            stop: Some(tx),
            task: Some(task),
        },
        app,
    )
}

/// An appliance configuration that reports to `manager_url`.
pub fn config_with_manager(manager_url: &str) -> Config {
    let mut c = test_config();
    c.manager.url = manager_url.to_string();
    c.manager.request_timeout_ms = 2000;
    c
}

/// The default configuration, minus what tests must not share: no admin
/// endpoint on the fixed default port, and a volatile outbox.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.server.admin_listen = None;
    c.outbox.path = ":memory:".into();
    c
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write test file");
    p
}

/// Polls the async check `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The detection events the manager has stored, oldest first.
pub async fn detections(mgr: &giva_manager::Manager) -> Vec<giva_proto::manager::StoredEvent> {
    let filter = giva_manager::store::EventFilter {
        // No cap: a soak stores well over 100,000 events.
        limit: usize::MAX,
        ..Default::default()
    };
    mgr.store()
        .events(&filter)
        .await
        .expect("store readable")
        .into_iter()
        .filter(|e| {
            e.event
                .as_ref()
                .is_some_and(|e| e.kind == giva_proto::manager::EventKind::Detection as i32)
        })
        .collect()
}

/// Starts a manager on `addr` with its store in `db` (a file, so that a
/// restart keeps what was committed).
pub async fn start_manager_at(
    addr: SocketAddr,
    db: &Path,
) -> (Running, Arc<giva_manager::Manager>) {
    let listener = bind_retry(addr).await;
    let store = giva_manager::store::Store::open(db)
        .await
        .expect("manager store");
    let manager = giva_manager::Manager::new(store.clone());
    (
        serve_manager(manager.clone(), store, listener, addr),
        manager,
    )
}

/// Serves `manager` on `listener` until the returned handle stops it, then
/// closes its store.
fn serve_manager(
    manager: Arc<giva_manager::Manager>,
    store: giva_manager::store::Store,
    listener: TcpListener,
    addr: SocketAddr,
) -> Running {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        giva_manager::serve(manager, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("manager serves");
        store.close().await;
    });
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Binds `addr`, retrying for a few seconds while the port is still held by
/// a server that is shutting down.
pub async fn bind_retry(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

/// A free loopback address (bound, then released).
pub async fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// An appliance running on a runtime of its own, so that a test can make
/// it vanish at once, as a killed process does: no task gets to flush.
pub struct CrashableAppliance {
    /// Where it listens.
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl CrashableAppliance {
    /// Starts it with `config`.
    pub fn start(mut config: Config) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        config.server.listen = addr;
        if config.appliance_id.is_empty() {
            config.appliance_id = "crash-appliance".into();
        }
        if config.server.admin_listen == Config::default().server.admin_listen {
            config.server.admin_listen = None;
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            let db = giva_appliance::load_database(&config).expect("database");
            let app = giva_appliance::Appliance::new(config, db)
                .await
                .expect("appliance");
            let _ = ready_tx.send(());
            let _ = giva_appliance::serve(app, listener, std::future::pending()).await;
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("appliance started");
        CrashableAppliance { addr, rt: Some(rt) }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops everything at once, without a graceful shutdown.
    pub fn crash(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for CrashableAppliance {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A TCP proxy on loopback that can cut every connection and refuse new
/// ones, to play a flapping network between appliance and manager.
pub struct FlakyProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let (up2, gen2) = (up.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        FlakyProxy {
            addr,
            up,
            generation,
            task,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every open connection; with `stay_down`, refuses new ones too.
    pub fn cut(&self, stay_down: bool) {
        self.up
            .store(!stay_down, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `n` EICAR copies (`eicar-000.com` ...) into `dir`.
pub fn write_eicars(dir: &Path, n: usize) {
    for i in 0..n {
        write(dir, &format!("eicar-{i:03}.com"), EICAR);
    }
}

/// Runs the shim's full scan of `dir` as VM `vm_id`; returns the summary.
pub async fn shim_scan(appliance_url: &str, vm_id: &str, dir: &Path) -> giva_shim::scan::Summary {
    let vm = giva_proto::shim::VmIdentity {
        vm_id: vm_id.into(),
        name: vm_id.into(),
        ..Default::default()
    };
    let config = giva_shim::scan::ScanConfig::new(appliance_url, vm, vec![dir.to_path_buf()]);
    giva_shim::scan::run(&config, |_| {}, |_, _| {})
        .await
        .expect("shim scan")
}

/// Starts a manager with the quarantine `config`, on `addr` (`None`: a free
/// loopback port), with its store in `db` (`None`: in memory).
pub async fn start_manager_with(
    addr: Option<SocketAddr>,
    db: Option<&Path>,
    config: &giva_manager::config::Config,
) -> (Running, Arc<giva_manager::Manager>) {
    let listener = match addr {
        Some(a) => bind_retry(a).await,
        None => TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind manager"),
    };
    let addr = listener.local_addr().expect("addr");
    let store = giva_manager::store::Store::open(db.unwrap_or(Path::new(":memory:")))
        .await
        .expect("manager store");
    let auth = giva_manager::auth::Auth::generate().expect("random token");
    let manager = giva_manager::Manager::with_config(store.clone(), config, auth)
        .expect("tagging actions build");
    (
        serve_manager(manager.clone(), store, listener, addr),
        manager,
    )
}

/// A client of the manager at `url` that calls with `mgr`'s operator
/// token (what `giva-manager untag` and `scan` do).
pub async fn operator_client(
    url: &str,
    mgr: &giva_manager::Manager,
) -> giva_proto::manager::manager_service_client::ManagerServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        giva_manager::cli::WithToken,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("manager reachable");
    giva_proto::manager::manager_service_client::ManagerServiceClient::with_interceptor(
        channel,
        giva_manager::cli::WithToken::new(mgr.auth().operator_token()),
    )
}

/// A shim session driven message by message, as a hostile guest would.
pub struct RawSession {
    /// Towards the appliance.
    pub tx: tokio::sync::mpsc::Sender<giva_proto::shim::GuestMessage>,
    /// From the appliance.
    pub rx: tonic::Streaming<giva_proto::shim::ApplianceMessage>,
}

impl RawSession {
    /// Registers `vm_id` and opens its session.
    pub async fn open(
        client: &mut giva_proto::shim::shim_service_client::ShimServiceClient<
            tonic::transport::Channel,
        >,
        vm_id: &str,
    ) -> Self {
        let vm = giva_proto::shim::VmIdentity {
            vm_id: vm_id.into(),
            ..Default::default()
        };
        let reg = client
            .register(giva_proto::shim::RegisterRequest { vm: Some(vm) })
            .await
            .expect("register");
        let (tx, out) = tokio::sync::mpsc::channel(64);
        let open = giva_proto::shim::GuestMessage {
            msg: Some(giva_proto::shim::guest_message::Msg::Open(
                giva_proto::shim::SessionOpen {
                    session_id: reg.into_inner().session_id,
                },
            )),
        };
        tx.send(open).await.expect("send");
        let rx = client
            .session(tokio_stream::wrappers::ReceiverStream::new(out))
            .await
            .expect("session")
            .into_inner();
        RawSession { tx, rx }
    }

    /// Sends one message.
    pub async fn send(&self, m: giva_proto::shim::guest_message::Msg) {
        self.tx
            .send(giva_proto::shim::GuestMessage { msg: Some(m) })
            .await
            .expect("send");
    }

    /// The next message, within 10 s.
    pub async fn next(&mut self) -> giva_proto::shim::appliance_message::Msg {
        self.next_within(Duration::from_secs(10)).await
    }

    /// The next message, within `limit`.
    pub async fn next_within(
        &mut self,
        limit: Duration,
    ) -> giva_proto::shim::appliance_message::Msg {
        let m = tokio::time::timeout(limit, self.rx.message())
            .await
            .unwrap_or_else(|_| panic!("an answer within {limit:?}"))
            .expect("stream ok")
            .expect("a message");
        m.msg.expect("non-empty")
    }
}

/// A tmpfs of `mib` MiB mounted on `dir`, unmounted on drop; `None` (with
/// the reason printed) where mounting is not allowed, unless
/// `GIVA_REQUIRE_TMPFS=1` (CI sets it), which makes that a failure.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("GIVA_REQUIRE_TMPFS").as_deref() != Ok("1"),
                    "cannot mount a tmpfs and GIVA_REQUIRE_TMPFS=1: {why}"
                );
                eprintln!("SKIPPED: cannot mount a tmpfs: {why}");
                None
            }
        }
    }
}

impl Tmpfs {
    /// Fills what is left free with a file named `filler`, as another
    /// program filling the disk would.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        let block = vec![0xAAu8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    /// Removes the filler: the disk has room again.
    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
