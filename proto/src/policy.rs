//! The part of a VM's policy that decides, per file event, whether it is
//! scanned at all. The appliance and the shim apply it with the same code,
//! so an exclusion means the same on both sides.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::shim::{EventKind, Policy};

/// Why an event is not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The policy does not scan this kind of event.
    KindOff,
    /// The path matches an exclusion (prefix, glob or extension).
    Excluded,
    /// The file is larger than the policy's maximum file size.
    TooLarge,
}

/// A policy's scan rules, compiled.
#[derive(Debug, Clone)]
pub struct Filter {
    scan_on_open: bool,
    scan_on_exec: bool,
    scan_on_close_write: bool,
    prefixes: Vec<String>,
    globs: GlobSet,
    extensions: Vec<String>,
    max_file_size: u64,
}

impl Filter {
    /// Compiles `policy`. Glob patterns that do not compile are left out
    /// and returned as messages: the caller decides whether that is an
    /// error (the appliance's configuration) or a warning (a guest, which
    /// must stay protected).
    pub fn new(policy: &Policy) -> (Filter, Vec<String>) {
        let mut problems = Vec::new();
        let mut builder = GlobSetBuilder::new();
        for g in &policy.exclude_globs {
            match Glob::new(g) {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => problems.push(format!("exclusion glob {g}: {e}")),
            }
        }
        let globs = builder.build().unwrap_or_else(|e| {
            problems.push(format!("exclusion globs: {e}"));
            GlobSet::empty()
        });
        let filter = Filter {
            scan_on_open: policy.scan_on_open,
            scan_on_exec: policy.scan_on_exec,
            scan_on_close_write: policy.scan_on_close_write,
            prefixes: policy
                .exclude_prefixes
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
            globs,
            extensions: policy
                .exclude_extensions
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            max_file_size: policy.max_file_size,
        };
        (filter, problems)
    }

    /// Decides whether an event is scanned, or why not.
    ///
    /// # Errors
    ///
    /// The reason the event is skipped.
    pub fn check(&self, kind: EventKind, path: &str, size: u64) -> Result<(), Skip> {
        let on = match kind {
            EventKind::Open => self.scan_on_open,
            EventKind::Exec => self.scan_on_exec,
            EventKind::CloseWrite => self.scan_on_close_write,
            EventKind::FullScanItem | EventKind::Unspecified => true,
        };
        if !on {
            return Err(Skip::KindOff);
        }
        if self.is_excluded(path) {
            return Err(Skip::Excluded);
        }
        if self.max_file_size != 0 && size > self.max_file_size {
            return Err(Skip::TooLarge);
        }
        Ok(())
    }

    /// True when `path` matches an exclusion: a prefix, a glob on the whole
    /// path, or an extension (case-insensitive; a dot file has none).
    pub fn is_excluded(&self, path: &str) -> bool {
        if self.prefixes.iter().any(|p| path.starts_with(p.as_str())) || self.globs.is_match(path) {
            return true;
        }
        let file_name = path.rsplit('/').next().unwrap_or(path);
        match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => {
                self.extensions.contains(&ext.to_ascii_lowercase())
            }
            _ => false,
        }
    }
}
