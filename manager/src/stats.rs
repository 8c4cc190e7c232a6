//! The manager's counters, exported as Prometheus metrics on its admin
//! endpoint (`/metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric of the manager.
#[derive(Debug)]
pub struct Stats {
    /// Events received, by kind and by whether they were new or a
    /// re-delivery (`stored`: `new` or `duplicate`).
    pub events: Family<Labels, Counter>,
    /// Tagging calls, by operation (`tag`, `untag`) and outcome
    /// (`applied`, `failed`, `retry`).
    pub tag_calls: Family<Labels, Counter>,
    /// Tagging actions queued in memory, not started.
    pub tag_queue: Gauge,
    /// Appliances holding a command channel.
    pub subscribers: Gauge,
    /// Calls refused for want of a credential, by call and code.
    pub refused: Family<Labels, Counter>,
    /// Events whose id held another event already (kept under another id).
    pub collisions: Counter,
    registry: Registry,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

impl Stats {
    /// Fresh metrics, registered under the `giva_manager_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("giva_manager");
        let s = Stats {
            events: Family::default(),
            tag_calls: Family::default(),
            tag_queue: Gauge::default(),
            subscribers: Gauge::default(),
            refused: Family::default(),
            collisions: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events",
            "Events received, by kind and whether they were new",
            s.events.clone(),
        );
        registry.register(
            "tag_calls",
            "Tagging calls, by operation and outcome",
            s.tag_calls.clone(),
        );
        registry.register(
            "tag_queue_depth",
            "Tagging actions queued and not started",
            s.tag_queue.clone(),
        );
        registry.register(
            "subscribers",
            "Appliances holding a command channel",
            s.subscribers.clone(),
        );
        registry.register(
            "refused_calls",
            "Calls refused for want of a credential, by call and code",
            s.refused.clone(),
        );
        registry.register(
            "event_id_collisions",
            "Events whose id held another event already; kept under another id",
            s.collisions.clone(),
        );
        Stats { registry, ..s }
    }

    /// Counts an event of `kind` (`new`: first delivery).
    pub fn event(&self, kind: &str, new: bool) {
        let stored = if new { "new" } else { "duplicate" };
        self.events
            .get_or_create(&labels(&[("kind", kind), ("stored", stored)]))
            .inc();
    }

    /// Counts a tagging call.
    pub fn tag_call(&self, op: &str, outcome: &str) {
        self.tag_calls
            .get_or_create(&labels(&[("op", op), ("outcome", outcome)]))
            .inc();
    }

    /// Counts an event id collision.
    pub fn collision(&self) {
        self.collisions.inc();
    }

    /// Counts a refused call.
    pub fn refusal(&self, call: &str, code: tonic::Code) {
        self.refused
            .get_or_create(&labels(&[("call", call), ("code", &format!("{code:?}"))]))
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            out = format!("# cannot encode metrics: {e}\n");
        }
        out
    }
}
