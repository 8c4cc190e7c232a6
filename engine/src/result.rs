//! The result of a scan.

/// Which kind of signature produced a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectionKind {
    /// A whole-file hash (`.hdb`/`.hsb`).
    Hash,
    /// A body signature (`.ndb`).
    Body,
    /// A logical signature (`.ldb`).
    Logical,
}

/// One detection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Detection {
    /// The signature name as reported (for example `Foo.Bar.UNOFFICIAL`).
    pub name: String,
    /// The kind of signature.
    pub kind: DetectionKind,
}

/// Why part of a file was not scanned: a limit of
/// [`ScanOptions`](crate::ScanOptions), or, when a file is opened as layers
/// (archives, compressed streams), a limit of the decomposition or a
/// member that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `max_scan_bytes` (ClamAV's MaxScanSize, for a file and its layers).
    ScanBytes,
    /// `max_scan_time` (MaxScanTime).
    ScanTime,
    /// Containers nested deeper than allowed (MaxRecursion).
    Recursion,
    /// More members than allowed (MaxFiles).
    Files,
    /// A member larger than allowed (MaxFileSize).
    FileSize,
    /// A decompression bomb: a member expanding past the ratio allowed, or
    /// archive entries sharing their data.
    Bomb,
    /// An encrypted member.
    Encrypted,
    /// A container of a kind, or a member stored by a method, not opened.
    Unsupported,
    /// A container or member that is corrupt, truncated, or whose parser
    /// failed.
    Unreadable,
}

impl Limit {
    /// A short name: `scan-size`, `recursion`, `encrypted`, ...
    pub fn name(self) -> &'static str {
        match self {
            Limit::ScanBytes => "scan-size",
            Limit::ScanTime => "scan-time",
            Limit::Recursion => "recursion",
            Limit::Files => "files",
            Limit::FileSize => "file-size",
            Limit::Bomb => "bomb",
            Limit::Encrypted => "encrypted",
            Limit::Unsupported => "unsupported",
            Limit::Unreadable => "unreadable",
        }
    }

    /// ClamAV's heuristic name for an alert on this limit, where it has
    /// one (`Heuristics.Limits.Exceeded.*`, `Heuristics.Encrypted.*`).
    pub fn alert_name(self) -> Option<&'static str> {
        Some(match self {
            Limit::ScanBytes => "Heuristics.Limits.Exceeded.MaxScanSize",
            Limit::ScanTime => "Heuristics.Limits.Exceeded.MaxScanTime",
            Limit::Recursion => "Heuristics.Limits.Exceeded.MaxRecursion",
            Limit::Files => "Heuristics.Limits.Exceeded.MaxFiles",
            Limit::FileSize => "Heuristics.Limits.Exceeded.MaxFileSize",
            Limit::Encrypted => "Heuristics.Encrypted.Archive",
            _ => return None,
        })
    }
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Scanned completely; nothing found.
    Clean,
    /// At least one detection.
    Infected,
    /// Five bytes or less: never scanned (ClamAV's rule, hashes included).
    TooSmall,
    /// A limit stopped the scan before the end and nothing was found in the
    /// part that was scanned. Never to be read as clean.
    LimitExceeded(Limit),
}

/// What a scan found.
///
/// Ordering of `detections` (stable and documented): in all-match mode, hash
/// detections first (MD5, SHA-1, SHA-256; within one algorithm in the order
/// the database returns them), then body signatures in database order, then
/// logical
/// signatures in database order. In first-match mode there is at most one
/// detection: a hash detection if there is one, otherwise the body signature
/// whose match was completed first in the stream (ties by database order),
/// otherwise the first logical signature in database order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// The detections (empty unless `outcome` is [`Outcome::Infected`]).
    pub detections: Vec<Detection>,
    /// The verdict.
    pub outcome: Outcome,
    /// How many bytes were consumed.
    pub bytes_scanned: u64,
    /// The input's hash is on an allow list (`.fp`, `.sfp`): clean, and a
    /// container's layers are not to be opened either.
    pub allowed: bool,
}

impl ScanResult {
    /// True if the outcome is [`Outcome::Infected`].
    pub fn is_infected(&self) -> bool {
        self.outcome == Outcome::Infected
    }

    /// The detection names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.detections.iter().map(|d| d.name.as_str()).collect()
    }
}
