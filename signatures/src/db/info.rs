//! [`DatabaseInfo`]: what a database holds, for `giva db info` and logs.

use std::collections::BTreeMap;

/// Facts about a database, for `giva db info` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Version string (content-derived unless set by the builder).
    pub version: String,
    /// Build time, seconds since the Unix epoch.
    pub built_at: u64,
    /// Signatures loaded, per kind ("hash", "body", "logical", "allow").
    pub loaded: BTreeMap<String, u64>,
    /// Signatures skipped as unsupported, per reason (for example
    /// `"target:1"`, `"pcre"`, `"flevel"`, `"pua"`, `"ignored"`), and
    /// unsupported files per extension (`"file:.cbc"`).
    pub skipped: BTreeMap<String, u64>,
}
