//! The tagging worker: runs queued actions with retries, a concurrency
//! limit, and one action at a time per VM and action.
//!
//! Ingest never waits for a tag. The store commits the event together with
//! a pending row in `actions` (see [`crate::store`]), the manager
//! acknowledges, and then hands the row to [`Tagger::enqueue`]. The worker
//! ([`Tagger::run`], started by [`crate::serve`]) starts up to
//! `quarantine.concurrency` actions at once, over all VMs. For one VM and
//! one action, rows run in id order, so a tag never overtakes the untag
//! queued after it. Each action is retried with capped exponential backoff
//! (with jitter) until it is applied, or `max_attempts` is reached if one
//! is set, or a newer row for the same VM and action supersedes it (tag
//! and untag set a state, so the newest is the one that counts), or an
//! operator cancels it. Its outcome is written back to the
//! row and to the VM's `last_action`, by one writer that commits outcomes
//! in batches. A row is pending until then, so a
//! restart resumes it: [`Tagger::run`] starts by loading every pending row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use giva_proto::now_us;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::config::{Config, QuarantineConfig};
use crate::quarantine::{Rules, TagOp};
use crate::stats::Stats;
use crate::store::{ActionOutcome, ActionRow, ActionStatus, Store};
use crate::tagging::{self, ActionError, NamedAction, TagAction, TagRequest, VmRef};
use giva_runtime::Backoff;

type Key = (String, String);

/// The action queue and its worker.
#[derive(Debug)]
pub struct Tagger {
    store: Store,
    rules: Rules,
    actions: HashMap<String, Arc<dyn TagAction>>,
    queue: Mutex<BTreeMap<i64, ActionRow>>,
    wake: Notify,
    /// Woken when rows are queued or cancelled, so that a retrying action
    /// can see that it is superseded or cancelled.
    changed: Notify,
    /// Rows cancelled while running.
    cancelled: Mutex<HashSet<i64>>,
    stats: Arc<Stats>,
}

impl Tagger {
    /// A tagger with the actions and policy of `config`.
    ///
    /// # Errors
    ///
    /// An action cannot be built.
    pub fn new(store: Store, config: &Config, stats: Arc<Stats>) -> Result<Arc<Self>, ActionError> {
        let actions = tagging::build(config)?;
        Ok(Self::with_actions(
            store,
            config.quarantine.clone(),
            actions,
            stats,
        ))
    }

    /// A tagger with explicit actions (for tests, benches and embedders).
    pub fn with_actions(
        store: Store,
        policy: QuarantineConfig,
        actions: Vec<NamedAction>,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        let rules = Rules {
            policy,
            actions: actions.iter().map(|a| a.name.clone()).collect(),
        };
        Arc::new(Tagger {
            store,
            rules,
            actions: actions.into_iter().map(|a| (a.name, a.action)).collect(),
            queue: Mutex::default(),
            wake: Notify::new(),
            changed: Notify::new(),
            cancelled: Mutex::default(),
            stats,
        })
    }

    /// The policy and action names the store applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Hands committed pending rows to the worker.
    pub fn enqueue(&self, rows: Vec<ActionRow>) {
        if rows.is_empty() {
            return;
        }
        {
            let mut q = lock(&self.queue);
            for r in rows {
                q.insert(r.id, r);
            }
        }
        self.wake.notify_one();
        self.changed.notify_waiters();
    }

    /// Actions queued and not started.
    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Runs the worker until `stop` turns true: resumes pending rows from
    /// the store, then applies queued actions as they come. At stop, calls
    /// in flight get `drain_ms` to finish; what is left stays pending.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        match self.store.pending_actions().await {
            Ok(rows) => {
                if !rows.is_empty() {
                    info!(actions = rows.len(), "resuming pending tagging actions");
                }
                self.enqueue(rows);
            }
            Err(e) => error!(error = %e, "cannot load pending tagging actions"),
        }
        let (done_tx, done_rx) = mpsc::channel::<(i64, ActionOutcome)>(OUTCOME_QUEUE);
        let writer = tokio::spawn(write_outcomes(self.store.clone(), done_rx));
        let limit = self.rules.policy.concurrency.max(1);
        let mut inflight: HashSet<Key> = HashSet::new();
        let mut task_keys: HashMap<tokio::task::Id, Key> = HashMap::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            for row in self.next_batch(&inflight, limit.saturating_sub(tasks.len())) {
                let key = (row.vm_id.clone(), row.action.clone());
                inflight.insert(key.clone());
                let me = self.clone();
                let stop = stop.clone();
                let done = done_tx.clone();
                let handle = tasks.spawn(async move {
                    if let Some(outcome) = me.run_one(&row, stop).await {
                        // The writer outlives every task; a send fails only
                        // if it died, and then the row stays pending.
                        let _ = done.send((row.id, outcome)).await;
                    }
                });
                task_keys.insert(handle.id(), key);
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            error!(error = %e, "tagging task failed");
                            e.id()
                        }
                    };
                    if let Some(key) = task_keys.remove(&id) {
                        inflight.remove(&key);
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() {
                        // The owner is gone: stop as if asked to.
                        break;
                    }
                }
            }
        }
        let drain = Duration::from_millis(self.rules.policy.drain_ms);
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, all_done).await.is_err() {
            warn!(
                in_flight = tasks.len(),
                "tagging actions still running at shutdown; they stay pending"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        drop(done_tx);
        let _ = writer.await;
    }

    /// Takes up to `room` rows that may start now: the oldest queued row
    /// of each (VM, action) that has nothing in flight.
    fn next_batch(&self, inflight: &HashSet<Key>, room: usize) -> Vec<ActionRow> {
        if room == 0 {
            return Vec::new();
        }
        let mut q = lock(&self.queue);
        let mut seen: HashSet<Key> = HashSet::new();
        let mut take = Vec::new();
        for (id, row) in q.iter() {
            let key = (row.vm_id.clone(), row.action.clone());
            if inflight.contains(&key) || !seen.insert(key) {
                continue;
            }
            take.push(*id);
            if take.len() == room {
                break;
            }
        }
        take.iter().filter_map(|id| q.remove(id)).collect()
    }

    /// True when a row newer than `row` for the same VM and action is
    /// queued: it sets the state that counts, so `row` need not apply.
    fn superseded(&self, row: &ActionRow) -> bool {
        lock(&self.queue)
            .range(row.id + 1..)
            .any(|(_, r)| r.vm_id == row.vm_id && r.action == row.action)
    }

    /// Stops the rows `ids` (already marked cancelled in the store): the
    /// queued ones are dropped, the running ones stop before their next
    /// attempt.
    pub fn cancel(&self, ids: &[i64]) {
        let running: Vec<i64> = {
            let mut q = lock(&self.queue);
            ids.iter()
                .copied()
                .filter(|id| q.remove(id).is_none())
                .collect()
        };
        lock(&self.cancelled).extend(running);
        self.changed.notify_waiters();
    }

    /// Applies one action, retrying until it is applied, `max_attempts`
    /// is reached (0: no limit), a newer row for the same VM and action
    /// supersedes it, or it is cancelled. `None` when stopped or cancelled
    /// before an outcome (the row stays as the store has it).
    async fn run_one(
        &self,
        row: &ActionRow,
        mut stop: watch::Receiver<bool>,
    ) -> Option<ActionOutcome> {
        let policy = &self.rules.policy;
        let op = row.op.as_str();
        let Some(action) = self.actions.get(&row.action) else {
            return Some(ActionOutcome {
                status: ActionStatus::Failed,
                attempts: row.attempts,
                detail: format!("action '{}' is no longer configured", row.action),
            });
        };
        let request = request_for(row);
        // Attempts count across restarts; a restart still gets one.
        let budget = match policy.max_attempts {
            0 => u32::MAX,
            n => n.max(row.attempts + 1),
        };
        let mut attempt = row.attempts;
        loop {
            if lock(&self.cancelled).remove(&row.id) {
                info!(vm_id = %row.vm_id, action = %row.action, op, "tagging action cancelled");
                return None;
            }
            if self.superseded(row) {
                debug!(vm_id = %row.vm_id, action = %row.action, op, "tagging action superseded");
                return Some(ActionOutcome {
                    status: ActionStatus::Superseded,
                    attempts: attempt,
                    detail: "a newer action for this VM came first".into(),
                });
            }
            attempt = attempt.saturating_add(1);
            match action.apply(&request).await {
                Ok(()) => {
                    debug!(vm_id = %row.vm_id, action = %row.action, op, attempt, "tagging action applied");
                    self.stats.tag_call(op, "applied");
                    return Some(ActionOutcome {
                        status: ActionStatus::Applied,
                        attempts: attempt,
                        detail: "applied".into(),
                    });
                }
                Err(e) if attempt >= budget => {
                    warn!(vm_id = %row.vm_id, action = %row.action, op, attempt, error = %e, "tagging action failed");
                    self.stats.tag_call(op, "failed");
                    return Some(ActionOutcome {
                        status: ActionStatus::Failed,
                        attempts: attempt,
                        detail: e.to_string(),
                    });
                }
                Err(e) => {
                    self.stats.tag_call(op, "retry");
                    // The first failure is worth a warning; the retries of
                    // an outage are not, each.
                    if attempt == row.attempts + 1 {
                        warn!(vm_id = %row.vm_id, action = %row.action, op, error = %e, "tagging attempt failed; retrying until applied");
                    } else {
                        debug!(vm_id = %row.vm_id, action = %row.action, attempt, error = %e, "tagging attempt failed; retrying");
                    }
                    if let Err(se) = self
                        .store
                        .note_attempt(row.id, attempt, &e.to_string(), now_us())
                        .await
                    {
                        warn!(error = %se, "cannot record a tagging attempt");
                    }
                    let wait = backoff(policy).delay_after(attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        // A newer row or a cancellation: look again now.
                        _ = self.changed.notified() => {}
                        _ = stop.wait_for(|s| *s) => {
                            // Shutting down: leave the row pending for the next start.
                            return None;
                        }
                    }
                }
            }
        }
    }
}

/// Outcomes waiting for the writer.
const OUTCOME_QUEUE: usize = 4096;
/// Most outcomes committed in one transaction.
const OUTCOME_BATCH: usize = 256;

/// Commits outcomes in batches: whatever has arrived since the last commit
/// goes into the next transaction (group commit), so a fast NSX does not
/// cost one fsync per VM while ingest needs the disk too.
async fn write_outcomes(store: Store, mut rx: mpsc::Receiver<(i64, ActionOutcome)>) {
    let mut batch = Vec::with_capacity(OUTCOME_BATCH);
    while rx.recv_many(&mut batch, OUTCOME_BATCH).await > 0 {
        if let Err(e) = store.finish_actions(&batch, now_us()).await {
            error!(error = %e, actions = batch.len(), "cannot record tagging outcomes; they stay pending");
        }
        batch.clear();
    }
}

fn request_for(row: &ActionRow) -> TagRequest {
    let doc: serde_json::Value = serde_json::from_str(&row.payload).unwrap_or_default();
    let field = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    TagRequest {
        vm: VmRef {
            vm_id: row.vm_id.clone(),
            name: field("vm_name"),
            appliance_id: field("appliance_id"),
        },
        tag: row.op == TagOp::Tag,
        payload: row.payload.clone(),
    }
}

/// The retry schedule of `policy`: from `initial_backoff_ms`, doubling,
/// up to `max_backoff_ms`, with jitter.
fn backoff(policy: &QuarantineConfig) -> Backoff {
    Backoff::new(
        Duration::from_millis(policy.initial_backoff_ms),
        Duration::from_millis(policy.max_backoff_ms),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
