//! What giva's SQLite pools (the appliance's outbox, the manager's store)
//! share: [`clean_on_release`], which keeps a connection left inside a
//! transaction out of the pool.

use sqlx::sqlite::SqlitePoolOptions;

/// `options`, with a check on every connection given back to the pool: one
/// still inside a transaction is closed instead of reused. Not for an
/// in-memory database, which lives and dies with its connection: pass
/// `memory` and the options are returned as they are.
///
/// After a write fails (a full disk), SQLite may roll the transaction back
/// on its own; the driver's `ROLLBACK` then fails, and its count of open
/// transactions stays at one. On such a connection a later transaction is
/// only a savepoint: its "commit" reports success and is lost when the
/// connection closes (or, with a custom `BEGIN`, every later transaction
/// fails). A fresh connection starts clean.
pub fn clean_on_release(options: SqlitePoolOptions, memory: bool) -> SqlitePoolOptions {
    if memory {
        return options;
    }
    options.after_release(|conn, _| {
        Box::pin(async move {
            use sqlx::Connection;
            // The driver runs commands in order: a rollback queued when the
            // transaction was dropped has run once this has.
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            let clean = !conn.is_in_transaction();
            if !clean {
                tracing::warn!(
                    "a database connection was left inside a transaction after a failed write; it is closed, and a fresh one opened"
                );
            }
            Ok(clean)
        })
    })
}
