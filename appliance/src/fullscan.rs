//! Full scans, and what a full scan proves.
//!
//! A quarantined VM is released on a full scan's record alone, so the
//! record must say what the appliance saw, not what the guest claims. The
//! guest's shim walks the file system (only it can), but the appliance:
//!
//! - orders the scan: a [`ScanOrder`] from the manager or the schedule
//!   carries a token that the shim must echo, so a scan the guest starts on
//!   its own is known as such (`ordered_by = "guest"`) and never releases;
//! - sets the roots from the VM's policy, and checks the shim walks them;
//! - counts every verdict of the scan itself ([`Tally`]), so the shim's own
//!   counts are never used;
//! - asks for the paths with detections since the quarantine first, and
//!   checks each was found clean or said to be gone;
//! - writes the record only once every file of the scan has its verdict,
//!   so every detection of the scan is in the outbox before the record.
//!
//! Each reason the scan proves nothing is a *blocker* in the record; the
//! manager releases only on a record without one.

use std::collections::HashSet;

use giva_proto::manager::{ScanSummary, SkippedFile};
use giva_proto::shim::{FullScanFinished, NotScannedReason, Verdict, VerdictKind};

/// Skipped files listed in a record, at most.
pub const MAX_SKIPPED_LISTED: usize = 100;
/// Paths to re-read that an order carries, at most.
pub const MAX_RECHECK: usize = 1000;
/// Roots a scan may name, at most.
pub const MAX_ROOTS: usize = 64;

/// Who ordered a full scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderedBy {
    /// The manager (an operator, or its release policy).
    Manager,
    /// This appliance's schedule.
    Schedule,
}

impl OrderedBy {
    /// The name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderedBy::Manager => "manager",
            OrderedBy::Schedule => "schedule",
        }
    }
}

/// A full scan the appliance asked a VM to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOrder {
    /// Who asked.
    pub ordered_by: OrderedBy,
    /// The manager's nonce (empty for the schedule).
    pub order_id: String,
    /// Why, for people.
    pub reason: String,
    /// What the shim is to walk (the VM's policy).
    pub roots: Vec<String>,
    /// Paths with detections since the quarantine.
    pub recheck: Vec<String>,
}

/// One full scan in a session: its order, if any, and its verdicts.
#[derive(Debug)]
pub struct FullScan {
    /// The order it answers; `None` for a scan the guest started.
    pub order: Option<ScanOrder>,
    /// The roots the shim said it walks.
    pub roots: Vec<String>,
    /// When its slot was asked for (appliance clock, µs).
    pub started_at_us: i64,
    /// Its verdicts, shared with the files' tasks.
    pub tally: std::sync::Arc<std::sync::Mutex<Tally>>,
}

/// What the appliance answered for one full scan's files.
#[derive(Debug, Default)]
pub struct Tally {
    scanned: u64,
    infected: u64,
    failed: u64,
    skipped: u64,
    excluded: u64,
    inflight: u64,
    skipped_files: Vec<SkippedFile>,
    /// The paths to re-read, and those found clean.
    recheck: HashSet<String>,
    clean_rechecks: HashSet<String>,
}

impl Tally {
    /// A tally that watches for `recheck` paths.
    pub fn new(recheck: &[String]) -> Self {
        Tally {
            recheck: recheck.iter().cloned().collect(),
            ..Tally::default()
        }
    }

    /// A file of the scan is being answered.
    pub fn begin(&mut self) {
        self.inflight += 1;
    }

    /// A file of the scan got verdict `v` (`sha256`: of the content, when
    /// the appliance read it all).
    pub fn record(&mut self, path: &str, v: &Verdict, sha256: Option<[u8; 32]>) {
        self.inflight = self.inflight.saturating_sub(1);
        let not_scanned = NotScannedReason::try_from(v.not_scanned).unwrap_or_default();
        match VerdictKind::try_from(v.kind) {
            Ok(VerdictKind::Deny) => {
                self.scanned += 1;
                self.infected += 1;
            }
            Ok(VerdictKind::Allow) if !v.detections.is_empty() => {
                self.scanned += 1;
                self.infected += 1;
            }
            Ok(VerdictKind::Allow) => {
                self.scanned += 1;
                if self.recheck.contains(path) {
                    self.clean_rechecks.insert(path.to_string());
                }
            }
            Ok(VerdictKind::NotScanned) if not_scanned == NotScannedReason::Excluded => {
                self.excluded += 1;
            }
            Ok(VerdictKind::NotScanned) => {
                self.skipped += 1;
                if self.skipped_files.len() < MAX_SKIPPED_LISTED {
                    self.skipped_files.push(SkippedFile {
                        path: path.to_string(),
                        sha256: sha256.map(hex::encode).unwrap_or_default(),
                        reason: v.reason.clone(),
                    });
                }
            }
            _ => {
                self.scanned += 1;
                self.failed += 1;
            }
        }
    }
}

/// The record of `scan`, which the shim says ended as `done`, at `now_us`.
pub fn record(scan: &FullScan, done: &FullScanFinished, now_us: i64) -> ScanSummary {
    let t = scan.tally.lock().unwrap_or_else(|e| e.into_inner());
    let mut blockers = Vec::new();
    let mut rechecked = Vec::new();
    match &scan.order {
        None => blockers.push(
            "started by the guest, not ordered by the manager or the schedule: recorded, \
             never releases"
                .to_string(),
        ),
        Some(order) => {
            let absent: HashSet<&str> = done.absent_paths.iter().map(String::as_str).collect();
            rechecked = order
                .recheck
                .iter()
                .filter(|p| t.clean_rechecks.contains(*p) || absent.contains(p.as_str()))
                .cloned()
                .collect();
            if scan.roots != order.roots {
                let few = |r: &[String]| {
                    let mut s = r.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                    if r.len() > 5 {
                        s.push_str(&format!(" and {} more", r.len() - 5));
                    }
                    s
                };
                blockers.push(format!(
                    "walked [{}], but the policy's roots are [{}]",
                    few(&scan.roots),
                    few(&order.roots)
                ));
            }
            let unproven: Vec<&String> = order
                .recheck
                .iter()
                .filter(|p| !t.clean_rechecks.contains(*p) && !absent.contains(p.as_str()))
                .collect();
            if !unproven.is_empty() {
                blockers.push(format!(
                    "{} path{} with a detection neither found clean nor gone: {}",
                    unproven.len(),
                    if unproven.len() == 1 { "" } else { "s" },
                    unproven
                        .iter()
                        .take(5)
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if !done.completed {
        blockers.push("the walk did not complete".into());
    }
    if t.inflight > 0 {
        blockers.push(format!(
            "{} file{} had no verdict yet when the shim said the scan ended",
            t.inflight,
            if t.inflight == 1 { "" } else { "s" }
        ));
    }
    if t.infected > 0 {
        blockers.push(format!("{} infected", t.infected));
    }
    if t.failed > 0 {
        blockers.push(format!("{} could not be scanned", t.failed));
    }
    if t.skipped > t.skipped_files.len() as u64 {
        blockers.push(format!(
            "{} files skipped by limits, more than the {MAX_SKIPPED_LISTED} a record lists",
            t.skipped
        ));
    }
    ScanSummary {
        files_scanned: t.scanned,
        files_infected: t.infected,
        files_failed: t.failed + t.inflight,
        completed: done.completed && t.inflight == 0,
        files_skipped: t.skipped,
        files_vanished: done.files_vanished,
        ordered_by: scan
            .order
            .as_ref()
            .map_or("guest", |o| o.ordered_by.as_str())
            .to_string(),
        order_id: scan
            .order
            .as_ref()
            .map(|o| o.order_id.clone())
            .unwrap_or_default(),
        roots: scan.roots.clone(),
        started_at_us: scan.started_at_us,
        finished_at_us: now_us,
        skipped: t.skipped_files.clone(),
        blockers,
        rechecked,
    }
}

/// The record of an ordered scan whose session ended before it did.
pub fn cut_off(scan: &FullScan, now_us: i64) -> ScanSummary {
    let done = FullScanFinished {
        completed: false,
        ..FullScanFinished::default()
    };
    let mut r = record(scan, &done, now_us);
    r.blockers
        .push("the session ended before the scan did".into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn verdict(kind: VerdictKind, reason: NotScannedReason) -> Verdict {
        Verdict {
            kind: kind as i32,
            not_scanned: reason as i32,
            ..Verdict::default()
        }
    }

    fn scan(order: Option<ScanOrder>, roots: &[&str]) -> FullScan {
        let recheck = order
            .as_ref()
            .map(|o| o.recheck.clone())
            .unwrap_or_default();
        FullScan {
            order,
            roots: roots.iter().map(|r| r.to_string()).collect(),
            started_at_us: 10,
            tally: Arc::new(Mutex::new(Tally::new(&recheck))),
        }
    }

    fn order(recheck: &[&str]) -> ScanOrder {
        ScanOrder {
            ordered_by: OrderedBy::Manager,
            order_id: "o-1".into(),
            reason: "release".into(),
            roots: vec!["/".into()],
            recheck: recheck.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn finished(absent: &[&str]) -> FullScanFinished {
        FullScanFinished {
            completed: true,
            absent_paths: absent.iter().map(|r| r.to_string()).collect(),
            ..FullScanFinished::default()
        }
    }

    fn answer(s: &FullScan, path: &str, v: &Verdict) {
        let mut t = s.tally.lock().unwrap();
        t.begin();
        t.record(path, v, None);
    }

    #[test]
    fn an_ordered_clean_scan_over_the_roots_has_no_blocker() {
        let s = scan(Some(order(&["/a", "/b"])), &["/"]);
        answer(
            &s,
            "/a",
            &verdict(VerdictKind::Allow, NotScannedReason::Unspecified),
        );
        answer(
            &s,
            "/x",
            &verdict(VerdictKind::NotScanned, NotScannedReason::Excluded),
        );
        let r = record(&s, &finished(&["/b"]), 20);
        assert!(r.blockers.is_empty(), "{:?}", r.blockers);
        assert_eq!(
            (r.files_scanned, r.files_failed, r.files_skipped),
            (1, 0, 0)
        );
        assert_eq!(r.ordered_by, "manager");
        assert_eq!(r.order_id, "o-1");
        assert_eq!(r.rechecked, ["/a", "/b"]);
    }

    #[test]
    fn each_gap_is_a_blocker() {
        // Started by the guest.
        let r = record(&scan(None, &["/"]), &finished(&[]), 20);
        assert_eq!(r.ordered_by, "guest");
        assert!(r.blockers[0].contains("started by the guest"));
        // Other roots.
        let r = record(&scan(Some(order(&[])), &["/tmp/empty"]), &finished(&[]), 20);
        assert!(r.blockers[0].contains("policy's roots"), "{:?}", r.blockers);
        // A detected path neither clean nor gone.
        let r = record(&scan(Some(order(&["/a"])), &["/"]), &finished(&[]), 20);
        assert!(r.blockers[0].contains("/a"), "{:?}", r.blockers);
        // A file still in flight when the shim says it is over.
        let s = scan(Some(order(&[])), &["/"]);
        s.tally.lock().unwrap().begin();
        let r = record(&s, &finished(&[]), 20);
        assert!(r.blockers[0].contains("no verdict yet"), "{:?}", r.blockers);
        assert!(!r.completed);
        // An error, an infection, a limit (listed, for the manager).
        let s = scan(Some(order(&[])), &["/"]);
        answer(
            &s,
            "/e",
            &verdict(VerdictKind::Error, NotScannedReason::Unspecified),
        );
        answer(
            &s,
            "/i",
            &verdict(VerdictKind::Deny, NotScannedReason::Unspecified),
        );
        answer(
            &s,
            "/big",
            &verdict(VerdictKind::NotScanned, NotScannedReason::ScanBytesLimit),
        );
        let r = record(&s, &finished(&[]), 20);
        assert_eq!(r.blockers, ["1 infected", "1 could not be scanned"]);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].path, "/big");
        // Cut off.
        let r = cut_off(&scan(Some(order(&[])), &["/"]), 20);
        assert!(r.blockers.iter().any(|b| b.contains("session ended")));
    }
}
