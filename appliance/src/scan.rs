//! The signatures in service and the translation of engine results into
//! verdicts.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use giva_engine::{CachedVerdict, Engine, IdleScanners, Limit, Outcome, ScanOptions, ScanResult};
use giva_proto::shim::{Detection, NotScannedReason, Verdict, VerdictKind};
use giva_signatures::Database;

use crate::config::LimitsConfig;

/// A database and the engine built from it, swapped as one.
#[derive(Debug)]
pub struct Loaded {
    /// The database.
    pub database: Database,
    /// The engine built from it.
    pub engine: Engine,
    /// The generation of this database in this process: verdicts cached by
    /// another generation are stale.
    pub epoch: u64,
    /// Idle scanners of `engine`, reused by the streamed files' scans.
    pub scanners: IdleScanners,
}

/// Most idle scanners a database generation keeps: enough for the files
/// in flight on a busy appliance, few enough that their scratch stays
/// small.
const IDLE_SCANNERS: usize = 32;

impl Loaded {
    fn new(database: Database, engine: Engine, epoch: u64) -> Loaded {
        Loaded {
            scanners: IdleScanners::new(engine.clone(), IDLE_SCANNERS),
            database,
            engine,
            epoch,
        }
    }
}

/// The signatures in service. Scans take a snapshot (`current()`) and finish
/// on it even if a new database is swapped in meanwhile.
#[derive(Debug)]
pub struct Signatures {
    current: ArcSwap<Loaded>,
    next_epoch: std::sync::atomic::AtomicU64,
}

impl Signatures {
    /// Puts `database`, with the `engine` built for it, in service.
    pub fn new(database: Database, engine: Engine) -> Self {
        Signatures {
            current: ArcSwap::from_pointee(Loaded::new(database, engine, 1)),
            next_epoch: std::sync::atomic::AtomicU64::new(2),
        }
    }

    /// The snapshot in service now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// The version of the database in service.
    pub fn version(&self) -> String {
        self.current.load().database.version().to_string()
    }

    /// Puts `database`, with the `engine` built for it, in service. Scans
    /// that hold the previous snapshot finish on it.
    pub fn replace(&self, database: Database, engine: Engine) {
        let epoch = self
            .next_epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.current
            .store(Arc::new(Loaded::new(database, engine, epoch)));
    }
}

/// Scan options derived from the configured limits.
pub fn scan_options(limits: &LimitsConfig) -> ScanOptions {
    ScanOptions {
        all_match: false,
        max_scan_bytes: (limits.max_scan_bytes != 0).then_some(limits.max_scan_bytes),
        max_scan_time: (limits.max_scan_time_ms != 0)
            .then(|| Duration::from_millis(limits.max_scan_time_ms)),
        // Each file's own, from its first bytes.
        file_type: None,
        skip_hashes: false,
        // Each executable's own, from its headers.
        exe: None,
        // A file of its own; a member's is its container's.
        container: None,
    }
}

/// The limits of opening a file's layers, from the policy's; large
/// members spool to `spool`.
pub fn content_limits(
    limits: &LimitsConfig,
    spool: Option<std::path::PathBuf>,
) -> giva_content::Limits {
    giva_content::Limits {
        temp_dir: spool,
        max_recursion: limits.max_recursion,
        max_files: limits.max_files,
        max_file_size: limits.max_member_size,
        max_scan_size: limits.max_container_bytes,
        max_scan_time: match limits.max_scan_time_ms {
            0 => Duration::MAX,
            ms => Duration::from_millis(ms),
        },
        ..giva_content::Limits::default()
    }
}

/// What of a file's result the verdict cache keeps: a clean result, or the
/// detections and the layer (`member`) of the first; nothing for a file
/// not scanned whole.
pub fn cacheable(result: &ScanResult, member: Vec<String>) -> Option<CachedVerdict> {
    match result.outcome {
        Outcome::Clean | Outcome::TooSmall => Some(CachedVerdict::Clean),
        Outcome::Infected => Some(CachedVerdict::infected(result.detections.clone(), member)),
        _ => None,
    }
}

/// Turns an engine result into a verdict. With `deny` false (report-only
/// policy), detections are reported on an ALLOW verdict.
pub fn verdict_for(seq: u64, result: &ScanResult, deny: bool, db_version: &str) -> Verdict {
    let detections = result
        .detections
        .iter()
        .map(|d| Detection {
            signature: d.name.clone(),
            kind: kind_name(d.kind).to_string(),
        })
        .collect();
    let (kind, not_scanned, reason) = match result.outcome {
        Outcome::Infected if deny => (VerdictKind::Deny, NotScannedReason::Unspecified, ""),
        Outcome::Infected | Outcome::Clean => {
            (VerdictKind::Allow, NotScannedReason::Unspecified, "")
        }
        // Nothing can match a file of 5 bytes or less (ClamAV's rule, which
        // hashes obey too), so such files are allowed.
        Outcome::TooSmall => (
            VerdictKind::Allow,
            NotScannedReason::TooSmall,
            "too small to scan",
        ),
        Outcome::LimitExceeded(limit) => {
            let (reason, text) = not_scanned_reason(limit);
            (VerdictKind::NotScanned, reason, text)
        }
        #[allow(unreachable_patterns)]
        _ => (
            VerdictKind::Error,
            NotScannedReason::Unspecified,
            "unknown scan outcome",
        ),
    };
    Verdict {
        seq,
        kind: kind as i32,
        detections,
        from_cache: false,
        not_scanned: not_scanned as i32,
        reason: reason.to_string(),
        database_version: db_version.to_string(),
    }
}

/// The reason sent to a shim for a limit, and its words.
pub fn not_scanned_reason(limit: Limit) -> (NotScannedReason, &'static str) {
    match limit {
        Limit::ScanBytes => (NotScannedReason::ScanBytesLimit, "scan bytes limit"),
        Limit::ScanTime => (NotScannedReason::ScanTimeLimit, "scan time limit"),
        Limit::Recursion => (NotScannedReason::RecursionLimit, "nested too deep"),
        Limit::Files => (NotScannedReason::FilesLimit, "too many members"),
        Limit::FileSize => (NotScannedReason::MemberSizeLimit, "member too large"),
        Limit::Bomb => (NotScannedReason::Bomb, "decompression bomb"),
        Limit::Encrypted => (NotScannedReason::Encrypted, "encrypted"),
        Limit::Unsupported => (NotScannedReason::Unsupported, "not opened"),
        _ => (NotScannedReason::Unreadable, "unreadable"),
    }
}

/// The short name of a detection kind, as sent on the wire.
pub fn kind_name(kind: giva_engine::DetectionKind) -> &'static str {
    match kind {
        giva_engine::DetectionKind::Hash => "hash",
        giva_engine::DetectionKind::Body => "body",
        giva_engine::DetectionKind::Logical => "logical",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// A verdict without detections.
pub fn simple_verdict(
    seq: u64,
    kind: VerdictKind,
    not_scanned: NotScannedReason,
    reason: impl Into<String>,
    db_version: &str,
) -> Verdict {
    Verdict {
        seq,
        kind: kind as i32,
        detections: Vec::new(),
        from_cache: false,
        not_scanned: not_scanned as i32,
        reason: reason.into(),
        database_version: db_version.to_string(),
    }
}
