-- Full scans the manager ordered, and operators' exceptions for files a
-- scan may skip. A quarantined VM is released only by the clean record of
-- a scan that answers an open order (or the appliance's schedule).
CREATE TABLE scan_orders (
    order_id TEXT PRIMARY KEY,
    vm_id TEXT NOT NULL,
    appliance_id TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    -- The event whose record released the VM on this order ('' while open).
    used_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX scan_orders_by_vm ON scan_orders(vm_id, created_at_us);
CREATE TABLE scan_exceptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE UNIQUE INDEX scan_exceptions_by_file ON scan_exceptions(vm_id, path, sha256);
