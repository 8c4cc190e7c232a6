//! The limits of one file's decomposition, with ClamAV's defaults.

use std::path::PathBuf;
use std::time::Duration;

/// How far one file is opened. The defaults are `clamscan`'s (1.x): 17
/// levels, 10,000 files, 100 MB a member, 400 MB in all (the file and
/// everything extracted from it), 120 s.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Containers opened inside one another (ClamAV's MaxRecursion).
    pub max_recursion: u32,
    /// Members extracted from one file, at every level (MaxFiles).
    pub max_files: u64,
    /// Largest member extracted; a larger one is not scanned
    /// (MaxFileSize).
    pub max_file_size: u64,
    /// Bytes scanned for one file: the file itself and everything
    /// extracted from it (MaxScanSize).
    pub max_scan_size: u64,
    /// Time for one file and all its layers (MaxScanTime).
    pub max_scan_time: Duration,
    /// A member that expands more than this many times its compressed
    /// size, past [`Limits::ratio_floor`] bytes, is a decompression bomb
    /// and is not scanned further (0: no check).
    pub max_ratio: u64,
    /// Bytes a member may expand to before its ratio is checked.
    pub ratio_floor: u64,
    /// Members larger than this are written to an unlinked temporary file
    /// and mapped, rather than held in memory.
    pub spill_above: u64,
    /// Where such files go (default: the system's temporary directory).
    pub temp_dir: Option<PathBuf>,
    /// Text files larger than this are not normalized (ClamAV's
    /// MaxScriptNormalize, 20 MiB): their bytes are scanned, their
    /// normalized text is not, as in ClamAV.
    pub max_script_normalize: u64,
    /// HTML pages larger than this are not normalized (MaxHTMLNormalize,
    /// 40 MiB): target-3 signatures do not apply to them, as in ClamAV.
    pub max_html_normalize: u64,
    /// The text stream of a page larger than this is not scanned
    /// (MaxHTMLNoTags, 8 MiB; the page stream still is).
    pub max_html_notags: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_recursion: 17,
            max_files: 10_000,
            max_file_size: 100 << 20,
            max_scan_size: 400 << 20,
            max_scan_time: Duration::from_secs(120),
            max_ratio: 1000,
            ratio_floor: 16 << 20,
            spill_above: 8 << 20,
            temp_dir: None,
            max_script_normalize: 20 << 20,
            max_html_normalize: 40 << 20,
            max_html_notags: 8 << 20,
        }
    }
}
