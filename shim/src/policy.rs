//! The shim's view of the appliance's policy: what to send, what to skip,
//! and what to decide when no verdict comes.
//!
//! The appliance sends its [`Policy`](giva_proto::shim::Policy) in
//! `RegisterResponse.policy` (and again on the session when it changes). The
//! shim applies the exclusions locally, so an excluded file never costs a
//! round trip, and keeps the last policy it received for the times the
//! appliance cannot be reached. Flags on the command line override the fail
//! mode and the decision deadline.

use std::time::Duration;

use giva_proto::policy::Filter;
use giva_proto::shim::{EventKind, Policy as WirePolicy};

/// Overrides from the command line, applied on top of every policy received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `Some(true)`: fail open; `Some(false)`: fail closed; `None`: as the
    /// policy says.
    pub fail_open: Option<bool>,
    /// The decision deadline, instead of the policy's.
    pub decision_timeout: Option<Duration>,
}

pub use giva_proto::policy::Skip;

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct LocalPolicy {
    wire: WirePolicy,
    filter: Filter,
    overrides: Overrides,
}

/// The policy used before the first registration: the appliance's defaults
/// (scan everything, fail open after 5 s, skip `/proc/`, `/sys/`, `/dev/`).
pub fn default_wire_policy() -> WirePolicy {
    WirePolicy {
        scan_on_open: true,
        scan_on_exec: true,
        scan_on_close_write: true,
        fail_open: true,
        decision_timeout_ms: 5000,
        exclude_prefixes: vec!["/proc/".into(), "/sys/".into(), "/dev/".into()],
        exclude_globs: Vec::new(),
        exclude_extensions: Vec::new(),
        max_file_size: 0,
        deny_on_detection: true,
    }
}

impl LocalPolicy {
    /// Compiles a policy received from the appliance. Glob patterns that do
    /// not compile are left out (and logged): the appliance validated them,
    /// and a bad one must not stop the guest from being protected.
    pub fn new(wire: WirePolicy, overrides: Overrides) -> Self {
        let (filter, problems) = Filter::new(&wire);
        for p in problems {
            tracing::warn!(problem = %p, "ignoring a bad exclusion");
        }
        LocalPolicy {
            wire,
            filter,
            overrides,
        }
    }

    /// The policy as received.
    pub fn wire(&self) -> &WirePolicy {
        &self.wire
    }

    /// The overrides in force.
    pub fn overrides(&self) -> Overrides {
        self.overrides
    }

    /// True when an access is allowed when no verdict can be had.
    pub fn fail_open(&self) -> bool {
        self.overrides.fail_open.unwrap_or(self.wire.fail_open)
    }

    /// How long a guest access may wait for a verdict (at least 1 ms).
    pub fn decision_timeout(&self) -> Duration {
        self.overrides
            .decision_timeout
            .unwrap_or(Duration::from_millis(u64::from(
                self.wire.decision_timeout_ms,
            )))
            .max(Duration::from_millis(1))
    }

    /// True when a DENY verdict denies the access (false: report only).
    pub fn deny_on_detection(&self) -> bool {
        self.wire.deny_on_detection
    }

    /// Decides whether an event goes to the appliance, or why not (the
    /// appliance's own rules).
    ///
    /// # Errors
    ///
    /// The reason the event is skipped.
    pub fn check(&self, kind: EventKind, path: &str, size: u64) -> Result<(), Skip> {
        self.filter.check(kind, path, size)
    }

    /// True when `path` matches an exclusion (prefix, glob or extension),
    /// with the same rules as the appliance.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.filter.is_excluded(path)
    }
}

impl Default for LocalPolicy {
    fn default() -> Self {
        LocalPolicy::new(default_wire_policy(), Overrides::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_match_the_appliance_rules() {
        let mut w = default_wire_policy();
        w.exclude_globs = vec!["**/cache/*.bin".into()];
        w.exclude_extensions = vec![".LOG".into()];
        let p = LocalPolicy::new(w, Overrides::default());
        assert!(p.is_excluded("/proc/1/maps"));
        assert!(p.is_excluded("/var/cache/x.bin"));
        assert!(p.is_excluded("/var/app.log"));
        assert!(!p.is_excluded("/var/.log"));
        assert!(!p.is_excluded("/home/a/eicar.com"));
    }

    #[test]
    fn kinds_size_and_overrides() {
        let mut w = default_wire_policy();
        w.scan_on_open = false;
        w.max_file_size = 10;
        let p = LocalPolicy::new(
            w,
            Overrides {
                fail_open: Some(false),
                decision_timeout: Some(Duration::from_millis(250)),
            },
        );
        assert_eq!(p.check(EventKind::Open, "/a", 1), Err(Skip::KindOff));
        assert_eq!(p.check(EventKind::Exec, "/a", 1), Ok(()));
        assert_eq!(p.check(EventKind::Exec, "/a", 11), Err(Skip::TooLarge));
        assert!(!p.fail_open());
        assert_eq!(p.decision_timeout(), Duration::from_millis(250));
        assert!(LocalPolicy::default().fail_open());
    }

    #[test]
    fn bad_glob_is_ignored_not_fatal() {
        let mut w = default_wire_policy();
        w.exclude_globs = vec!["[".into(), "*.tmp".into()];
        let p = LocalPolicy::new(w, Overrides::default());
        assert!(p.is_excluded("/x/a.tmp"));
    }
}
