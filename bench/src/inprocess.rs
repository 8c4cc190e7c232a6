//! An appliance running inside the bench process, on loopback, with its
//! outbox on disk: what the latency benches measure through.

use std::net::SocketAddr;
use std::path::Path;

use giva_appliance::config::Config;
use tokio::net::TcpListener;

/// A running in-process appliance with the bundled database.
#[derive(Debug)]
pub struct Appliance {
    /// Where shims reach it.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Appliance {
    /// Starts an appliance named `id` reporting to `manager_url`, with its
    /// outbox in `data_dir` and no admin endpoint; `tweak` adjusts the rest.
    ///
    /// # Errors
    ///
    /// The appliance cannot be built or cannot listen.
    pub async fn start(
        id: &str,
        manager_url: &str,
        data_dir: &Path,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            appliance_id: id.into(),
            ..Default::default()
        };
        config.server.admin_listen = None;
        config.manager.url = manager_url.to_string();
        config.outbox.path = data_dir.join("outbox.sqlite");
        tweak(&mut config);
        let app = giva_appliance::Appliance::new(config, giva_signatures::bundled()).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(giva_appliance::serve(app, listener, async {
            let _ = rx.await;
        }));
        Ok(Appliance { addr, stop, task })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits for the drain.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
