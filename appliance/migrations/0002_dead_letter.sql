-- Events the appliance can never deliver: a record whose bytes no longer
-- decode, or an event the manager refuses for good. Kept here, never
-- deleted by giva, for an operator to read.
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    moved_at_us INTEGER NOT NULL
);
