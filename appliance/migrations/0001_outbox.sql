-- The outbox as first released. Idempotent, so that an outbox created
-- before migrations existed (same table, no _sqlx_migrations) is adopted
-- as version 1 without a change.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    urgent INTEGER NOT NULL,
    payload BLOB NOT NULL
);
