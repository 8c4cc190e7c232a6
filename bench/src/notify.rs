//! Detection → manager latency: from the moment the appliance detects
//! (`detected_at`) to the manager's commit (`received_at`), with immediate
//! notification on and with heartbeat-only reporting, at a given rate of
//! detections per second.
//!
//! A real manager (SQLite on disk) and a real appliance (durable outbox on
//! disk) run in-process on loopback; a client sends EICAR buffers through
//! the appliance's unary `Scan` at the chosen rate. Both timestamps come
//! from the same clock.

use std::time::Duration;

use giva_proto::manager::{EventKind, StoredEvent};
use giva_proto::shim::ScanRequest;
use giva_proto::shim::shim_service_client::ShimServiceClient;
use tokio::net::TcpListener;

use crate::report::{Percentiles, percentiles};

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// One scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Detections per second.
    pub rate: u32,
    /// How many detections in all.
    pub count: u32,
    /// Immediate notification on (false: heartbeat only).
    pub immediate: bool,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

/// Runs one scenario and returns the latency percentiles in milliseconds.
///
/// # Errors
///
/// A service fails to start or a request fails.
pub async fn run(s: Scenario) -> anyhow::Result<Percentiles> {
    let dir = tempfile::tempdir()?;
    let store = giva_manager::store::Store::open(&dir.path().join("manager.sqlite")).await?;
    let manager = giva_manager::Manager::new(store.clone());
    let mlistener = TcpListener::bind("127.0.0.1:0").await?;
    let maddr = mlistener.local_addr()?;
    let (mstop, mrx) = tokio::sync::oneshot::channel::<()>();
    let m2 = manager.clone();
    let mtask = tokio::spawn(async move {
        let _ = giva_manager::serve(m2, mlistener, async {
            let _ = mrx.await;
        })
        .await;
    });

    let appliance =
        crate::inprocess::Appliance::start("bench", &format!("http://{maddr}"), dir.path(), |c| {
            c.manager.notify_immediately = s.immediate;
            c.manager.heartbeat_interval_secs = s.heartbeat.as_secs().max(1);
        })
        .await?;

    let mut client = ShimServiceClient::connect(appliance.url()).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(s.rate.max(1))));
    for i in 0..s.count {
        tick.tick().await;
        let req = ScanRequest {
            vm_id: "bench-vm".into(),
            name: format!("eicar-{i}"),
            data: EICAR.to_vec(),
        };
        client.scan(req).await?;
    }
    // Wait until every detection is committed (heartbeat-only needs up to
    // one interval more).
    let deadline = tokio::time::Instant::now() + s.heartbeat + Duration::from_secs(30);
    let events = loop {
        let ev = detections(&manager).await?;
        if ev.len() >= s.count as usize || tokio::time::Instant::now() > deadline {
            break ev;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    appliance.stop().await;
    let _ = mstop.send(());
    let _ = mtask.await;
    store.close().await;
    if events.len() < s.count as usize {
        anyhow::bail!("only {} of {} detections arrived", events.len(), s.count);
    }
    let mut lat: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            e.event
                .as_ref()
                .map(|ev| (e.received_at_us - ev.detected_at_us) as f64 / 1000.0)
        })
        .collect();
    Ok(percentiles(&mut lat))
}

async fn detections(m: &giva_manager::Manager) -> anyhow::Result<Vec<StoredEvent>> {
    let filter = giva_manager::store::EventFilter {
        limit: 1_000_000,
        ..Default::default()
    };
    Ok(m.store()
        .events(&filter)
        .await?
        .into_iter()
        .filter(|e| {
            e.event
                .as_ref()
                .is_some_and(|e| e.kind == EventKind::Detection as i32)
        })
        .collect())
}
