//! Counters of the appliance since it started.

use std::sync::atomic::{AtomicU64, Ordering};

use giva_proto::manager::ApplianceStats;

/// Lock-free counters, shared by every session.
#[derive(Debug, Default)]
pub struct Stats {
    /// File events received.
    pub events: AtomicU64,
    /// Content bytes scanned.
    pub bytes_scanned: AtomicU64,
    /// ALLOW verdicts.
    pub allow: AtomicU64,
    /// DENY verdicts.
    pub deny: AtomicU64,
    /// ERROR verdicts.
    pub error: AtomicU64,
    /// NOT_SCANNED verdicts.
    pub not_scanned: AtomicU64,
    /// Verdicts answered from the cache.
    pub cache_hits: AtomicU64,
    /// Verdicts that needed a scan.
    pub cache_misses: AtomicU64,
    /// Low-value events dropped from the outbox.
    pub outbox_dropped: AtomicU64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for the heartbeat.
    pub fn snapshot(&self) -> ApplianceStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ApplianceStats {
            events: g(&self.events),
            bytes_scanned: g(&self.bytes_scanned),
            verdicts_allow: g(&self.allow),
            verdicts_deny: g(&self.deny),
            verdicts_error: g(&self.error),
            verdicts_not_scanned: g(&self.not_scanned),
            cache_hits: g(&self.cache_hits),
            cache_misses: g(&self.cache_misses),
            outbox_dropped: g(&self.outbox_dropped),
        }
    }
}
