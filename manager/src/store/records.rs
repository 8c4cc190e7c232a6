//! The records the store reads and writes, and how a store call fails.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::quarantine::{TagOp, VmState};

/// Where a tagging action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Queued or in flight; resumed after a restart.
    Pending,
    /// Applied.
    Applied,
    /// Failed on every attempt (`quarantine.max_attempts` reached).
    Failed,
    /// Not applied because a newer action for the same VM and action
    /// came before it was: the newer one sets the state that counts.
    Superseded,
    /// Cancelled by an operator.
    Cancelled,
}

impl ActionStatus {
    /// The name stored and shown: `pending`, `applied`, `failed`,
    /// `superseded` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Applied => "applied",
            ActionStatus::Failed => "failed",
            ActionStatus::Superseded => "superseded",
            ActionStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(ActionStatus::Pending),
            "applied" => Ok(ActionStatus::Applied),
            "failed" => Ok(ActionStatus::Failed),
            "superseded" => Ok(ActionStatus::Superseded),
            "cancelled" => Ok(ActionStatus::Cancelled),
            other => Err(StoreError::corrupt("action status", other)),
        }
    }
}

/// A stored VM state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Row id (increasing).
    pub id: i64,
    /// The VM.
    pub vm_id: String,
    /// State before.
    pub from: VmState,
    /// State after.
    pub to: VmState,
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
    /// Tag or untag.
    pub op: TagOp,
    /// Where the action stands.
    pub status: ActionStatus,
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
    /// Applied, failed, superseded (never pending or cancelled: a
    /// cancellation is written by
    /// [`Store::cancel_actions`](crate::store::Store::cancel_actions)).
    pub status: ActionStatus,
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
    /// The database's schema could not be brought up to date.
    #[error("schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was written by a newer giva-manager, with a schema
    /// version this build does not know.
    #[error(
        "the store was written by a newer giva-manager (schema version {found}; this build knows up to {known})"
    )]
    NewerSchema {
        /// The unknown version found in the store.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The event is new and was committed.
    New,
    /// The event was already stored; nothing changed.
    Duplicate,
    /// Another event, with a different content, holds this id already
    /// (an id pre-empted by a forger, or an appliance bug): this one was
    /// committed under `stored_as` and applied, never dropped as a
    /// duplicate.
    Collision {
        /// The id it was stored under.
        stored_as: String,
    },
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

impl From<crate::quarantine::UnknownState> for StoreError {
    fn from(e: crate::quarantine::UnknownState) -> Self {
        StoreError::corrupt("VM state", e.0)
    }
}

impl StoreError {
    /// A stored value of `what` that this build cannot read.
    pub(crate) fn corrupt(what: &str, value: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.to_string(),
            reason: format!("unknown value {value}"),
        }
    }
}
