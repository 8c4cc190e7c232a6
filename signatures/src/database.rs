//! The compiled signature database.
//!
//! PROVISIONAL: this in-memory version fixes the API the engine uses. The
//! signatures work replaces its storage with the validated, memory-mappable
//! file format while keeping these signatures.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pattern::{BodySignature, HashAlgo, LogicalSignature};

/// A whole-file hash entry (detection or allow-list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashEntry {
    /// The algorithm.
    pub algo: HashAlgo,
    /// The raw digest (`algo.digest_len()` bytes).
    pub digest: Vec<u8>,
    /// The file size it applies to, or `None` for any size.
    pub size: Option<u64>,
    /// The reported name (for the allow-list: the name in the `.fp` line).
    pub name: String,
}

/// Facts about a database, for `giva db info` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Version string (content-derived unless set by the builder).
    pub version: String,
    /// Build time, seconds since the Unix epoch.
    pub built_at: u64,
    /// Signatures loaded, per kind ("hash", "body", "logical", "allow").
    pub loaded: BTreeMap<String, u64>,
    /// Signatures skipped as unsupported, per reason.
    pub skipped: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    info: DatabaseInfo,
    body: Vec<BodySignature>,
    logical: Vec<LogicalSignature>,
    hashes: Vec<HashEntry>,
    allow: Vec<HashEntry>,
}

/// An immutable, validated signature database. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug, Default)]
pub struct Database {
    inner: Arc<Inner>,
}

impl Database {
    /// Builds a database straight from compiled parts (used by the
    /// [`Compiler`](crate) and by tests).
    pub fn from_parts(
        info: DatabaseInfo,
        body: Vec<BodySignature>,
        logical: Vec<LogicalSignature>,
        hashes: Vec<HashEntry>,
        allow: Vec<HashEntry>,
    ) -> Self {
        Database { inner: Arc::new(Inner { info, body, logical, hashes, allow }) }
    }

    /// Facts about the database.
    pub fn info(&self) -> &DatabaseInfo {
        &self.inner.info
    }

    /// The version string.
    pub fn version(&self) -> &str {
        &self.inner.info.version
    }

    /// The body (`.ndb`) signatures.
    pub fn body_signatures(&self) -> &[BodySignature] {
        &self.inner.body
    }

    /// The logical (`.ldb`) signatures.
    pub fn logical_signatures(&self) -> &[LogicalSignature] {
        &self.inner.logical
    }

    /// True if a detection or allow-list hash of `algo` exists for files of
    /// `size` bytes (or for any size), so the scanner must compute it.
    pub fn needs_hash(&self, algo: HashAlgo, size: u64) -> bool {
        self.inner
            .hashes
            .iter()
            .chain(&self.inner.allow)
            .any(|h| h.algo == algo && h.size.is_none_or(|s| s == size))
    }

    /// Names of the detection hashes equal to `digest` for a file of `size`
    /// bytes.
    pub fn lookup_hash<'a>(
        &'a self,
        algo: HashAlgo,
        digest: &'a [u8],
        size: u64,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.inner
            .hashes
            .iter()
            .filter(move |h| {
                h.algo == algo && h.digest == digest && h.size.is_none_or(|s| s == size)
            })
            .map(|h| h.name.as_str())
    }

    /// True if the allow-list (`.fp`/`.sfp`) holds `digest` for a file of
    /// `size` bytes.
    pub fn is_allowed(&self, algo: HashAlgo, digest: &[u8], size: u64) -> bool {
        self.inner
            .allow
            .iter()
            .any(|h| h.algo == algo && h.digest == digest && h.size.is_none_or(|s| s == size))
    }
}
