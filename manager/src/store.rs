//! Where the manager keeps events and the VM inventory.
//!
//! [`Store`] is the interface; [`SqliteStore`] is the embedded default (a
//! bundled SQLite through sqlx, no system library). Events are deduplicated
//! by `event_id`, so an appliance that replays an event after a lost
//! acknowledgement does not count it twice. A call returns only after its
//! transaction is committed, so an acknowledgement always follows the
//! commit.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use giva_proto::manager::{Event, EventKind, StoredEvent, VmInfo, VmState};
use prost::Message;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// VM states as shown to operators.
pub mod state {
    /// No open detection.
    pub const CLEAN: &str = "clean";
    /// A detection was recorded and the VM is (to be) quarantined.
    pub const INFECTED: &str = "infected";
    /// A full scan was requested to confirm the VM is clean.
    pub const SCAN_REQUESTED: &str = "scan_requested";
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
    /// Commits events that are new (by id) and updates their VMs, in one
    /// transaction. Returns, per event, whether it was new.
    async fn insert_events(
        &self,
        events: &[Event],
        received_at_us: i64,
    ) -> Result<Vec<Stored>, StoreError>;

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
        // In-memory databases live per connection: keep exactly one.
        let max = if memory { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        Ok(SqliteStore { pool })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_events(
        &self,
        events: &[Event],
        received_at_us: i64,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(events.len());
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
                out.push(Stored::Duplicate);
                continue;
            }
            out.push(Stored::New);
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
                vm.state = state::INFECTED.to_string();
            }
            save_vm(&mut tx, &vm).await?;
        }
        tx.commit().await?;
        Ok(out)
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
        let mut tx = self.pool.begin().await?;
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
