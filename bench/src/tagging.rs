//! Quarantine tagging: how long from a detection to the tag call reaching
//! NSX, and how long to tag an outbreak of many VMs.
//!
//! A real manager (SQLite on disk, the NSX-T action of
//! `giva_manager::tagging::nsx`) runs in-process on loopback against a
//! local stand-in for the NSX Manager: a small HTTP/1.1 server that answers
//! `POST /api/v1/fabric/virtual-machines?action=add_tags` with 204 after an
//! optional delay (to play a real NSX's response time) and records when
//! each VM's call arrived.
//!
//! - **Latency**: a real appliance detects EICAR buffers sent through its
//!   unary `Scan`, each as a different VM, at a fixed rate. Latency is the
//!   NSX arrival time minus the event's `detected_at` (the same clock).
//! - **Outbreak**: N detections from N VMs are sent to the manager's
//!   `Notify` in batches, all batches at once. Reported: the time until
//!   every batch was acknowledged, until the last add_tags call reached
//!   NSX, and until every VM showed `tagged` in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_manager::config::{ActionConfig, Config, NsxConfig};
use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{Action, Event, EventKind, NotifyRequest};
use giva_proto::shim::ScanRequest;
use giva_proto::shim::shim_service_client::ShimServiceClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::report::{Percentiles, now_us, percentiles};

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What to run.
#[derive(Debug, Clone)]
pub struct TaggingBench {
    /// Detections (each from its own VM) for the latency run.
    pub latency_count: u32,
    /// Their rate, per second.
    pub latency_rate: u32,
    /// VMs in the outbreak.
    pub outbreak_vms: u32,
    /// Detections per `Notify` in the outbreak.
    pub batch: u32,
    /// The manager's tagging concurrency (`quarantine.concurrency`).
    pub concurrency: usize,
    /// NSX response times to run the outbreak with, in milliseconds.
    pub nsx_delays_ms: Vec<u64>,
}

impl Default for TaggingBench {
    fn default() -> Self {
        TaggingBench {
            latency_count: 200,
            latency_rate: 20,
            outbreak_vms: 500,
            batch: 50,
            concurrency: 32,
            nsx_delays_ms: vec![0, 50],
        }
    }
}

/// One outbreak run.
#[derive(Debug, Clone)]
pub struct Outbreak {
    /// VMs tagged.
    pub vms: u32,
    /// The stand-in NSX's response time.
    pub nsx_delay_ms: u64,
    /// Until every `Notify` was acknowledged.
    pub acked_ms: f64,
    /// Until the last add_tags call reached NSX.
    pub last_call_ms: f64,
    /// Until every VM showed `tagged` in the store.
    pub all_tagged_ms: f64,
}

/// The results.
#[derive(Debug, Clone)]
pub struct TaggingResults {
    /// What ran.
    pub bench: TaggingBench,
    /// Detection (appliance `detected_at`) → add_tags at NSX, ms.
    pub latency: Percentiles,
    /// The outbreak runs, one per NSX delay.
    pub outbreaks: Vec<Outbreak>,
}

impl TaggingResults {
    /// The results as a markdown section (tables, no header).
    pub fn markdown(&self) -> String {
        let b = &self.bench;
        let l = &self.latency;
        let mut md = String::new();
        md.push_str("Real manager (SQLite on disk, fsync) with the NSX-T action, against a local NSX stand-in on loopback. One clock.\n\n");
        md.push_str(&format!(
            "## Detection → tag call at NSX\n\nA real appliance detects EICAR (unary `Scan`), one VM per detection, {} detections at {}/s; NSX answers at once.\n\n",
            b.latency_count, b.latency_rate
        ));
        md.push_str("| detections | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |\n\n",
            l.n, l.p50, l.p90, l.p99, l.max
        ));
        md.push_str(&format!(
            "## Outbreak\n\n{} detections from {} VMs sent to `Notify` in batches of {}, all at once; tagging concurrency {}.\n\n",
            b.outbreak_vms, b.outbreak_vms, b.batch, b.concurrency
        ));
        md.push_str("| VMs | NSX response ms | all acked ms | last tag call ms | all tagged in store ms |\n|---|---|---|---|---|\n");
        for o in &self.outbreaks {
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} |\n",
                o.vms, o.nsx_delay_ms, o.acked_ms, o.last_call_ms, o.all_tagged_ms
            ));
        }
        md
    }
}

/// Runs the latency run and one outbreak per NSX delay.
///
/// # Errors
///
/// A service fails to start, a request fails, or tags go missing.
pub async fn run(bench: &TaggingBench) -> anyhow::Result<TaggingResults> {
    let latency = latency(bench).await?;
    let mut outbreaks = Vec::new();
    for &delay in &bench.nsx_delays_ms {
        outbreaks.push(outbreak(bench, delay).await?);
    }
    Ok(TaggingResults {
        bench: bench.clone(),
        latency,
        outbreaks,
    })
}

async fn latency(bench: &TaggingBench) -> anyhow::Result<Percentiles> {
    let nsx = FakeNsx::start(0).await?;
    let dir = tempfile::tempdir()?;
    let mgr = ManagerUnderTest::start(&dir, &nsx.url, bench.concurrency).await?;

    let appliance =
        crate::inprocess::Appliance::start("bench-tagging", &mgr.url.clone(), dir.path(), |_| {})
            .await?;

    let mut client = ShimServiceClient::connect(appliance.url()).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(bench.latency_rate.max(1)),
    ));
    for i in 0..bench.latency_count {
        tick.tick().await;
        client
            .scan(ScanRequest {
                vm_id: format!("lat-vm-{i:05}"),
                name: format!("eicar-{i}"),
                data: EICAR.to_vec(),
            })
            .await?;
    }
    let want = bench.latency_count as usize;
    nsx.wait_for(want, Duration::from_secs(60)).await?;
    let arrivals = nsx.arrivals();
    let events = mgr
        .manager
        .store()
        .events(&giva_manager::store::EventFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .await?;
    let mut lat = Vec::with_capacity(want);
    for e in events.iter().filter_map(|e| e.event.as_ref()) {
        if e.kind != EventKind::Detection as i32 {
            continue;
        }
        if let Some(at) = arrivals.get(&e.vm_id) {
            lat.push((*at - e.detected_at_us) as f64 / 1000.0);
        }
    }
    appliance.stop().await;
    mgr.stop().await;
    if lat.len() < want {
        anyhow::bail!("only {} of {want} detections were tagged", lat.len());
    }
    Ok(percentiles(&mut lat))
}

async fn outbreak(bench: &TaggingBench, delay_ms: u64) -> anyhow::Result<Outbreak> {
    let nsx = FakeNsx::start(delay_ms).await?;
    let dir = tempfile::tempdir()?;
    let mgr = ManagerUnderTest::start(&dir, &nsx.url, bench.concurrency).await?;
    let client = ManagerServiceClient::connect(mgr.url.clone()).await?;
    let n = bench.outbreak_vms;
    let events: Vec<Event> = (0..n)
        .map(|i| Event {
            event_id: format!("outbreak-{delay_ms}-{i}"),
            kind: EventKind::Detection as i32,
            appliance_id: format!("host-{}", i % 16),
            vm_id: format!("outbreak-vm-{i:05}"),
            vm_name: format!("desktop-{i:05}"),
            path: "C:\\Users\\Public\\eicar.com".into(),
            signatures: vec!["Win.Test.EICAR_HDB-1".into()],
            action: Action::Denied as i32,
            detected_at_us: now_us(),
            ..Event::default()
        })
        .collect();

    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (b, chunk) in events.chunks(bench.batch.max(1) as usize).enumerate() {
        let mut c = client.clone();
        let req = NotifyRequest {
            appliance_id: format!("host-{}", b % 16),
            events: chunk.to_vec(),
        };
        sends.spawn(async move { c.notify(req).await.map(|_| ()) });
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    let acked = started.elapsed();
    nsx.wait_for(n as usize, Duration::from_secs(120)).await?;
    let last_call_us = nsx.arrivals().values().copied().max().unwrap_or(0);
    let start_us = now_us() - started.elapsed().as_micros() as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let vms = mgr.manager.store().vms().await?;
        if vms.iter().filter(|v| v.tagged).count() >= n as usize {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("not every VM shows tagged after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_tagged = started.elapsed();
    mgr.stop().await;
    Ok(Outbreak {
        vms: n,
        nsx_delay_ms: delay_ms,
        acked_ms: crate::report::ms(acked),
        last_call_ms: (last_call_us - start_us) as f64 / 1000.0,
        all_tagged_ms: crate::report::ms(all_tagged),
    })
}

/// A manager with the NSX action, on disk, on loopback.
struct ManagerUnderTest {
    url: String,
    manager: Arc<giva_manager::Manager>,
    store: giva_manager::store::Store,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ManagerUnderTest {
    async fn start(
        dir: &tempfile::TempDir,
        nsx_url: &str,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let mut config = Config::default();
        config.quarantine.concurrency = concurrency;
        config.actions.push(ActionConfig::Nsx(NsxConfig {
            url: nsx_url.to_string(),
            user: "admin".into(),
            password: "bench".into(),
            ..NsxConfig::default()
        }));
        let store = giva_manager::store::Store::open(&dir.path().join("manager.sqlite")).await?;
        let manager = giva_manager::Manager::with_config(
            store.clone(),
            &config,
            giva_manager::auth::Auth::generate()?,
        )?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let m = manager.clone();
        let task = tokio::spawn(async move {
            let _ = giva_manager::serve(m, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        Ok(ManagerUnderTest {
            url,
            manager,
            store,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.store.close().await;
    }
}

/// A stand-in for the NSX Manager: HTTP/1.1 with keep-alive, answers 204
/// to every request after `delay_ms`, and records the first add_tags
/// arrival per external id.
struct FakeNsx {
    url: String,
    arrivals: Arc<Mutex<HashMap<String, i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNsx {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeNsx {
    async fn start(delay_ms: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let arrivals: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let a = arrivals.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(serve_conn(stream, a.clone(), delay_ms));
            }
        });
        Ok(FakeNsx {
            url,
            arrivals,
            task,
        })
    }

    fn arrivals(&self) -> HashMap<String, i64> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.arrivals().len() < n {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {n} tag calls reached NSX",
                    self.arrivals().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    arrivals: Arc<Mutex<HashMap<String, i64>>>,
    delay_ms: u64,
) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut request_line = String::new();
        match r.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let at = now_us();
        if request_line.contains("action=add_tags")
            && let Some(id) = external_id(&body)
        {
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id)
                .or_insert(at);
        }
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The `external_id` of a `VirtualMachineTagUpdate` body.
fn external_id(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let rest = &s[s.find("\"external_id\"")? + "\"external_id\"".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}
