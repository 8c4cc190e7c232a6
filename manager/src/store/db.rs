//! The [`Store`]: the SQLite database, opened and migrated to this build's
//! schema (`manager/migrations/`, embedded by `sqlx::migrate!`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::store::records::StoreError;

/// The schema, version by version. A store is brought up to the newest
/// version when it opens; one written by a newer build (a version this
/// build does not know) is refused.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Where the manager keeps events, the VM inventory, state transitions and
/// the tagging queue: a bundled SQLite through sqlx (no system library).
/// Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: sqlx::SqlitePool,
}

/// Names the one migration failure an operator can meet by mistake: a
/// store from a newer release.
fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(found) => StoreError::NewerSchema {
            found,
            known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        },
        other => StoreError::Migrate(other),
    }
}

/// Makes the store's file (and its directory, when it is made here)
/// readable by its owner only, before SQLite opens it: it holds the CA's
/// keys and the clone key. SQLite gives its `-wal` and `-shm` files the
/// database file's mode; those of a store made by an earlier release, which
/// left it world-readable, are closed too.
fn make_private(path: &Path) -> Result<(), sqlx::Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let bad = |what: &Path, e: std::io::Error| {
        sqlx::Error::Configuration(format!("cannot make {} private: {e}", what.display()).into())
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| bad(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| bad(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if let Ok(meta) = std::fs::symlink_metadata(file)
            && meta.is_file()
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| bad(file, e))?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store at `path` and migrates it to this
    /// build's schema; `:memory:` keeps it in memory (for tests and
    /// trials).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created, or its schema cannot be
    /// migrated (for example, it was written by a newer giva-manager).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let memory = path.as_os_str() == ":memory:";
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            make_private(path)?;
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        }
        .busy_timeout(Duration::from_secs(10));
        if !memory {
            // Switch a new file to WAL and migrate it on one connection
            // before the pool opens more. Pool connections that race to
            // switch the journal mode of a fresh file can get SQLITE_BUSY
            // without the busy handler ever being consulted.
            let mut setup = options.connect().await?;
            MIGRATOR
                .run_direct(&mut setup)
                .await
                .map_err(migrate_error)?;
            setup.close().await?;
        }
        // In-memory databases live per connection: keep exactly one.
        let max = if memory { 1 } else { 4 };
        let pool = giva_runtime::sqlite::clean_on_release(SqlitePoolOptions::new(), memory)
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        if memory {
            MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        }
        Ok(Store { pool })
    }

    /// Begins a write transaction. `BEGIN IMMEDIATE` takes the write lock
    /// up front, waiting on the busy handler: a deferred transaction that
    /// reads and then writes fails at once with SQLITE_BUSY when another
    /// connection committed in between.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The newest `limit` rows (at least one) of `table` (by `id`), of one
    /// VM or of all, oldest first. `table` and `cols` are constants.
    pub(crate) async fn newest(
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
