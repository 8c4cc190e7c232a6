//! Where the manager keeps events and the VM inventory.
//!
//! [`Store`] is a bundled SQLite through sqlx (no system library), with a
//! versioned schema (`manager/migrations/`). Events are deduplicated by
//! `event_id`, so an appliance that replays an event after a lost
//! acknowledgement does not count it twice. A call returns only after its
//! transaction is committed, so an acknowledgement always follows the
//! commit.
//!
//! The quarantine is applied in the same transactions: an event that moves
//! a VM ([`crate::quarantine::on_event`]) adds a row to `vm_transitions`
//! and, when the move needs a tag or an untag, one pending row per
//! configured action to `actions`. Those rows are the durable queue of
//! [`crate::tagger::Tagger`]: an action is pending until it is applied or
//! has failed for good, so a restart resumes it.
//!
//! The parts: `db` (opening and migrating), `records` (what is read and
//! written), `vms` (the inventory), `events` (storing events and their
//! quarantine decisions), `actions` (the tagging queue and transitions),
//! `scans` (scan orders, exceptions, and the evidence a scan's record is
//! weighed against), `pki` (the CA's generations, its certificates and
//! enrollment tokens).

mod actions;
mod db;
mod events;
mod pki;
mod records;
mod scans;
mod vms;

#[cfg(test)]
mod tests;

pub use db::Store;
pub use pki::{CaGeneration, CertificateRecord, TokenUse};
pub use records::{
    ActionOutcome, ActionRow, ActionStatus, EventFilter, Ingested, Override, StoreError, Stored,
    Transition,
};
