//! Limits against hostile or broken signature input, and the ClamAV
//! functionality level giva emulates. A leaf: every parser reads these.

/// The ClamAV functionality level giva emulates: that of ClamAV 1.4.6 as
/// shipped by Debian 12 (measured with `Engine:` ranges on an `.ldb`:
/// `Engine:216-255` loads, `Engine:217-255` and `Engine:51-215` are skipped).
pub const FLEVEL: u32 = 216;

/// The longest line ClamAV 1.4.6 accepts in a signature file other than an
/// `.ldb` (measured: `.ndb` and `.hdb` lines of 8,191 bytes are refused).
pub const CLAMAV_MAX_LINE: usize = 8190;

/// The longest `.ldb` line ClamAV 1.4.6 accepts (32,768 bytes are refused).
pub const CLAMAV_MAX_LDB_LINE: usize = 32767;

/// Limits against hostile or broken signature input. Exceeding one gives a
/// [`CompileError::Limit`](crate::CompileError::Limit) naming it; nothing is allocated beyond them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line of any text format except `.ldb`, in bytes. ClamAV
    /// reads these lines into 8,192-byte buffers and refuses a database
    /// with a line of 8,191 bytes or more, so that is the default.
    pub max_line_len: usize,
    /// Longest `.ldb` line, in bytes: ClamAV refuses 32,768 or more.
    pub max_ldb_line_len: usize,
    /// Longest hex signature (one body or subsignature), in characters.
    pub max_pattern_len: usize,
    /// Most tokens one pattern may expand to (after `{n}` expansion).
    pub max_pattern_tokens: usize,
    /// Most alternation levels nested inside an outermost alternation
    /// (ClamAV's `ACPATT_ALTN_MAXNEST` is 15, so 16 levels in all; measured
    /// with clamscan 1.4.6). Values above 200 act as 200.
    pub max_nesting: usize,
    /// Most branches in one alternation.
    pub max_alternatives: usize,
    /// Largest signature file (or container) read, in bytes.
    pub max_file_size: u64,
    /// Most signatures in one database.
    pub max_signatures: u64,
    /// Most files read from one directory.
    pub max_dir_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_len: CLAMAV_MAX_LINE,
            max_ldb_line_len: CLAMAV_MAX_LDB_LINE,
            max_pattern_len: 1 << 18,
            max_pattern_tokens: 1 << 18,
            max_nesting: 15,
            max_alternatives: 4096,
            max_file_size: 2 << 30,
            max_signatures: 100_000_000,
            max_dir_entries: 100_000,
        }
    }
}
