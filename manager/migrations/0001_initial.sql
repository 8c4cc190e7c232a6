-- The manager's schema as first released. Every statement is idempotent,
-- so that a store created before migrations existed (same tables, no
-- _sqlx_migrations) is adopted as version 1 without a change.
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    appliance_id TEXT NOT NULL,
    vm_id TEXT NOT NULL,
    detected_at_us INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_received ON events(received_at_us);
CREATE INDEX IF NOT EXISTS events_by_vm ON events(vm_id, received_at_us);
CREATE TABLE IF NOT EXISTS vms (
    vm_id TEXT PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    vm_id TEXT PRIMARY KEY,
    tag_wanted INTEGER NOT NULL,
    infected_at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vm_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_vm ON vm_transitions(vm_id, id);
CREATE TABLE IF NOT EXISTS actions (
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
    updated_at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_status ON actions(status, id);
CREATE INDEX IF NOT EXISTS actions_by_vm ON actions(vm_id, status);
CREATE INDEX IF NOT EXISTS actions_by_transition ON actions(transition_id);
