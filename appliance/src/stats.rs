//! The appliance's counters, exported as Prometheus metrics on the admin
//! endpoint (`/metrics`) and summarized in every heartbeat.

use std::time::Duration;

use giva_proto::manager::ApplianceStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Verdict outcomes, as the `kind` label of `giva_verdicts_total`.
pub mod verdict {
    /// Allowed.
    pub const ALLOW: &str = "allow";
    /// Denied.
    pub const DENY: &str = "deny";
    /// Failed.
    pub const ERROR: &str = "error";
    /// Not scanned (a limit or an exclusion).
    pub const NOT_SCANNED: &str = "not_scanned";
}

/// Every metric of the appliance.
#[derive(Debug)]
pub struct Stats {
    /// File events received.
    pub events: Counter,
    /// Content bytes scanned.
    pub bytes_scanned: Counter,
    /// Content bytes received from shims, dropped ones included (past a
    /// limit, or for a file given up).
    pub content_received: Counter,
    /// Content bytes received and not yet scanned, all sessions together
    /// (each session's share is capped by
    /// `server.max_pending_content_bytes`).
    pub content_buffered: Gauge,
    /// Connections closed as soon as they were accepted, because their
    /// peer (or the listener) had as many open as allowed.
    pub connections_refused: Counter,
    /// Verdicts, by kind.
    pub verdicts: Family<Labels, Counter>,
    /// Verdicts answered from the cache.
    pub cache_hits: Counter,
    /// Verdicts that needed a scan.
    pub cache_misses: Counter,
    /// Low-value events dropped from the outbox.
    pub outbox_dropped: Counter,
    /// Files whose content is being received or scanned.
    pub inflight: Gauge,
    /// Open shim sessions.
    pub sessions: Gauge,
    /// Time from event to verdict, by source (`cache` or `scan`).
    pub verdict_seconds: Family<Labels, Histogram>,
    /// The database in service, as a label (value 1).
    pub database: Family<Labels, Gauge>,
    /// Database reloads, by result (`ok` or `failed`).
    pub reloads: Family<Labels, Counter>,
    /// Verdicts held in the cache.
    pub cache_entries: Gauge,
    /// Estimated bytes held by the cache.
    pub cache_bytes: Gauge,
    /// Cache entries evicted so far.
    pub cache_evictions: Gauge,
    /// Scan jobs waiting in the pool, by priority.
    pub queue_depth: Family<Labels, Gauge>,
    /// Scan jobs refused because the pool's queue was full.
    pub pool_rejected: Gauge,
    /// Segments of split scans (large files) scanned.
    pub split_segments: Gauge,
    /// Of those, segments an idle worker stole from a busy one.
    pub split_stolen: Gauge,
    /// Times a split scan gave its worker to waiting work.
    pub split_yields: Gauge,
    /// Scans dropped unrun or stopped early because nobody waited for them
    /// any more (the request was cancelled).
    pub pool_abandoned: Gauge,
    /// Events that can never be delivered, kept in the outbox's
    /// dead-letter table.
    pub outbox_dead_letters: Gauge,
    /// Files whose shared scan by another VM failed or stalled, scanned
    /// from their own VM's content instead, by why (`failed`, `stalled`).
    pub flight_fallbacks: Family<Labels, Counter>,
    /// Shims refused for their certificate, by why (`no_certificate`,
    /// `other_vm`, `clone_token`).
    pub identity_refusals: Family<Labels, Counter>,
    /// Clones whose certificate this appliance signed.
    pub clone_enrollments: Counter,
    /// This appliance's certificate renewed.
    pub certificate_renewals: Counter,
    /// Members extracted from containers and scanned.
    pub content_members: Counter,
    /// Of those, members whose verdict came from the cache (a known member
    /// in a new wrapper).
    pub content_members_cached: Counter,
    /// Parts of files not scanned inside, by why (`encrypted`, `bomb`,
    /// `unreadable`, a limit's name).
    pub content_gaps: Family<Labels, Counter>,
    registry: Registry,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Fresh metrics, registered under the `giva_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("giva");
        let s = Stats {
            events: Counter::default(),
            bytes_scanned: Counter::default(),
            content_received: Counter::default(),
            content_buffered: Gauge::default(),
            connections_refused: Counter::default(),
            verdicts: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            outbox_dropped: Counter::default(),
            inflight: Gauge::default(),
            sessions: Gauge::default(),
            verdict_seconds: Family::new_with_constructor(|| {
                // 50 µs .. ~26 s
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.000_05, 2.0, 20,
                ))
            }),
            database: Family::default(),
            reloads: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_evictions: Gauge::default(),
            queue_depth: Family::default(),
            pool_rejected: Gauge::default(),
            split_segments: Gauge::default(),
            split_stolen: Gauge::default(),
            split_yields: Gauge::default(),
            pool_abandoned: Gauge::default(),
            outbox_dead_letters: Gauge::default(),
            flight_fallbacks: Family::default(),
            identity_refusals: Family::default(),
            clone_enrollments: Counter::default(),
            certificate_renewals: Counter::default(),
            content_members: Counter::default(),
            content_members_cached: Counter::default(),
            content_gaps: Family::default(),
            registry: Registry::default(),
        };
        registry.register("events", "File events received", s.events.clone());
        registry.register(
            "scanned_bytes",
            "Content bytes scanned",
            s.bytes_scanned.clone(),
        );
        registry.register(
            "content_received_bytes",
            "Content bytes received from shims, dropped ones included",
            s.content_received.clone(),
        );
        registry.register(
            "content_buffered_bytes",
            "Content bytes received and waiting for their scan",
            s.content_buffered.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once: their peer or listener was at its cap",
            s.connections_refused.clone(),
        );
        registry.register("verdicts", "Verdicts by kind", s.verdicts.clone());
        registry.register(
            "cache_hits",
            "Verdicts answered from the cache",
            s.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Verdicts that needed a scan",
            s.cache_misses.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Low-value events dropped because the outbox quota was reached",
            s.outbox_dropped.clone(),
        );
        registry.register(
            "outbox_dead_letters",
            "Events that can never be delivered, kept in the outbox's dead_letter table",
            s.outbox_dead_letters.clone(),
        );
        registry.register(
            "inflight_files",
            "Files being received or scanned",
            s.inflight.clone(),
        );
        registry.register("sessions", "Open shim sessions", s.sessions.clone());
        registry.register(
            "verdict_latency_seconds",
            "Time from file event to verdict",
            s.verdict_seconds.clone(),
        );
        registry.register(
            "database_info",
            "The signature database in service",
            s.database.clone(),
        );
        registry.register(
            "database_reloads",
            "Database reloads by result",
            s.reloads.clone(),
        );
        registry.register(
            "cache_entries",
            "Verdicts held in the cache",
            s.cache_entries.clone(),
        );
        registry.register(
            "cache_bytes",
            "Estimated bytes held by the verdict cache",
            s.cache_bytes.clone(),
        );
        registry.register(
            "cache_evictions",
            "Verdicts evicted from the cache so far",
            s.cache_evictions.clone(),
        );
        registry.register(
            "scan_queue_depth",
            "Scan jobs waiting, by priority",
            s.queue_depth.clone(),
        );
        registry.register(
            "scan_queue_rejected",
            "Scan jobs refused because the queue was full",
            s.pool_rejected.clone(),
        );
        registry.register(
            "split_segments",
            "Segments of large files scanned in parallel",
            s.split_segments.clone(),
        );
        registry.register(
            "split_segments_stolen",
            "Segments an idle worker stole from a busy one",
            s.split_stolen.clone(),
        );
        registry.register(
            "split_yields",
            "Times a large-file scan gave its worker to waiting work",
            s.split_yields.clone(),
        );
        registry.register(
            "scan_queue_abandoned",
            "Scans dropped or stopped early because their request was cancelled",
            s.pool_abandoned.clone(),
        );
        registry.register(
            "shared_scan_fallbacks",
            "Files scanned from their own VM's content because the shared scan failed or stalled",
            s.flight_fallbacks.clone(),
        );
        registry.register(
            "identity_refusals",
            "Shims refused because their certificate names no VM or another VM",
            s.identity_refusals.clone(),
        );
        registry.register(
            "clone_enrollments",
            "Instant clones whose certificate this appliance signed against a clone token",
            s.clone_enrollments.clone(),
        );
        registry.register(
            "certificate_renewals",
            "Times this appliance's certificate was renewed at the manager's word",
            s.certificate_renewals.clone(),
        );
        registry.register(
            "content_members",
            "Members extracted from containers (archives, compressed files) and scanned",
            s.content_members.clone(),
        );
        registry.register(
            "content_members_cached",
            "Members whose verdict came from the cache by their digest, not scanned again",
            s.content_members_cached.clone(),
        );
        registry.register(
            "content_not_scanned",
            "Parts of files not scanned inside, by why (a limit, encrypted, bomb, unsupported, unreadable)",
            s.content_gaps.clone(),
        );
        Stats { registry, ..s }
    }

    /// Counts a part of a file not scanned inside, by why.
    pub fn content_gap(&self, why: &str) {
        self.content_gaps
            .get_or_create(&vec![("why".to_string(), why.to_string())])
            .inc();
    }

    /// Counts a shim refused for its certificate.
    pub fn identity_refused(&self, why: &str) {
        self.identity_refusals
            .get_or_create(&vec![("why".to_string(), why.to_string())])
            .inc();
    }

    /// Counts a file that left a failed or stalled shared scan.
    pub fn flight_fallback(&self, why: &str) {
        self.flight_fallbacks
            .get_or_create(&vec![("why".to_string(), why.to_string())])
            .inc();
    }

    /// Counts one verdict of `kind` (see [`verdict`]).
    pub fn verdict(&self, kind: &str) {
        self.verdicts
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
    }

    /// Records how long a verdict took; `source` is `cache` or `scan`.
    pub fn latency(&self, source: &str, took: Duration) {
        self.verdict_seconds
            .get_or_create(&vec![("source".to_string(), source.to_string())])
            .observe(took.as_secs_f64());
    }

    /// Marks `version` as the database in service.
    pub fn set_database(&self, version: &str) {
        self.database.clear();
        self.database
            .get_or_create(&vec![("version".to_string(), version.to_string())])
            .set(1);
    }

    fn verdict_count(&self, kind: &str) -> u64 {
        self.verdicts
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .get()
    }

    /// A snapshot for the heartbeat.
    pub fn snapshot(&self) -> ApplianceStats {
        ApplianceStats {
            events: self.events.get(),
            bytes_scanned: self.bytes_scanned.get(),
            verdicts_allow: self.verdict_count(verdict::ALLOW),
            verdicts_deny: self.verdict_count(verdict::DENY),
            verdicts_error: self.verdict_count(verdict::ERROR),
            verdicts_not_scanned: self.verdict_count(verdict::NOT_SCANNED),
            cache_hits: self.cache_hits.get(),
            cache_misses: self.cache_misses.get(),
            outbox_dropped: self.outbox_dropped.get(),
        }
    }

    /// Copies the cache's and the pool's own counters into the metrics.
    pub fn observe(&self, cache: &giva_engine::CacheStats, pool: &giva_engine::PoolStats) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.cache_entries.set(g(cache.entries));
        self.cache_bytes.set(g(cache.bytes));
        self.cache_evictions.set(g(cache.evictions));
        self.pool_rejected.set(g(pool.rejected));
        self.split_segments.set(g(pool.segments));
        self.split_stolen.set(g(pool.stolen));
        self.split_yields.set(g(pool.yields));
        self.pool_abandoned.set(g(pool.abandoned));
        for (name, depth) in ["on_access", "on_demand", "background"]
            .iter()
            .zip(pool.queued)
        {
            self.queue_depth
                .get_or_create(&vec![("priority".to_string(), (*name).to_string())])
                .set(g(depth as u64));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            out = format!("# cannot encode metrics: {e}\n");
        }
        out
    }
}
