//! Errors by phase: [`CompileError`] (one bad signature file),
//! [`BuildError`] (the compiler as a whole), [`LoadError`] (a compiled
//! database file), [`ContainerError`] (a `.cvd`/`.cld`/`.cud`), and the
//! umbrella [`Error`] returned by [`load`](crate::load).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a signature file was refused. ClamAV refuses the whole file for one
/// bad line; so does giva.
///
/// Renders like `main.ndb: line 12: Foo.Bar: part 3 has no 2 consecutive
/// fixed bytes`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A line (or the whole file) does not follow the format.
    #[error("{}", Located { file, line: *line, name: name.as_deref(), reason })]
    Malformed {
        /// The file (or source) name, as given to the compiler.
        file: String,
        /// The 1-based line number, if the problem is on one line.
        line: Option<usize>,
        /// The signature name, when it could be read.
        name: Option<String>,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// A configured [`Limits`](crate::Limits) value was exceeded.
    #[error("{}", Located { file, line: *line, name: name.as_deref(), reason: &format!("limit exceeded: {what}") })]
    Limit {
        /// The file (or source) name.
        file: String,
        /// The 1-based line number, if any.
        line: Option<usize>,
        /// The signature name, when it could be read.
        name: Option<String>,
        /// Which limit, with the numbers.
        what: String,
    },
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `.cvd`/`.cld`/`.cud` container was refused.
    #[error("{file}: {source}")]
    Container {
        /// The container's file name.
        file: String,
        /// Why.
        #[source]
        source: ContainerError,
    },
    /// A compiled giva database among other sources: it cannot be merged
    /// with them, and is used only when it is the one source given.
    #[error("{file}: a compiled giva database, usable only as the one database given")]
    CompiledDatabase {
        /// The file name.
        file: String,
    },
}

impl CompileError {
    /// The file name the error refers to, when there is one.
    pub fn file(&self) -> Option<&str> {
        match self {
            CompileError::Malformed { file, .. }
            | CompileError::Limit { file, .. }
            | CompileError::Container { file, .. }
            | CompileError::CompiledDatabase { file } => Some(file),
            CompileError::Io { .. } => None,
        }
    }

    /// The 1-based line number, when the error is on one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            CompileError::Malformed { line, .. } | CompileError::Limit { line, .. } => *line,
            _ => None,
        }
    }
}

struct Located<'a> {
    file: &'a str,
    line: Option<usize>,
    name: Option<&'a str>,
    reason: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(name) = self.name {
            write!(f, ": {name}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why [`Compiler::build`](crate::Compiler::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A source file was refused (the first error found; loading is
    /// all-or-nothing).
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The total number of signatures is above
    /// [`Limits::max_signatures`](crate::Limits::max_signatures).
    #[error("too many signatures: {count} (limit {limit})")]
    TooManySignatures {
        /// How many were loaded.
        count: u64,
        /// The limit.
        limit: u64,
    },
}

/// Why a compiled database file was refused by
/// [`Database::open`](crate::Database::open) or
/// [`Database::from_bytes`](crate::Database::from_bytes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened, mapped or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with giva's database magic.
    #[error("not a giva database (bad magic)")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported database format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file is shorter than its header.
    #[error("truncated compiled database: {len} bytes, its header alone takes at least {need}")]
    TruncatedHeader {
        /// The file length.
        len: usize,
        /// The minimum header length.
        need: usize,
    },
    /// The payload is shorter than the header says: the file was cut.
    #[error("truncated: the header says {expected} payload bytes, the file has {actual}")]
    Truncated {
        /// Length announced by the header.
        expected: u64,
        /// Length present.
        actual: u64,
    },
    /// The payload is longer than the header says.
    #[error("payload length mismatch: header says {expected} bytes, file has {actual}")]
    PayloadLength {
        /// Length announced by the header.
        expected: u64,
        /// Length present.
        actual: u64,
    },
    /// The payload's SHA-256 differs from the header's.
    #[error("checksum mismatch: payload SHA-256 does not match the header")]
    ChecksumMismatch,
    /// A section or record points outside the payload, or a field is out of
    /// range.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// A section does not decode.
    #[error("corrupt database: {section} section {source}")]
    Section {
        /// Which section.
        section: &'static str,
        /// What is wrong, and where in the section.
        #[source]
        source: crate::wire::WireError,
    },
}

/// Why a `.cvd`/`.cld`/`.cud` container was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// Shorter than the 512-byte header.
    #[error("truncated: {len} bytes, the header alone is 512")]
    Truncated {
        /// The file length.
        len: usize,
    },
    /// The header is not `ClamAV-VDB:` with 9 fields.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The MD5 of the body differs from the header's.
    #[error("MD5 mismatch: header says {expected}, body is {actual}")]
    Md5Mismatch {
        /// From the header.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The header's digital signature does not verify with ClamAV's key.
    #[error("digital signature verification failed")]
    BadSignature,
    /// The body could not be decompressed or un-tarred.
    #[error("bad archive: {0}")]
    Archive(String),
    /// The `.info` member is missing or malformed.
    #[error("bad .info: {0}")]
    BadInfo(String),
    /// A member's size or SHA-256 differs from `.info`, or it is missing
    /// from `.info`.
    #[error("member {member}: {reason}")]
    Member {
        /// The member name.
        member: String,
        /// What differs.
        reason: String,
    },
    /// A limit was exceeded while unpacking.
    #[error("limit exceeded: {0}")]
    Limit(String),
}

/// Everything [`load`](crate::load) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening a compiled database failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Compiling signature sources failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Adding a source failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// No path was given.
    #[error("no database path given")]
    NoPaths,
    /// The sources hold no signature, so every file would scan clean.
    #[error(
        "no signatures loaded ({}); a database with no signature would call every file clean",
        sources.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Empty {
        /// Each source given, and why it gave nothing.
        sources: Vec<EmptySource>,
    },
}

/// A source that gave no signature, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct EmptySource {
    /// The file or directory.
    pub path: PathBuf,
    /// Why it gave nothing (`empty file`, `unsupported file type .foo`, …).
    pub reason: String,
}
