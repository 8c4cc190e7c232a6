//! The quarantine state machine: which event moves a VM where, and whether
//! the move needs a tag or an untag.
//!
//! ```text
//!            detection (policy)             operator: scan
//!   clean ───────────────────────▶ infected ──────────────▶ scan_requested
//!     ▲          + tag                │                           │
//!     │                               │ clean full scan           │ clean full scan
//!     └───────────────────────────────┴───────────────────────────┘
//!                    + untag (if untag_after_clean_scan)
//!   operator: untag — any state ▶ clean, + untag
//! ```
//!
//! The functions here are pure: the store calls them inside the transaction
//! that commits the event, and records the [`Decision`] (a row in
//! `vm_transitions`, and a pending row per configured action in `actions`).

use std::fmt;
use std::str::FromStr;

use giva_proto::manager::{Action, Event, EventKind, VmState as VmRecord};
use serde::Serialize;

use crate::config::{QuarantineConfig, TagOn, ThreatLevel};

/// Where a VM stands in the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// No open detection.
    Clean,
    /// A detection was recorded and the VM is (to be) quarantined.
    Infected,
    /// A full scan was requested to confirm the VM is clean.
    ScanRequested,
}

impl VmState {
    /// The name stored and shown: `clean`, `infected` or `scan_requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Clean => "clean",
            VmState::Infected => "infected",
            VmState::ScanRequested => "scan_requested",
        }
    }

    /// The state of a VM record (a record the manager did not write, with
    /// an empty or unknown state, counts as clean).
    pub fn of(vm: &VmRecord) -> VmState {
        vm.state.parse().unwrap_or(VmState::Clean)
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`VmState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown VM state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for VmState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        match s {
            "clean" => Ok(VmState::Clean),
            "infected" => Ok(VmState::Infected),
            "scan_requested" => Ok(VmState::ScanRequested),
            other => Err(UnknownState(other.to_string())),
        }
    }
}

/// What the store needs to know to decide: the policy and the names of the
/// configured actions.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The policy.
    pub policy: QuarantineConfig,
    /// Configured action names, in order. Empty: tagging is recorded only.
    pub actions: Vec<String>,
}

/// A tag operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagOp {
    /// Add the quarantine tag.
    Tag,
    /// Remove it.
    Untag,
}

impl TagOp {
    /// "tag" or "untag".
    pub fn as_str(self) -> &'static str {
        match self {
            TagOp::Tag => "tag",
            TagOp::Untag => "untag",
        }
    }

    /// Parses [`TagOp::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tag" => Some(TagOp::Tag),
            "untag" => Some(TagOp::Untag),
            _ => None,
        }
    }
}

impl fmt::Display for TagOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the quarantine needs to remember about a VM beyond its record
/// (kept in the `quarantine` table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quarantine {
    /// The policy wants the tag on (set by a qualifying detection, cleared
    /// by a release).
    pub tag_wanted: bool,
    /// Appliance time of the detection that infected the VM; a full scan
    /// that finished before it does not release the VM.
    pub infected_at_us: i64,
    /// An action for this VM is still pending.
    pub action_pending: bool,
}

/// A state change to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The new state.
    pub to: VmState,
    /// Why, for people.
    pub cause: String,
    /// The tag operation to queue, if any.
    pub op: Option<TagOp>,
}

/// Threat level of a detection, from its signature names (the highest
/// wins): `PUA.*` is low, `Heuristics.*` medium, anything else high.
pub fn threat_level(signatures: &[String]) -> ThreatLevel {
    signatures
        .iter()
        .map(|s| {
            if s.starts_with("PUA.") {
                ThreatLevel::Low
            } else if s.starts_with("Heuristics.") {
                ThreatLevel::Medium
            } else {
                ThreatLevel::High
            }
        })
        .max()
        .unwrap_or(ThreatLevel::High)
}

/// Whether a detection quarantines its VM under `policy`.
pub fn qualifies(policy: &QuarantineConfig, ev: &Event) -> bool {
    if policy.tag_on == TagOn::Reported && ev.action != Action::Reported as i32 {
        return false;
    }
    policy.levels.contains(&threat_level(&ev.signatures))
}

/// The record of a full scan, if `ev` carries one.
pub fn scan_record(ev: &Event) -> Option<&giva_proto::manager::ScanSummary> {
    (ev.kind == EventKind::ScanCompleted as i32)
        .then_some(ev.scan.as_ref())
        .flatten()
}

/// What the manager's store knows against a full scan's record: each
/// problem found (an order that does not match, a detected path the scan
/// did not re-read, a skipped file without an exception).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanEvidence {
    /// Why the record does not release the VM; empty if nothing was found.
    pub problems: Vec<String>,
}

/// Why the full scan `record` (of event `ev`) does not release a VM whose
/// latest detection the appliance saw at `q.infected_at_us`; empty when it
/// does. The appliance's blockers come first, then what the manager checks
/// itself.
pub fn release_blockers(
    q: &Quarantine,
    record: &giva_proto::manager::ScanSummary,
    evidence: &ScanEvidence,
) -> Vec<String> {
    let mut why = record.blockers.clone();
    if why.is_empty() {
        // The appliance found nothing; check what its record says anyway.
        if !matches!(record.ordered_by.as_str(), "manager" | "schedule") {
            why.push(format!(
                "started by {:?}, not ordered by the manager or the schedule",
                record.ordered_by
            ));
        }
        if !record.completed {
            why.push("incomplete".into());
        }
        if record.files_infected > 0 || record.files_failed > 0 {
            why.push(format!(
                "{} infected, {} failed",
                record.files_infected, record.files_failed
            ));
        }
    }
    if record.started_at_us <= q.infected_at_us {
        why.push("it started before the latest detection".into());
    }
    why.extend(evidence.problems.iter().cloned());
    why
}

/// Decides what a newly stored event does to its VM; updates `q`. A full
/// scan's record needs the store's `evidence` about it.
pub fn on_event(
    policy: &QuarantineConfig,
    vm: &VmRecord,
    q: &mut Quarantine,
    ev: &Event,
    evidence: Option<&ScanEvidence>,
) -> Option<Decision> {
    if ev.kind == EventKind::Detection as i32 {
        if !qualifies(policy, ev) {
            return None;
        }
        let first = !q.tag_wanted;
        // A tag that failed earlier is tried again on the next detection.
        let retry = q.tag_wanted && !vm.tagged && !q.action_pending;
        q.tag_wanted = true;
        q.infected_at_us = q.infected_at_us.max(ev.detected_at_us);
        if VmState::of(vm) == VmState::Infected && !first && !retry {
            return None;
        }
        let what = if ev.signatures.is_empty() {
            "malware".to_string()
        } else {
            ev.signatures.join(",")
        };
        return Some(Decision {
            to: VmState::Infected,
            cause: format!("detection {what} in {} (event {})", ev.path, ev.event_id),
            op: (first || retry).then_some(TagOp::Tag),
        });
    }
    if let Some(record) = scan_record(ev) {
        if VmState::of(vm) == VmState::Clean || !policy.untag_after_clean_scan {
            return None;
        }
        let why = release_blockers(q, record, evidence.unwrap_or(&ScanEvidence::default()));
        if !why.is_empty() {
            // Recorded, so that the operator sees why the VM stays.
            return Some(Decision {
                to: VmState::of(vm),
                cause: format!(
                    "full scan (event {}) does not release: {}",
                    ev.event_id,
                    why.join("; ")
                ),
                op: None,
            });
        }
        let untag = q.tag_wanted || vm.tagged;
        q.tag_wanted = false;
        return Some(Decision {
            to: VmState::Clean,
            cause: format!(
                "clean full scan ordered by the {} (event {})",
                record.ordered_by, ev.event_id
            ),
            op: untag.then_some(TagOp::Untag),
        });
    }
    None
}

/// The operator removes the quarantine (`giva-manager untag`): always
/// clean, always an untag (the tag may have been set by hand).
pub fn on_untag(q: &mut Quarantine) -> Decision {
    q.tag_wanted = false;
    Decision {
        to: VmState::Clean,
        cause: "untagged by operator".into(),
        op: Some(TagOp::Untag),
    }
}

/// The operator asks for a full scan (`giva-manager scan`).
pub fn on_scan_request() -> Decision {
    Decision {
        to: VmState::ScanRequested,
        cause: "full scan requested by operator".into(),
        op: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use giva_proto::manager::ScanSummary;

    fn detection(sig: &str, action: Action, at: i64) -> Event {
        Event {
            event_id: format!("d-{at}"),
            kind: EventKind::Detection as i32,
            signatures: vec![sig.into()],
            action: action as i32,
            detected_at_us: at,
            ..Event::default()
        }
    }

    fn scan(infected: u64, failed: u64, completed: bool, at: i64) -> Event {
        Event {
            event_id: format!("s-{at}"),
            kind: EventKind::ScanCompleted as i32,
            detected_at_us: at,
            scan: Some(ScanSummary {
                files_scanned: 10,
                files_infected: infected,
                files_failed: failed,
                completed,
                ordered_by: "manager".into(),
                order_id: "o".into(),
                started_at_us: at,
                ..ScanSummary::default()
            }),
            ..Event::default()
        }
    }

    fn vm(state: VmState, tagged: bool) -> VmRecord {
        VmRecord {
            state: state.as_str().into(),
            tagged,
            ..VmRecord::default()
        }
    }

    #[test]
    fn detection_tags_once() {
        let p = QuarantineConfig::default();
        let mut q = Quarantine::default();
        let d = on_event(
            &p,
            &vm(VmState::Clean, false),
            &mut q,
            &detection("Eicar", Action::Denied, 1),
            None,
        );
        assert_eq!(d.unwrap().op, Some(TagOp::Tag));
        q.action_pending = true;
        assert!(
            on_event(
                &p,
                &vm(VmState::Infected, false),
                &mut q,
                &detection("Eicar", Action::Denied, 2),
                None
            )
            .is_none()
        );
    }

    #[test]
    fn failed_tag_is_retried_on_the_next_detection() {
        let p = QuarantineConfig::default();
        let mut q = Quarantine {
            tag_wanted: true,
            ..Quarantine::default()
        };
        let d = on_event(
            &p,
            &vm(VmState::Infected, false),
            &mut q,
            &detection("X", Action::Denied, 3),
            None,
        );
        assert_eq!(d.unwrap().op, Some(TagOp::Tag));
    }

    #[test]
    fn policy_filters() {
        let mut p = QuarantineConfig {
            tag_on: TagOn::Reported,
            ..QuarantineConfig::default()
        };
        assert!(!qualifies(&p, &detection("X", Action::Denied, 1)));
        assert!(qualifies(&p, &detection("X", Action::Reported, 1)));
        p.tag_on = TagOn::Any;
        p.levels = vec![ThreatLevel::High];
        assert!(!qualifies(
            &p,
            &detection("PUA.Win.Tool", Action::Denied, 1)
        ));
        assert!(qualifies(&p, &detection("Win.Trojan.X", Action::Denied, 1)));
    }

    #[test]
    fn only_a_clean_complete_ordered_scan_after_the_detection_releases() {
        let p = QuarantineConfig::default();
        let infected = || Quarantine {
            tag_wanted: true,
            infected_at_us: 100,
            action_pending: false,
        };
        let v = vm(VmState::Infected, true);
        let ok = ScanEvidence::default();
        let stays = |ev: &Event, evidence: &ScanEvidence| {
            let d = on_event(&p, &v, &mut infected(), ev, Some(evidence)).unwrap();
            assert_eq!((d.to, d.op), (VmState::Infected, None), "{}", d.cause);
            d.cause
        };
        assert!(stays(&scan(1, 0, true, 200), &ok).contains("1 infected"));
        assert!(stays(&scan(0, 1, true, 200), &ok).contains("1 failed"));
        assert!(stays(&scan(0, 0, false, 200), &ok).contains("incomplete"));
        assert!(stays(&scan(0, 0, true, 50), &ok).contains("before the latest detection"));
        let mut guest = scan(0, 0, true, 200);
        if let Some(s) = guest.scan.as_mut() {
            s.ordered_by = "guest".into();
        }
        assert!(stays(&guest, &ok).contains("not ordered"));
        let mut blocked = scan(0, 0, true, 200);
        if let Some(s) = blocked.scan.as_mut() {
            s.blockers = vec!["walked other roots".into()];
        }
        assert!(stays(&blocked, &ok).contains("walked other roots"));
        let store_says = ScanEvidence {
            problems: vec!["order o was used already".into()],
        };
        assert!(stays(&scan(0, 0, true, 200), &store_says).contains("used already"));
        let d = on_event(&p, &v, &mut infected(), &scan(0, 0, true, 200), Some(&ok)).unwrap();
        assert_eq!((d.to, d.op), (VmState::Clean, Some(TagOp::Untag)));
        let keep = QuarantineConfig {
            untag_after_clean_scan: false,
            ..p
        };
        assert!(
            on_event(
                &keep,
                &v,
                &mut infected(),
                &scan(0, 0, true, 200),
                Some(&ok)
            )
            .is_none()
        );
    }
}
