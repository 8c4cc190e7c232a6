//! The state a watcher's parts share: the policy in force, whether a
//! session is open, the counters, and the fallback decisions not yet
//! reported to the appliance.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use giva_proto::shim::ShimReport;
use serde::Serialize;

use crate::policy::{LocalPolicy, Overrides};

/// Counters of a watcher (all since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// File events seen (kernel or inotify).
    pub events: AtomicU64,
    /// Events sent to the appliance.
    pub sent: AtomicU64,
    /// Events not sent: excluded by policy, not a regular file, too large.
    pub skipped: AtomicU64,
    /// Events caused by the shim's own process (allowed at once).
    pub own: AtomicU64,
    /// Verdicts received.
    pub verdicts: AtomicU64,
    /// Verdicts that came from the appliance's cache.
    pub cache_hits: AtomicU64,
    /// Verdicts with detections.
    pub detections: AtomicU64,
    /// Held accesses allowed by a verdict.
    pub allowed: AtomicU64,
    /// Held accesses denied by a verdict.
    pub denied: AtomicU64,
    /// Held accesses allowed by the fail-open policy.
    pub fail_open: AtomicU64,
    /// Held accesses denied by the fail-closed policy.
    pub fail_closed: AtomicU64,
    /// Events dropped (queue full, kernel queue overflow, no session).
    pub dropped: AtomicU64,
    /// Content bytes sent.
    pub bytes_sent: AtomicU64,
    /// Sessions opened (1 + reconnects).
    pub sessions: AtomicU64,
    /// Files moved into the vault (fallback mode).
    pub vaulted: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub events: u64,
    pub sent: u64,
    pub skipped: u64,
    pub own: u64,
    pub verdicts: u64,
    pub cache_hits: u64,
    pub detections: u64,
    pub allowed: u64,
    pub denied: u64,
    pub fail_open: u64,
    pub fail_closed: u64,
    pub dropped: u64,
    pub bytes_sent: u64,
    pub sessions: u64,
    pub vaulted: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            events: g(&self.events),
            sent: g(&self.sent),
            skipped: g(&self.skipped),
            own: g(&self.own),
            verdicts: g(&self.verdicts),
            cache_hits: g(&self.cache_hits),
            detections: g(&self.detections),
            allowed: g(&self.allowed),
            denied: g(&self.denied),
            fail_open: g(&self.fail_open),
            fail_closed: g(&self.fail_closed),
            dropped: g(&self.dropped),
            bytes_sent: g(&self.bytes_sent),
            sessions: g(&self.sessions),
            vaulted: g(&self.vaulted),
        }
    }
}

/// State shared by the link, the event sources and the tickets.
#[derive(Debug)]
pub struct Shared {
    policy: RwLock<Arc<LocalPolicy>>,
    overrides: Overrides,
    pub(crate) connected: AtomicBool,
    stopping: AtomicBool,
    /// The counters.
    pub stats: Stats,
    unreported_open: AtomicU64,
    unreported_closed: AtomicU64,
    unreported_dropped: AtomicU64,
}

impl Shared {
    /// Shared state starting with the default policy and `overrides`.
    pub fn new(overrides: Overrides) -> Arc<Self> {
        Arc::new(Shared {
            policy: RwLock::new(Arc::new(LocalPolicy::new(
                crate::policy::default_wire_policy(),
                overrides,
            ))),
            overrides,
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
            unreported_open: AtomicU64::new(0),
            unreported_closed: AtomicU64::new(0),
            unreported_dropped: AtomicU64::new(0),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<LocalPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set_policy(&self, wire: giva_proto::shim::Policy) {
        let p = Arc::new(LocalPolicy::new(wire, self.overrides));
        match self.policy.write() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }

    /// Marks the watcher as stopping: from now on, accesses still held are
    /// allowed (a stopped shim must not deny by fail-closed policy).
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// True while a session with the appliance is open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Decides a held access without a verdict, by policy, and counts it.
    /// Returns true to allow.
    pub fn fail_now(&self) -> bool {
        let allow = self.policy().fail_open();
        self.count_fail(allow);
        allow
    }

    pub(crate) fn count_fail(&self, allow: bool) {
        if allow {
            self.stats.fail_open.fetch_add(1, Ordering::Relaxed);
            self.unreported_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.fail_closed.fetch_add(1, Ordering::Relaxed);
            self.unreported_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an event that could not be sent.
    pub fn count_dropped(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters not yet reported, or `None` when all are zero.
    pub(crate) fn pending_report(&self) -> Option<ShimReport> {
        let r = ShimReport {
            fail_open_decisions: self.unreported_open.load(Ordering::Relaxed),
            fail_closed_decisions: self.unreported_closed.load(Ordering::Relaxed),
            events_dropped: self.unreported_dropped.load(Ordering::Relaxed),
        };
        (r.fail_open_decisions + r.fail_closed_decisions + r.events_dropped > 0).then_some(r)
    }

    pub(crate) fn mark_reported(&self, r: &ShimReport) {
        self.unreported_open
            .fetch_sub(r.fail_open_decisions, Ordering::Relaxed);
        self.unreported_closed
            .fetch_sub(r.fail_closed_decisions, Ordering::Relaxed);
        self.unreported_dropped
            .fetch_sub(r.events_dropped, Ordering::Relaxed);
    }
}
