//! Where the manager keeps events and the VM inventory.
//!
//! [`Store`] is the interface; [`SqliteStore`] is the embedded default (a
//! bundled SQLite through sqlx, no system library). Events are deduplicated
//! by `event_id`, so an appliance that replays an event after a lost
//! acknowledgement does not count it twice. A call returns only after its
//! transaction is committed, so an acknowledgement always follows the
//! commit.
//!
//! The quarantine lives here too, in the same transactions: an event that
//! moves a VM ([`crate::quarantine::on_event`]) adds a row to
//! `vm_transitions` and, when the move needs a tag or an untag, one pending
//! row per configured action to `actions`. Those rows are the durable queue
//! of [`crate::tagger::Tagger`]: an action is pending until it is applied or
//! has failed for good, so a restart resumes it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use giva_proto::manager::{Action, Event, EventKind, StoredEvent, VmInfo, VmState};
use prost::Message;
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row};

use crate::quarantine::{self, Decision, Quarantine, Rules, TagOp};

/// VM states as shown to operators.
pub mod state {
    /// No open detection.
    pub const CLEAN: &str = "clean";
    /// A detection was recorded and the VM is (to be) quarantined.
    pub const INFECTED: &str = "infected";
    /// A full scan was requested to confirm the VM is clean.
    pub const SCAN_REQUESTED: &str = "scan_requested";
}

/// Status of a tagging action.
pub mod action_status {
    /// Queued or in flight; resumed after a restart.
    pub const PENDING: &str = "pending";
    /// Applied.
    pub const APPLIED: &str = "applied";
    /// Failed on every attempt.
    pub const FAILED: &str = "failed";
}

/// A stored VM state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Row id (increasing).
    pub id: i64,
    /// The VM.
    pub vm_id: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Why.
    pub cause: String,
    /// The event that caused it (empty for operator commands).
    pub event_id: String,
    /// When the manager recorded it, µs since the epoch.
    pub at_us: i64,
}

/// A tagging action: one configured action for one transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRow {
    /// Row id (increasing; actions of one VM run in this order).
    pub id: i64,
    /// The transition that asked for it.
    pub transition_id: i64,
    /// The VM.
    pub vm_id: String,
    /// The configured action's name ("nsx", "webhook", ...).
    pub action: String,
    /// "tag" or "untag".
    pub op: String,
    /// One of [`action_status`].
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The outcome ("applied", or the last error).
    pub detail: String,
    /// The event document given to the action, JSON: `op`, `vm_id`,
    /// `vm_name`, `appliance_id`, `from_state`, `to_state`, `cause`,
    /// `event_id`, `signatures`, `path`, `action`, `detected_at_us`,
    /// `transition_id`, `at_us`.
    pub payload: String,
    /// When it was queued, µs since the epoch.
    pub created_at_us: i64,
    /// When it last changed.
    pub updated_at_us: i64,
}

/// The outcome of an action after its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// True if an attempt succeeded.
    pub applied: bool,
    /// Attempts made.
    pub attempts: u32,
    /// "applied", or the last error.
    pub detail: String,
}

/// What [`Store::insert_events`] did.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    /// Per event, whether it was new.
    pub stored: Vec<Stored>,
    /// Actions queued by the events, for the tagger.
    pub queued: Vec<ActionRow>,
}

/// An operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// Remove the quarantine: clean, and untag.
    Untag,
    /// Ask for a full scan: scan_requested.
    Scan,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
}

/// What happened when an event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The event is new and was committed.
    New,
    /// The event was already stored; nothing changed.
    Duplicate,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this VM's events.
    pub vm_id: Option<String>,
    /// Only events received at or after this time (µs since the epoch).
    pub since_us: i64,
    /// At most this many (the newest), returned oldest first.
    pub limit: usize,
}

/// The manager's storage.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Commits events that are new (by id), updates their VMs and applies
    /// the quarantine `rules`, in one transaction. Returns, per event,
    /// whether it was new, and the actions queued.
    async fn insert_events(
        &self,
        events: &[Event],
        received_at_us: i64,
        rules: &Rules,
    ) -> Result<Ingested, StoreError>;

    /// Applies an operator's override to a VM; `None` if the VM is unknown.
    /// Returns the VM afterwards and the actions queued.
    async fn apply_override(
        &self,
        vm_id: &str,
        what: Override,
        rules: &Rules,
        now_us: i64,
    ) -> Result<Option<(VmState, Vec<ActionRow>)>, StoreError>;

    /// Every pending action, oldest first.
    async fn pending_actions(&self) -> Result<Vec<ActionRow>, StoreError>;

    /// Records actions' outcomes, by action id, and updates their VMs
    /// (`tagged`, `last_action`), in one transaction (the tagger batches
    /// them, so that an outbreak costs few commits).
    async fn finish_actions(
        &self,
        outcomes: &[(i64, ActionOutcome)],
        now_us: i64,
    ) -> Result<(), StoreError>;

    /// Records a failed attempt of a still pending action (attempts so far
    /// and the error), so that `last_action` shows the retrying.
    async fn note_attempt(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError>;

    /// Actions, newest last (at most `limit`, the newest), of one VM or all.
    async fn actions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRow>, StoreError>;

    /// Transitions, newest last (at most `limit`, the newest), of one VM or all.
    async fn transitions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Transition>, StoreError>;

    /// Records the VMs an appliance reported in a heartbeat.
    async fn upsert_vms(
        &self,
        appliance_id: &str,
        vms: &[VmInfo],
        now_us: i64,
    ) -> Result<(), StoreError>;

    /// Lists events.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;

    /// Lists every known VM.
    async fn vms(&self) -> Result<Vec<VmState>, StoreError>;

    /// One VM's state.
    async fn vm(&self, vm_id: &str) -> Result<Option<VmState>, StoreError>;

    /// Replaces one VM's state.
    async fn put_vm(&self, vm: &VmState) -> Result<(), StoreError>;
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        event_id TEXT PRIMARY KEY,
        kind INTEGER NOT NULL,
        appliance_id TEXT NOT NULL,
        vm_id TEXT NOT NULL,
        detected_at_us INTEGER NOT NULL,
        received_at_us INTEGER NOT NULL,
        payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events(received_at_us)",
    "CREATE INDEX IF NOT EXISTS events_by_vm ON events(vm_id, received_at_us)",
    "CREATE TABLE IF NOT EXISTS vms (
        vm_id TEXT PRIMARY KEY,
        payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS quarantine (
        vm_id TEXT PRIMARY KEY,
        tag_wanted INTEGER NOT NULL,
        infected_at_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vm_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        vm_id TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        cause TEXT NOT NULL,
        event_id TEXT NOT NULL,
        at_us INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS transitions_by_vm ON vm_transitions(vm_id, id)",
    "CREATE TABLE IF NOT EXISTS actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transition_id INTEGER NOT NULL,
        vm_id TEXT NOT NULL,
        action TEXT NOT NULL,
        op TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        detail TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at_us INTEGER NOT NULL,
        updated_at_us INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS actions_by_status ON actions(status, id)",
    "CREATE INDEX IF NOT EXISTS actions_by_vm ON actions(vm_id, status)",
    "CREATE INDEX IF NOT EXISTS actions_by_transition ON actions(transition_id)",
];

impl SqliteStore {
    /// Opens (or creates) the store at `path`; `:memory:` keeps it in
    /// memory (for tests and trials).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created, or the schema cannot be set up.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let memory = path.as_os_str() == ":memory:";
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    sqlx::Error::Configuration(
                        format!("cannot create {}: {e}", dir.display()).into(),
                    )
                })?;
            }
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        }
        .busy_timeout(Duration::from_secs(10));
        if !memory {
            // Switch a new file to WAL and create the schema on one
            // connection before the pool opens more. Pool connections that
            // race to switch the journal mode of a fresh file can get
            // SQLITE_BUSY without the busy handler ever being consulted.
            let mut setup = options.connect().await?;
            for stmt in SCHEMA {
                sqlx::query(stmt).execute(&mut setup).await?;
            }
            setup.close().await?;
        }
        // In-memory databases live per connection: keep exactly one.
        let max = if memory { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        if memory {
            for stmt in SCHEMA {
                sqlx::query(stmt).execute(&pool).await?;
            }
        }
        Ok(SqliteStore { pool })
    }

    /// Begins a write transaction. `BEGIN IMMEDIATE` takes the write lock
    /// up front, waiting on the busy handler: a deferred transaction that
    /// reads and then writes fails at once with SQLITE_BUSY when another
    /// connection committed in between.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The newest `limit` rows (at least one) of `table` (by `id`), of one
    /// VM or of all, oldest first. `table` and `cols` are constants.
    async fn newest(
        &self,
        table: &str,
        cols: &str,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let filter = if vm_id.is_some() {
            "WHERE vm_id = ?"
        } else {
            ""
        };
        let sql = format!("SELECT {cols} FROM {table} {filter} ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(vm) = vm_id {
            q = q.bind(vm);
        }
        let mut rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.reverse();
        Ok(rows)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Updates one action row, then its VM's `last_action` (and `tagged`
/// once every action of the transition is applied).
async fn update_action(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    status: &str,
    attempts: u32,
    detail: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE actions SET status = ?, attempts = ?, detail = ?, updated_at_us = ? WHERE id = ?",
    )
    .bind(status)
    .bind(i64::from(attempts))
    .bind(detail)
    .bind(now_us)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let Some(row) = sqlx::query("SELECT transition_id, vm_id FROM actions WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let (transition_id, vm_id): (i64, String) = (row.get(0), row.get(1));
    // Only the newest transition with actions speaks for the VM.
    let newest: i64 =
        sqlx::query("SELECT COALESCE(MAX(transition_id), 0) FROM actions WHERE vm_id = ?")
            .bind(&vm_id)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    if newest == transition_id
        && let Some(mut vm) = load_vm(conn, &vm_id).await?
    {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE transition_id = ? ORDER BY id"
        ))
        .bind(transition_id)
        .fetch_all(&mut *conn)
        .await?;
        let rows: Vec<ActionRow> = rows.iter().map(action_row).collect();
        let all_applied = rows.iter().all(|r| r.status == action_status::APPLIED);
        if let Some(op) = rows.first().and_then(|r| TagOp::parse(&r.op))
            && all_applied
        {
            vm.tagged = op == TagOp::Tag;
        }
        vm.last_action = summarize(&rows, now_us);
        save_vm(conn, &vm).await?;
    }
    Ok(())
}

fn decode<M: Message + Default>(what: &str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

fn new_vm(vm_id: &str) -> VmState {
    VmState {
        vm: Some(VmInfo {
            vm_id: vm_id.to_string(),
            ..VmInfo::default()
        }),
        state: state::CLEAN.to_string(),
        ..VmState::default()
    }
}

async fn load_vm(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
) -> Result<Option<VmState>, StoreError> {
    let row = sqlx::query("SELECT payload FROM vms WHERE vm_id = ?")
        .bind(vm_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| decode::<VmState>(vm_id, r.get::<&[u8], _>(0)))
        .transpose()
}

async fn save_vm(conn: &mut sqlx::SqliteConnection, vm: &VmState) -> Result<(), StoreError> {
    let id = vm.vm.as_ref().map(|v| v.vm_id.clone()).unwrap_or_default();
    sqlx::query("INSERT INTO vms (vm_id, payload) VALUES (?, ?) ON CONFLICT(vm_id) DO UPDATE SET payload = excluded.payload")
        .bind(id)
        .bind(vm.encode_to_vec())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const ACTION_COLUMNS: &str = "id, transition_id, vm_id, action, op, status, attempts, detail, payload, created_at_us, updated_at_us";

fn action_row(r: &sqlx::sqlite::SqliteRow) -> ActionRow {
    ActionRow {
        id: r.get(0),
        transition_id: r.get(1),
        vm_id: r.get(2),
        action: r.get(3),
        op: r.get(4),
        status: r.get(5),
        attempts: u32::try_from(r.get::<i64, _>(6)).unwrap_or(0),
        detail: r.get(7),
        payload: r.get(8),
        created_at_us: r.get(9),
        updated_at_us: r.get(10),
    }
}

async fn load_quarantine(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
) -> Result<Quarantine, StoreError> {
    let row = sqlx::query("SELECT tag_wanted, infected_at_us FROM quarantine WHERE vm_id = ?")
        .bind(vm_id)
        .fetch_optional(&mut *conn)
        .await?;
    let pending: bool =
        sqlx::query("SELECT EXISTS(SELECT 1 FROM actions WHERE vm_id = ? AND status = 'pending')")
            .bind(vm_id)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    Ok(Quarantine {
        tag_wanted: row.as_ref().is_some_and(|r| r.get::<bool, _>(0)),
        infected_at_us: row.as_ref().map_or(0, |r| r.get(1)),
        action_pending: pending,
    })
}

async fn save_quarantine(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
    q: &Quarantine,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO quarantine (vm_id, tag_wanted, infected_at_us) VALUES (?, ?, ?)
         ON CONFLICT(vm_id) DO UPDATE SET tag_wanted = excluded.tag_wanted, infected_at_us = excluded.infected_at_us",
    )
    .bind(vm_id)
    .bind(q.tag_wanted)
    .bind(q.infected_at_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The document an action receives (see [`ActionRow::payload`]).
#[derive(Debug, Serialize)]
struct Payload<'a> {
    op: &'static str,
    vm_id: &'a str,
    vm_name: &'a str,
    appliance_id: &'a str,
    from_state: &'a str,
    to_state: &'a str,
    cause: &'a str,
    event_id: &'a str,
    signatures: &'a [String],
    path: &'a str,
    action: &'a str,
    detected_at_us: i64,
    transition_id: i64,
    at_us: i64,
}

/// Records decision `d` for `vm`: a transition row, the new state, and the
/// tag operation (pending action rows, or directly when no action is
/// configured). Returns the queued actions.
async fn record(
    conn: &mut sqlx::SqliteConnection,
    rules: &Rules,
    vm: &mut VmState,
    d: &Decision,
    ev: Option<&Event>,
    now_us: i64,
) -> Result<Vec<ActionRow>, StoreError> {
    let vm_id = vm.vm.as_ref().map(|v| v.vm_id.clone()).unwrap_or_default();
    let event_id = ev.map(|e| e.event_id.as_str()).unwrap_or("");
    let transition_id = sqlx::query(
        "INSERT INTO vm_transitions (vm_id, from_state, to_state, cause, event_id, at_us) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&vm_id)
    .bind(&vm.state)
    .bind(d.to)
    .bind(&d.cause)
    .bind(event_id)
    .bind(now_us)
    .execute(&mut *conn)
    .await?
    .last_insert_rowid();
    let from = std::mem::replace(&mut vm.state, d.to.to_string());
    let Some(op) = d.op else {
        return Ok(Vec::new());
    };
    if rules.actions.is_empty() {
        vm.tagged = op == TagOp::Tag;
        vm.last_action = format!(
            "{} recorded at {}; no tagging action configured",
            op.as_str(),
            crate::cli::format_us(now_us)
        );
        return Ok(Vec::new());
    }
    let action = ev
        .and_then(|e| Action::try_from(e.action).ok())
        .filter(|a| *a != Action::Unspecified)
        .map(|a| a.as_str_name().trim_start_matches("ACTION_").to_lowercase())
        .unwrap_or_default();
    let payload = serde_json::to_string(&Payload {
        op: op.as_str(),
        vm_id: &vm_id,
        vm_name: vm.vm.as_ref().map(|v| v.name.as_str()).unwrap_or(""),
        appliance_id: &vm.appliance_id,
        from_state: &from,
        to_state: d.to,
        cause: &d.cause,
        event_id,
        signatures: ev.map(|e| e.signatures.as_slice()).unwrap_or(&[]),
        path: ev.map(|e| e.path.as_str()).unwrap_or(""),
        action: &action,
        detected_at_us: ev.map_or(0, |e| e.detected_at_us),
        transition_id,
        at_us: now_us,
    })
    .map_err(|e| StoreError::Corrupt {
        what: "action payload".into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(rules.actions.len());
    for name in &rules.actions {
        let id = sqlx::query(
            "INSERT INTO actions (transition_id, vm_id, action, op, status, attempts, detail, payload, created_at_us, updated_at_us)
             VALUES (?, ?, ?, ?, ?, 0, '', ?, ?, ?)",
        )
        .bind(transition_id)
        .bind(&vm_id)
        .bind(name)
        .bind(op.as_str())
        .bind(action_status::PENDING)
        .bind(&payload)
        .bind(now_us)
        .bind(now_us)
        .execute(&mut *conn)
        .await?
        .last_insert_rowid();
        out.push(ActionRow {
            id,
            transition_id,
            vm_id: vm_id.clone(),
            action: name.clone(),
            op: op.as_str().to_string(),
            status: action_status::PENDING.to_string(),
            attempts: 0,
            detail: String::new(),
            payload: payload.clone(),
            created_at_us: now_us,
            updated_at_us: now_us,
        });
    }
    vm.last_action = summarize(&out, now_us);
    Ok(out)
}

/// `last_action` for the rows of one transition, e.g.
/// `tag at 2026-…: nsx applied (1 attempt); webhook failed after 5 attempts: HTTP 500`.
fn summarize(rows: &[ActionRow], now_us: i64) -> String {
    let op = rows.first().map_or("tag", |r| r.op.as_str());
    let parts: Vec<String> = rows
        .iter()
        .map(|r| match r.status.as_str() {
            action_status::APPLIED => format!(
                "{} applied ({} attempt{})",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" }
            ),
            action_status::FAILED => format!(
                "{} failed after {} attempt{}: {}",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.detail
            ),
            _ if r.attempts > 0 => format!(
                "{} retrying after {} failed attempt{}: {}",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.detail
            ),
            _ => format!("{} pending", r.action),
        })
        .collect();
    format!(
        "{op} at {}: {}",
        crate::cli::format_us(now_us),
        parts.join("; ")
    )
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_events(
        &self,
        events: &[Event],
        received_at_us: i64,
        rules: &Rules,
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut out = Ingested {
            stored: Vec::with_capacity(events.len()),
            queued: Vec::new(),
        };
        for ev in events {
            let inserted = sqlx::query(
                "INSERT OR IGNORE INTO events (event_id, kind, appliance_id, vm_id, detected_at_us, received_at_us, payload)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&ev.event_id)
            .bind(ev.kind)
            .bind(&ev.appliance_id)
            .bind(&ev.vm_id)
            .bind(ev.detected_at_us)
            .bind(received_at_us)
            .bind(ev.encode_to_vec())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                out.stored.push(Stored::Duplicate);
                continue;
            }
            out.stored.push(Stored::New);
            if ev.vm_id.is_empty() {
                continue;
            }
            let mut vm = load_vm(&mut tx, &ev.vm_id)
                .await?
                .unwrap_or_else(|| new_vm(&ev.vm_id));
            if let Some(info) = vm.vm.as_mut()
                && info.name.is_empty()
            {
                info.name = ev.vm_name.clone();
            }
            if vm.appliance_id.is_empty() {
                vm.appliance_id = ev.appliance_id.clone();
            }
            vm.last_seen_us = vm.last_seen_us.max(ev.detected_at_us);
            if ev.kind == EventKind::Detection as i32 {
                vm.detections += 1;
            }
            if ev.kind == EventKind::Detection as i32 || quarantine::is_clean_scan(ev) {
                let mut q = load_quarantine(&mut tx, &ev.vm_id).await?;
                if let Some(d) = quarantine::on_event(&rules.policy, &vm, &mut q, ev) {
                    let queued =
                        record(&mut tx, rules, &mut vm, &d, Some(ev), received_at_us).await?;
                    out.queued.extend(queued);
                }
                save_quarantine(&mut tx, &ev.vm_id, &q).await?;
            }
            save_vm(&mut tx, &vm).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn apply_override(
        &self,
        vm_id: &str,
        what: Override,
        rules: &Rules,
        now_us: i64,
    ) -> Result<Option<(VmState, Vec<ActionRow>)>, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some(mut vm) = load_vm(&mut tx, vm_id).await? else {
            return Ok(None);
        };
        let mut q = load_quarantine(&mut tx, vm_id).await?;
        let d = match what {
            Override::Untag => quarantine::on_untag(&mut q),
            Override::Scan => quarantine::on_scan_request(),
        };
        let queued = record(&mut tx, rules, &mut vm, &d, None, now_us).await?;
        save_quarantine(&mut tx, vm_id, &q).await?;
        save_vm(&mut tx, &vm).await?;
        tx.commit().await?;
        Ok(Some((vm, queued)))
    }

    async fn pending_actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE status = ? ORDER BY id"
        ))
        .bind(action_status::PENDING)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(action_row).collect())
    }

    async fn finish_actions(
        &self,
        outcomes: &[(i64, ActionOutcome)],
        now_us: i64,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (id, o) in outcomes {
            let status = if o.applied {
                action_status::APPLIED
            } else {
                action_status::FAILED
            };
            update_action(&mut tx, *id, status, o.attempts, &o.detail, now_us).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn note_attempt(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        update_action(&mut tx, id, action_status::PENDING, attempts, error, now_us).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn actions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRow>, StoreError> {
        let rows = self.newest("actions", ACTION_COLUMNS, vm_id, limit).await?;
        Ok(rows.iter().map(action_row).collect())
    }

    async fn transitions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Transition>, StoreError> {
        const COLS: &str = "id, vm_id, from_state, to_state, cause, event_id, at_us";
        let rows = self.newest("vm_transitions", COLS, vm_id, limit).await?;
        Ok(rows
            .iter()
            .map(|r| Transition {
                id: r.get(0),
                vm_id: r.get(1),
                from: r.get(2),
                to: r.get(3),
                cause: r.get(4),
                event_id: r.get(5),
                at_us: r.get(6),
            })
            .collect())
    }

    async fn upsert_vms(
        &self,
        appliance_id: &str,
        vms: &[VmInfo],
        now_us: i64,
    ) -> Result<(), StoreError> {
        if vms.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for info in vms {
            let mut vm = load_vm(&mut tx, &info.vm_id)
                .await?
                .unwrap_or_else(|| new_vm(&info.vm_id));
            vm.vm = Some(info.clone());
            vm.appliance_id = appliance_id.to_string();
            vm.last_seen_us = now_us;
            save_vm(&mut tx, &vm).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(filter.limit.max(1)).unwrap_or(i64::MAX);
        let rows = match &filter.vm_id {
            Some(vm) => sqlx::query(
                "SELECT payload, received_at_us FROM events WHERE vm_id = ? AND received_at_us >= ?
                     ORDER BY received_at_us DESC, rowid DESC LIMIT ?",
            )
            .bind(vm)
            .bind(filter.since_us)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(
                    "SELECT payload, received_at_us FROM events WHERE received_at_us >= ?
                     ORDER BY received_at_us DESC, rowid DESC LIMIT ?",
                )
                .bind(filter.since_us)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(StoredEvent {
                    event: Some(decode::<Event>("event", r.get::<&[u8], _>(0))?),
                    received_at_us: r.get(1),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    async fn vms(&self) -> Result<Vec<VmState>, StoreError> {
        let rows = sqlx::query("SELECT vm_id, payload FROM vms ORDER BY vm_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| decode::<VmState>(r.get::<&str, _>(0), r.get::<&[u8], _>(1)))
            .collect()
    }

    async fn vm(&self, vm_id: &str) -> Result<Option<VmState>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_vm(&mut conn, vm_id).await
    }

    async fn put_vm(&self, vm: &VmState) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        save_vm(&mut conn, vm).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuarantineConfig;

    fn rules() -> Rules {
        Rules {
            policy: QuarantineConfig::default(),
            actions: vec!["nsx".into(), "webhook".into()],
        }
    }

    fn detection(id: &str, vm: &str) -> Event {
        Event {
            event_id: id.into(),
            kind: EventKind::Detection as i32,
            vm_id: vm.into(),
            appliance_id: "a".into(),
            signatures: vec!["Eicar".into()],
            detected_at_us: 10,
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn one_quarantine_per_outbreak_on_a_vm_and_replays_change_nothing() {
        let store = SqliteStore::open(Path::new(":memory:")).await.unwrap();
        let evs = [detection("e1", "vm"), detection("e2", "vm")];
        let out = store.insert_events(&evs, 100, &rules()).await.unwrap();
        assert_eq!(out.stored, [Stored::New, Stored::New]);
        assert_eq!(out.queued.len(), 2, "one row per configured action");
        assert!(out.queued.iter().all(|r| r.op == "tag"));
        let again = store.insert_events(&evs, 200, &rules()).await.unwrap();
        assert!(again.queued.is_empty());
        assert_eq!(store.transitions(Some("vm"), 10).await.unwrap().len(), 1);
        assert_eq!(store.pending_actions().await.unwrap().len(), 2);

        let applied = ActionOutcome {
            applied: true,
            attempts: 1,
            detail: "applied".into(),
        };
        store
            .finish_actions(&[(out.queued[0].id, applied.clone())], 300)
            .await
            .unwrap();
        let vm = store.vm("vm").await.unwrap().unwrap();
        assert!(!vm.tagged, "tagged once every action applied");
        assert!(
            vm.last_action
                .contains("nsx applied (1 attempt); webhook pending")
        );
        store
            .finish_actions(&[(out.queued[1].id, applied.clone())], 400)
            .await
            .unwrap();
        let vm = store.vm("vm").await.unwrap().unwrap();
        assert!(vm.tagged);
        assert_eq!((vm.state.as_str(), vm.detections), ("infected", 2));
        assert!(store.pending_actions().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn operator_untag_queues_an_untag_and_cleans() {
        let store = SqliteStore::open(Path::new(":memory:")).await.unwrap();
        store
            .insert_events(&[detection("e1", "vm")], 100, &rules())
            .await
            .unwrap();
        let (vm, queued) = store
            .apply_override("vm", Override::Untag, &rules(), 200)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(vm.state, "clean");
        assert_eq!(queued.len(), 2);
        assert!(queued.iter().all(|r| r.op == "untag"));
        assert!(
            store
                .apply_override("nope", Override::Untag, &rules(), 200)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// Heartbeats (read, then write), detections and operator overrides
    /// arrive on different connections at once. None of them may fail with
    /// "database is locked": each write transaction waits for the lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_on_a_fresh_file_never_see_a_locked_database() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..3 {
            let store = SqliteStore::open(&dir.path().join(format!("m{round}.sqlite")))
                .await
                .unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..8 {
                let store = store.clone();
                tasks.spawn(async move {
                    for i in 0..25 {
                        let vm = format!("vm-{}", i % 3);
                        match w % 3 {
                            0 => {
                                let info = VmInfo {
                                    vm_id: vm,
                                    ..VmInfo::default()
                                };
                                store.upsert_vms("a", &[info], i).await.unwrap();
                            }
                            1 => {
                                let ev = detection(&format!("e-{w}-{i}"), &vm);
                                store.insert_events(&[ev], i, &rules()).await.unwrap();
                            }
                            _ => {
                                store
                                    .apply_override(&vm, Override::Untag, &rules(), i)
                                    .await
                                    .unwrap();
                            }
                        }
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            store.close().await;
        }
    }
}
