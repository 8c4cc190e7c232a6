//! The outbox: events the manager has not acknowledged yet, kept durably.
//!
//! A detection is committed to SQLite (WAL, `synchronous=FULL`, so the
//! commit is on disk) before the guest gets its `DENY`. An event leaves the
//! outbox only when the manager acknowledges its id, so it survives manager
//! outages and appliance crashes. The outbox is bounded by a byte quota:
//! past it, low-value events are dropped first (counted and logged), and
//! prompt events ([`is_prompt`]: detections, completed full scans) are
//! always kept, even over the quota.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use giva_proto::manager::{Event, EventKind};
use prost::Message;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tracing::{error, warn};

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The database failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox's schema could not be brought up to date.
    #[error("outbox schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The outbox was written by a newer giva, with a schema version this
    /// build does not know.
    #[error(
        "the outbox was written by a newer giva (schema version {found}; this build knows up to {known})"
    )]
    NewerSchema {
        /// The unknown version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The directory could not be created.
    #[error("cannot create the outbox directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The outbox's schema, version by version (`appliance/migrations/`). An
/// outbox is brought up to the newest version when it opens; one written
/// by a newer build is refused.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Names the one migration failure an operator can meet by mistake: an
/// outbox from a newer release.
fn migrate_error(e: sqlx::migrate::MigrateError) -> OutboxError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(found) => OutboxError::NewerSchema {
            found,
            known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        },
        other => OutboxError::Migrate(other),
    }
}

/// What became of an event given to [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Committed to disk, after evicting this many low-value events to stay
    /// within the quota.
    Stored {
        /// Low-value events dropped to make room.
        evicted: u64,
    },
    /// A low-value event dropped because the quota is reached.
    Dropped,
    /// The disk write failed; the event is kept in memory only.
    InMemoryOnly,
}

/// The durable outbox.
#[derive(Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
    /// Writes go through one task that commits every write waiting at that
    /// moment in one transaction (group commit): one fsync for many events.
    writer: mpsc::Sender<Write>,
}

#[derive(Debug)]
struct Inner {
    pool: sqlx::SqlitePool,
    quota_bytes: i64,
    bytes: AtomicI64,
    /// Events whose disk write failed: still delivered, but not durable.
    fallback: Mutex<VecDeque<Event>>,
    /// Events in the dead-letter table.
    dead: AtomicI64,
    /// The disk space set aside for a full disk.
    reserve: Mutex<Reserve>,
    /// A damaged outbox file moved aside at start, and what was said of
    /// it: reported until an operator removes the file.
    damaged: Mutex<Option<(PathBuf, String)>>,
    /// The database file (`None` in memory).
    path: Option<PathBuf>,
}

/// Disk space set aside beside the outbox: a file of zeros, removed to
/// give its space back when the outbox's disk is full.
#[derive(Debug, Default)]
struct Reserve {
    /// The file (`None`: no reserve configured, or an outbox in memory).
    file: Option<PathBuf>,
    bytes: u64,
    /// The file is there, holding its space.
    present: bool,
    /// Why it is missing: used for a full disk, or not creatable.
    missing: Option<String>,
    /// When it was last tried again (at most once a minute).
    tried: Option<std::time::Instant>,
}

impl Reserve {
    /// Writes the file (real blocks, not a sparse file); true on success.
    fn create(&mut self) -> bool {
        let Some(file) = &self.file else { return false };
        self.tried = Some(std::time::Instant::now());
        let result = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(file)?;
            let block = vec![0u8; 1 << 20];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                f.write_all(&block[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        match result {
            Ok(()) => {
                self.present = true;
                self.missing = None;
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(file);
                self.present = false;
                if self.missing.is_none() {
                    self.missing = Some(format!(
                        "no disk space could be set aside for the outbox ({} bytes at {}): {e}",
                        self.bytes,
                        file.display()
                    ));
                }
                false
            }
        }
    }

    /// Removes the file, giving its space back; true if it was there.
    fn release(&mut self) -> bool {
        let Some(file) = &self.file else { return false };
        if !self.present {
            return false;
        }
        self.present = false;
        self.missing = Some(format!(
            "the outbox's disk filled up: the {} bytes set aside for it ({}) were used; free space on that disk",
            self.bytes,
            file.display()
        ));
        std::fs::remove_file(file).is_ok()
    }
}

type Write = (Event, oneshot::Sender<Pushed>);

/// Most writes committed in one transaction.
const GROUP_COMMIT_MAX: usize = 512;

/// A write handed to the outbox; await it to know it is on disk.
#[derive(Debug)]
pub struct PendingPush(Option<oneshot::Receiver<Pushed>>);

impl PendingPush {
    /// Waits until the write is committed (or has failed over to memory).
    pub async fn committed(self) -> Pushed {
        match self.0 {
            Some(rx) => rx.await.unwrap_or(Pushed::InMemoryOnly),
            None => Pushed::InMemoryOnly,
        }
    }
}

/// True for events that are sent at once and never dropped for the quota:
/// detections, and the records of ordered full scans (which can release a
/// quarantine). The record of a scan a guest started proves nothing, and
/// waits for the heartbeat like any low-value event.
pub fn is_prompt(ev: &Event) -> bool {
    ev.kind == EventKind::Detection as i32
        || (ev.kind == EventKind::ScanCompleted as i32
            && ev
                .scan
                .as_ref()
                .is_some_and(|s| matches!(s.ordered_by.as_str(), "manager" | "schedule")))
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` (`:memory:` for a volatile
    /// one), bounded by `quota_bytes` of event payload.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be created or opened.
    pub async fn open(path: &Path, quota_bytes: u64) -> Result<Self, OutboxError> {
        let memory = path.as_os_str() == ":memory:";
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| OutboxError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        }
        .busy_timeout(Duration::from_secs(10));
        // One connection: writes are serialized anyway, and an in-memory
        // database lives per connection.
        let pool = giva_runtime::sqlite::clean_on_release(SqlitePoolOptions::new(), memory)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        let bytes: i64 = sqlx::query("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox")
            .fetch_one(&pool)
            .await?
            .get(0);
        let dead: i64 = sqlx::query("SELECT COUNT(*) FROM dead_letter")
            .fetch_one(&pool)
            .await?
            .get(0);
        let inner = Arc::new(Inner {
            pool,
            quota_bytes: i64::try_from(quota_bytes).unwrap_or(i64::MAX),
            bytes: AtomicI64::new(bytes),
            fallback: Mutex::new(VecDeque::new()),
            dead: AtomicI64::new(dead),
            reserve: Mutex::default(),
            damaged: Mutex::default(),
            path: (!memory).then(|| path.to_path_buf()),
        });
        let (writer, rx) = mpsc::channel(GROUP_COMMIT_MAX * 4);
        tokio::spawn(write_loop(inner.clone(), rx));
        Ok(Outbox { inner, writer })
    }

    fn fallback(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.inner.fallback()
    }

    /// Sets `bytes` of disk aside beside the outbox file
    /// (`<outbox>.reserve`), given back when the disk is full so that
    /// detections can still be committed. A reserve that cannot be made is
    /// reported in [`problems`](Self::problems). Nothing for an outbox in
    /// memory, or with `bytes` 0.
    pub fn with_reserve(self, bytes: u64) -> Self {
        if let Some(path) = self.inner.path.as_ref().filter(|_| bytes > 0) {
            let mut file = path.clone().into_os_string();
            file.push(".reserve");
            let mut r = self.inner.reserve();
            r.file = Some(PathBuf::from(file));
            r.bytes = bytes;
            if !r.create()
                && let Some(why) = &r.missing
            {
                warn!("{why}");
            }
        }
        self
    }

    /// What is wrong with the outbox, for health checks and heartbeats:
    /// events held only in memory, its reserve used or missing.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let n = self.fallback().len();
        if n > 0 {
            out.push(format!(
                "{n} event(s) could not be written to the outbox and are held in memory only"
            ));
        }
        out.extend(self.inner.reserve().missing.clone());
        let damaged = self.inner.damaged().clone();
        if let Some((file, what)) = damaged.filter(|(f, _)| f.exists()) {
            out.push(format!(
                "{what}; it was moved aside to {} (remove that file once it is dealt with)",
                file.display()
            ));
        }
        out
    }

    /// Opens the outbox at `path` as [`open`](Self::open) does; but an
    /// outbox file that is empty (0 bytes) or that cannot be opened is
    /// moved aside, never deleted, and a fresh outbox started in its
    /// place, so that guests stay protected. The events that can still be
    /// read from the damaged file are replayed into the new one. The
    /// outbox then reports the damage in its [`problems`](Self::problems)
    /// until an operator removes the moved file. An outbox written by a
    /// newer giva is still refused.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open), when even a fresh outbox cannot be
    /// made, or the outbox is from a newer giva.
    pub async fn open_or_recover(path: &Path, quota_bytes: u64) -> Result<Self, OutboxError> {
        let memory = path.as_os_str() == ":memory:";
        let empty = !memory && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
        let why = if empty {
            "the outbox file was empty (0 bytes)".to_string()
        } else {
            match Self::open(path, quota_bytes).await {
                Ok(o) => return Ok(o),
                Err(e @ (OutboxError::NewerSchema { .. } | OutboxError::Directory { .. })) => {
                    return Err(e);
                }
                Err(e) if memory => return Err(e),
                Err(e) => format!("the outbox file could not be opened ({e})"),
            }
        };
        let stamp = giva_proto::now_us() / 1_000_000;
        let mut aside = path.to_path_buf().into_os_string();
        aside.push(format!(".damaged-{stamp}"));
        let aside = PathBuf::from(aside);
        for suffix in ["", "-wal", "-shm"] {
            let mut from = path.to_path_buf().into_os_string();
            from.push(suffix);
            let mut to = aside.clone().into_os_string();
            to.push(suffix);
            if std::path::Path::new(&from).exists() {
                std::fs::rename(&from, &to).map_err(|source| OutboxError::Directory {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        error!(%why, moved_to = %aside.display(), "damaged outbox moved aside; starting a fresh one");
        let outbox = Self::open(path, quota_bytes).await?;
        let recovered = outbox.replay_from(&aside).await;
        let what = if recovered > 0 {
            format!("{why}; {recovered} event(s) were recovered from it")
        } else {
            why
        };
        *outbox.inner.damaged() = Some((aside, what));
        Ok(outbox)
    }

    /// Copies the events that can still be read from the outbox file
    /// `damaged` (read-only, best effort) into this one; how many.
    async fn replay_from(&self, damaged: &Path) -> usize {
        let options = SqliteConnectOptions::new()
            .filename(damaged)
            .read_only(true)
            .immutable(true);
        let Ok(mut conn) = sqlx::ConnectOptions::connect(&options).await else {
            return 0;
        };
        let rows = sqlx::query("SELECT payload FROM outbox ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
        let _ = sqlx::Connection::close(conn).await;
        let mut n = 0;
        for r in rows {
            if let Ok(ev) = Event::decode(r.get::<&[u8], _>(0))
                && matches!(self.push(&ev).await, Pushed::Stored { .. })
            {
                n += 1;
            }
        }
        n
    }

    /// At shutdown: writes the events held only in memory into the outbox,
    /// in the space of its reserve if need be. What still cannot be
    /// written is logged in full at ERROR, so that it is in the log.
    pub async fn persist_fallback(&self) {
        let held: Vec<Event> = self.fallback().iter().cloned().collect();
        if held.is_empty() {
            return;
        }
        self.inner.reserve().release();
        let refs: Vec<&Event> = held.iter().collect();
        match self.inner.write_batch(&refs).await {
            Ok(_) => {
                let ids: Vec<&str> = held.iter().map(|e| e.event_id.as_str()).collect();
                self.fallback()
                    .retain(|e| !ids.contains(&e.event_id.as_str()));
                warn!(
                    events = held.len(),
                    "events held only in memory were written to the outbox at shutdown, in the space set aside for it"
                );
            }
            Err(e) => {
                for ev in &held {
                    error!(error = %e, event_id = %ev.event_id, vm_id = %ev.vm_id, path = %ev.path, kind = ev.kind, detail = %ev.detail, "an event could not be written to the outbox at shutdown: it is lost unless the manager got it");
                }
            }
        }
    }

    /// Hands an event to the writer, in order; await the result to know it
    /// is on disk.
    pub async fn enqueue(&self, event: Event) -> PendingPush {
        let (tx, rx) = oneshot::channel();
        match self.writer.send((event, tx)).await {
            Ok(()) => PendingPush(Some(rx)),
            Err(mpsc::error::SendError((event, _))) => {
                error!(event_id = %event.event_id, "outbox writer gone; keeping the event in memory");
                self.fallback().push_back(event);
                PendingPush(None)
            }
        }
    }

    /// Stores an event durably. Returns after the commit reached the disk,
    /// or says why it did not.
    pub async fn push(&self, event: &Event) -> Pushed {
        self.enqueue(event.clone()).await.committed().await
    }
}

/// Commits writes in groups: everything waiting when a transaction starts
/// goes into it.
async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Write>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let events: Vec<&Event> = batch.iter().map(|(e, _)| e).collect();
        let mut written = inner.write_batch(&events).await;
        if written.is_err() && inner.reserve().release() {
            // The disk is full: the reserve's space is given back, and the
            // batch tried again.
            error!("the outbox's disk is full: using the space set aside for it");
            written = inner.write_batch(&events).await;
        }
        if written.is_ok() {
            inner.restore_reserve();
        }
        match written {
            Ok(results) => {
                for ((_, reply), pushed) in batch.into_iter().zip(results) {
                    let _ = reply.send(pushed);
                }
            }
            Err(e) => {
                error!(error = %e, events = batch.len(), "outbox write failed; keeping the events in memory");
                for (event, reply) in batch {
                    inner.fallback().push_back(event);
                    let _ = reply.send(Pushed::InMemoryOnly);
                }
            }
        }
    }
}

impl Inner {
    fn fallback(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.fallback.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self) -> std::sync::MutexGuard<'_, Reserve> {
        self.reserve.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn damaged(&self) -> std::sync::MutexGuard<'_, Option<(PathBuf, String)>> {
        self.damaged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the reserve again once it was used (or could not be made),
    /// trying at most once a minute.
    fn restore_reserve(&self) {
        let mut r = self.reserve();
        if r.file.is_none()
            || r.present
            || r.tried
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60))
        {
            return;
        }
        if r.create() {
            tracing::info!("the outbox's reserve of disk space is made again");
        }
    }

    /// Writes `events` in one transaction, applying the quota to each.
    async fn write_batch(&self, events: &[&Event]) -> Result<Vec<Pushed>, OutboxError> {
        let mut tx = self.pool.begin().await?;
        let start = self.bytes.load(Ordering::Relaxed);
        let mut delta = 0i64;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let (pushed, d) = self.write_one(&mut tx, event, start + delta).await?;
            delta += d;
            out.push(pushed);
        }
        tx.commit().await?;
        // Acknowledgements may have freed bytes meanwhile: add, never store.
        self.bytes.fetch_add(delta, Ordering::Relaxed);
        Ok(out)
    }

    /// Writes one event inside a transaction, given the payload bytes stored
    /// so far; returns what happened and the change in stored bytes.
    async fn write_one(
        &self,
        tx: &mut sqlx::SqliteConnection,
        event: &Event,
        bytes: i64,
    ) -> Result<(Pushed, i64), OutboxError> {
        let payload = event.encode_to_vec();
        let len = payload.len() as i64;
        let urgent = is_prompt(event);
        let mut freed = 0i64;
        let mut dropped = 0u64;
        if bytes + len > self.quota_bytes {
            if !urgent {
                warn!(event_id = %event.event_id, "outbox quota reached: dropping a low-value event");
                return Ok((Pushed::Dropped, 0));
            }
            // Make room by dropping the oldest low-value events.
            let rows = sqlx::query(
                "SELECT seq, LENGTH(payload) FROM outbox WHERE urgent = 0 ORDER BY seq",
            )
            .fetch_all(&mut *tx)
            .await?;
            let need = bytes + len - self.quota_bytes;
            for r in rows {
                if freed >= need {
                    break;
                }
                let seq: i64 = r.get(0);
                let n: i64 = r.get(1);
                sqlx::query("DELETE FROM outbox WHERE seq = ?")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                freed += n;
                dropped += 1;
            }
            if dropped > 0 {
                warn!(
                    dropped,
                    "outbox quota reached: dropped low-value events to keep a detection"
                );
            } else {
                warn!("outbox quota reached: keeping a detection over the quota");
            }
        }
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO outbox (event_id, urgent, payload) VALUES (?, ?, ?)",
        )
        .bind(&event.event_id)
        .bind(urgent)
        .bind(payload)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let added = if inserted == 1 { len } else { 0 };
        Ok((Pushed::Stored { evicted: dropped }, added - freed))
    }
}

impl Outbox {
    /// The oldest pending events (only detections with `urgent_only`), at
    /// most `limit`, in the order they were stored.
    pub async fn pending(&self, urgent_only: bool, limit: usize) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .fallback()
            .iter()
            .filter(|e| !urgent_only || is_prompt(e))
            .take(limit)
            .cloned()
            .collect();
        let rest = i64::try_from(limit.saturating_sub(out.len())).unwrap_or(i64::MAX);
        let sql = if urgent_only {
            "SELECT seq, payload FROM outbox WHERE urgent = 1 ORDER BY seq LIMIT ?"
        } else {
            "SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?"
        };
        let mut corrupt = Vec::new();
        match sqlx::query(sql)
            .bind(rest)
            .fetch_all(&self.inner.pool)
            .await
        {
            Ok(rows) => {
                for r in rows {
                    match Event::decode(r.get::<&[u8], _>(1)) {
                        Ok(ev) => out.push(ev),
                        Err(e) => corrupt.push((r.get::<i64, _>(0), e.to_string())),
                    }
                }
            }
            Err(e) => error!(error = %e, "cannot read the outbox"),
        }
        // A record that no longer decodes can never be sent: it goes to the
        // dead-letter table rather than stay at the head of the queue.
        for (seq, why) in corrupt {
            self.bury(
                "seq",
                seq.to_string(),
                &format!("the record does not decode: {why}"),
            )
            .await;
        }
        out
    }

    /// Moves the event `event_id`, which the manager refuses for good, to
    /// the dead-letter table.
    pub async fn set_aside(&self, event_id: &str, reason: &str) {
        self.fallback().retain(|e| e.event_id != event_id);
        self.bury("event_id", event_id.to_string(), reason).await;
    }

    /// Moves the outbox row whose `column` (`seq` or `event_id`) is `key`
    /// to the dead-letter table, with `reason`; logs it at ERROR.
    async fn bury(&self, column: &str, key: String, reason: &str) {
        let moved: Result<Option<i64>, sqlx::Error> = async {
            let mut tx = self.inner.pool.begin().await?;
            sqlx::query(&format!(
                "INSERT INTO dead_letter (seq, event_id, payload, reason, moved_at_us)
                 SELECT seq, event_id, payload, ?, ? FROM outbox WHERE {column} = ?"
            ))
            .bind(reason)
            .bind(giva_proto::now_us())
            .bind(&key)
            .execute(&mut *tx)
            .await?;
            let freed = sqlx::query(&format!(
                "DELETE FROM outbox WHERE {column} = ? RETURNING LENGTH(payload)"
            ))
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get::<i64, _>(0));
            tx.commit().await?;
            Ok(freed)
        }
        .await;
        match moved {
            Ok(Some(freed)) => {
                self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
                self.inner.dead.fetch_add(1, Ordering::Relaxed);
                error!(%column, %key, %reason, "an outbox event can never be delivered; it is kept in the dead-letter table");
            }
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, %column, %key, "cannot move an undeliverable event to the dead-letter table")
            }
        }
    }

    /// Events in the dead-letter table: never delivered, kept for an
    /// operator.
    pub fn dead_letters(&self) -> u64 {
        u64::try_from(self.inner.dead.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Removes acknowledged events; false if they could not be removed
    /// (they would be sent again: the caller should back off).
    pub async fn ack(&self, ids: &[String]) -> bool {
        if ids.is_empty() {
            return true;
        }
        self.fallback().retain(|e| !ids.contains(&e.event_id));
        let result: Result<i64, sqlx::Error> = async {
            let mut tx = self.inner.pool.begin().await?;
            let mut freed = 0i64;
            for id in ids {
                let row =
                    sqlx::query("DELETE FROM outbox WHERE event_id = ? RETURNING LENGTH(payload)")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(r) = row {
                    freed += r.get::<i64, _>(0);
                }
            }
            tx.commit().await?;
            Ok(freed)
        }
        .await;
        match result {
            Ok(freed) => {
                self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
                true
            }
            Err(e) => {
                error!(error = %e, "cannot remove acknowledged events; they will be sent again");
                false
            }
        }
    }

    /// When the oldest pending prompt event (a detection or a completed
    /// full scan) happened, in microseconds since the epoch.
    pub async fn oldest_prompt_us(&self) -> Option<i64> {
        let in_memory = self
            .fallback()
            .iter()
            .filter(|e| is_prompt(e))
            .map(|e| e.detected_at_us)
            .min();
        let on_disk =
            sqlx::query("SELECT payload FROM outbox WHERE urgent = 1 ORDER BY seq LIMIT 1")
                .fetch_optional(&self.inner.pool)
                .await
                .ok()
                .flatten()
                .and_then(|r| Event::decode(r.get::<&[u8], _>(0)).ok())
                .map(|e| e.detected_at_us);
        in_memory.into_iter().chain(on_disk).min()
    }

    /// Number of events pending.
    pub async fn len(&self) -> u64 {
        let on_disk: i64 = match sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.inner.pool)
            .await
        {
            Ok(r) => r.get(0),
            Err(_) => 0,
        };
        u64::try_from(on_disk).unwrap_or(0) + self.fallback().len() as u64
    }

    /// True when nothing is pending.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Payload bytes on disk.
    pub fn bytes(&self) -> u64 {
        u64::try_from(self.inner.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Closes the database.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions, Connection};

    use super::*;

    async fn raw(path: &Path) -> sqlx::SqliteConnection {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap()
    }

    fn detection(id: &str) -> Event {
        Event {
            event_id: id.into(),
            kind: EventKind::Detection as i32,
            vm_id: "vm-1".into(),
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn an_outbox_from_before_versioned_schemas_keeps_its_pending_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let mut conn = raw(&path).await;
        // The table as the previous release created it, with no
        // _sqlx_migrations, holding a detection not yet acknowledged.
        sqlx::query(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
             event_id TEXT NOT NULL UNIQUE, urgent INTEGER NOT NULL, payload BLOB NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("INSERT INTO outbox (event_id, urgent, payload) VALUES ('d1', 1, ?)")
            .bind(detection("d1").encode_to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let outbox = Outbox::open(&path, 1 << 20)
            .await
            .expect("the old outbox opens");
        let pending = outbox.pending(true, 10).await;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event_id, "d1");
        assert!(outbox.bytes() > 0, "its bytes count against the quota");
        outbox.close().await;
        let mut conn = raw(&path).await;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(versions, [1, 2]);
    }

    /// A record that no longer decodes cannot stay at the head of the
    /// queue: it moves to the dead-letter table, kept and counted, and the
    /// events behind it go on; an event the manager refuses goes there too.
    #[tokio::test]
    async fn undeliverable_events_go_to_the_dead_letter_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let outbox = Outbox::open(&path, 1 << 20).await.unwrap();
        outbox.push(&detection("d1")).await;
        outbox.close().await;
        let mut conn = raw(&path).await;
        sqlx::query(
            "INSERT INTO outbox (event_id, urgent, payload) VALUES ('bad', 1, x'ffffffff')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let outbox = Outbox::open(&path, 1 << 20).await.unwrap();
        outbox.push(&detection("d2")).await;
        let ids = |v: Vec<Event>| v.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
        assert_eq!(ids(outbox.pending(true, 10).await), ["d1", "d2"]);
        assert_eq!(outbox.dead_letters(), 1);
        assert_eq!(outbox.len().await, 2);
        outbox.set_aside("d1", "the manager refuses it").await;
        assert_eq!(ids(outbox.pending(true, 10).await), ["d2"]);
        assert_eq!(outbox.dead_letters(), 2);
        // Acknowledging works, and reports when it cannot.
        assert!(outbox.ack(&["d2".to_string()]).await);
        assert!(outbox.is_empty().await);
        outbox.push(&detection("d3")).await;
        outbox.close().await;
        assert!(!outbox.ack(&["d3".to_string()]).await);

        // Kept across a restart, with their reasons.
        let outbox = Outbox::open(&path, 1 << 20).await.unwrap();
        assert_eq!(outbox.dead_letters(), 2);
        outbox.close().await;
        let mut conn = raw(&path).await;
        let reasons: Vec<String> =
            sqlx::query_scalar("SELECT reason FROM dead_letter ORDER BY seq")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].contains("manager refuses"), "{reasons:?}");
        assert!(reasons[1].contains("does not decode"), "{reasons:?}");
    }

    /// The files `outbox.sqlite.damaged-*` beside `path`.
    fn moved_aside(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.to_string_lossy().contains(".damaged-")
                    && !p.to_string_lossy().ends_with("-shm")
                    && !p.to_string_lossy().ends_with("-wal")
            })
            .collect()
    }

    /// An empty or unreadable outbox file is moved aside (kept), a fresh
    /// outbox starts, what can be read from the old file is replayed, and
    /// the damage is reported until the moved file is removed.
    #[tokio::test]
    async fn a_damaged_outbox_is_moved_aside_and_what_it_held_replayed() {
        // 0 bytes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        std::fs::write(&path, b"").unwrap();
        let outbox = Outbox::open_or_recover(&path, 1 << 20).await.unwrap();
        let problems = outbox.problems();
        assert!(problems.iter().any(|p| p.contains("empty")), "{problems:?}");
        let aside = moved_aside(dir.path());
        assert_eq!(aside.len(), 1, "{aside:?}");
        outbox.push(&detection("d1")).await;
        assert_eq!(outbox.len().await, 1);
        std::fs::remove_file(&aside[0]).unwrap();
        assert!(outbox.problems().is_empty(), "{:?}", outbox.problems());
        outbox.close().await;

        // An outbox whose schema record no longer matches: it does not
        // open, but its events are read back.
        let mut conn = raw(&path).await;
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        assert!(Outbox::open(&path, 1 << 20).await.is_err());
        let outbox = Outbox::open_or_recover(&path, 1 << 20).await.unwrap();
        let pending: Vec<String> = outbox
            .pending(true, 10)
            .await
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(pending, ["d1"]);
        let problems = outbox.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("1 event(s) were recovered")),
            "{problems:?}"
        );
        outbox.close().await;

        // Not a database at all.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let outbox = Outbox::open_or_recover(&path, 1 << 20).await.unwrap();
        assert!(
            outbox
                .problems()
                .iter()
                .any(|p| p.contains("could not be opened")),
            "{:?}",
            outbox.problems()
        );
        assert_eq!(moved_aside(dir.path()).len(), 1);
        outbox.close().await;
    }

    #[tokio::test]
    async fn an_outbox_written_by_a_newer_giva_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        Outbox::open(&path, 1 << 20).await.unwrap().close().await;
        let mut conn = raw(&path).await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let err = Outbox::open(&path, 1 << 20).await.unwrap_err();
        assert!(
            err.to_string().contains("newer giva") && err.to_string().contains("9999"),
            "{err}"
        );
    }
}
