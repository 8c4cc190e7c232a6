//! A VM's policy: what to scan and what to do about a detection.

use giva_proto::policy::Filter;
pub use giva_proto::policy::Skip;
use giva_proto::shim::{EventKind, Policy as WirePolicy};

use crate::config::{LimitsConfig, PolicyConfig};

/// A compiled policy, ready to answer "should this event be scanned?".
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    limits: LimitsConfig,
    filter: Filter,
}

/// A policy that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", group.as_ref().map_or_else(|| "policy".to_string(), |g| format!("groups.{g}")), problems.join("; "))]
pub struct PolicyError {
    /// The group whose policy it is (`None`: the default policy).
    pub group: Option<String>,
    /// What is wrong: each invalid pattern or root, named.
    pub problems: Vec<String>,
}

impl Policy {
    /// Compiles a policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for invalid patterns or scan roots, each named.
    /// `limits` are the appliance's; the policy's own replace them where
    /// it has them.
    pub fn new(config: PolicyConfig, limits: LimitsConfig) -> Result<Self, PolicyError> {
        let limits = config.limits.over(&limits);
        let mut policy = Policy {
            config,
            limits,
            filter: Filter::new(&WirePolicy::default()).0,
        };
        let (filter, mut problems) = Filter::new(&policy.to_wire());
        let roots = &policy.config.full_scan_roots;
        if roots.is_empty() {
            problems
                .push("full_scan_roots is empty: an ordered full scan would walk nothing".into());
        }
        for r in roots.iter().filter(|r| !r.starts_with('/')) {
            problems.push(format!("full_scan_roots: {r:?} is not an absolute path"));
        }
        if !problems.is_empty() {
            return Err(PolicyError {
                group: None,
                problems,
            });
        }
        policy.filter = filter;
        Ok(policy)
    }

    /// The scan limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// True when a detection denies access (false: report only).
    pub fn deny_on_detection(&self) -> bool {
        self.config.deny_on_detection
    }

    /// True when detections go to the manager at once.
    pub fn notify_immediately(&self) -> bool {
        self.config.notify_immediately
    }

    /// A file's layers' report with this policy's alerts raised
    /// (`alert_exceeds_max`, `alert_encrypted`).
    pub fn alerts(&self, report: giva_content::Report) -> giva_content::Report {
        report.with_alerts(self.config.alert_exceeds_max, self.config.alert_encrypted)
    }

    /// True when the policy turns limits or encryption into detections.
    pub fn alerts_on(&self) -> bool {
        self.config.alert_exceeds_max || self.config.alert_encrypted
    }

    /// True when cached verdicts may be shared with other VMs of the image.
    pub fn share_cache(&self) -> bool {
        self.config.share_cache
    }

    /// What an ordered full scan walks.
    pub fn full_scan_roots(&self) -> &[String] {
        &self.config.full_scan_roots
    }

    /// Decides whether an event is scanned, or why not (the same rules
    /// the shim applies).
    ///
    /// # Errors
    ///
    /// The reason the event is skipped.
    pub fn check(&self, kind: EventKind, path: &str, size: u64) -> Result<(), Skip> {
        self.filter.check(kind, path, size)
    }

    /// True when `path` matches an exclusion (prefix, glob or extension).
    pub fn is_excluded(&self, path: &str) -> bool {
        self.filter.is_excluded(path)
    }

    /// The policy as sent to shims.
    pub fn to_wire(&self) -> WirePolicy {
        let c = &self.config;
        WirePolicy {
            scan_on_open: c.scan_on_open,
            scan_on_exec: c.scan_on_exec,
            scan_on_close_write: c.scan_on_close_write,
            fail_open: c.fail_open,
            decision_timeout_ms: c.decision_timeout_ms,
            exclude_prefixes: c.exclude_prefixes.clone(),
            exclude_globs: c.exclude_globs.clone(),
            exclude_extensions: c.exclude_extensions.clone(),
            max_file_size: self.limits.max_file_size,
            deny_on_detection: c.deny_on_detection,
        }
    }
}

/// The default policy and the policies of named groups.
#[derive(Debug, Clone)]
pub struct Policies {
    default: std::sync::Arc<Policy>,
    groups: std::collections::BTreeMap<String, std::sync::Arc<Policy>>,
}

impl Policies {
    /// Compiles every policy of the configuration.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for the first invalid policy.
    pub fn new(config: &crate::config::Config) -> Result<Self, PolicyError> {
        let default =
            std::sync::Arc::new(Policy::new(config.policy.clone(), config.limits.clone())?);
        let mut groups = std::collections::BTreeMap::new();
        for (name, p) in &config.groups {
            let policy =
                Policy::new(p.clone(), config.limits.clone()).map_err(|e| PolicyError {
                    group: Some(name.clone()),
                    ..e
                })?;
            groups.insert(name.clone(), std::sync::Arc::new(policy));
        }
        Ok(Policies { default, groups })
    }

    /// Every policy: the default one, then each group's.
    pub fn all(&self) -> impl Iterator<Item = &Policy> {
        std::iter::once(&*self.default).chain(self.groups.values().map(|p| &**p))
    }

    /// The policy for a VM of `group` (the default one when the group is
    /// empty or unknown).
    pub fn for_group(&self, group: &str) -> std::sync::Arc<Policy> {
        if group.is_empty() {
            return self.default.clone();
        }
        match self.groups.get(group) {
            Some(p) => p.clone(),
            None => {
                tracing::warn!(group, "unknown policy group; using the default policy");
                self.default.clone()
            }
        }
    }

    /// The default policy.
    pub fn default_policy(&self) -> &Policy {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(f: impl FnOnce(&mut PolicyConfig)) -> Policy {
        let mut c = PolicyConfig::default();
        f(&mut c);
        Policy::new(c, LimitsConfig::default()).expect("valid policy")
    }

    #[test]
    fn exclusions_by_prefix_glob_and_extension() {
        let p = policy(|c| {
            c.exclude_globs = vec!["**/cache/*.bin".into()];
            c.exclude_extensions = vec![".LOG".into()];
        });
        assert!(p.is_excluded("/proc/1/maps"));
        assert!(p.is_excluded("/var/cache/x.bin"));
        assert!(p.is_excluded("/var/app.log"));
        assert!(!p.is_excluded("/var/.log"), "a dot file has no extension");
        assert!(!p.is_excluded("/home/a/eicar.com"));
    }

    #[test]
    fn kinds_and_size_limit() {
        let p = policy(|c| c.scan_on_open = false);
        assert_eq!(p.check(EventKind::Open, "/a", 1), Err(Skip::KindOff));
        assert_eq!(p.check(EventKind::Exec, "/a", 1), Ok(()));
        assert_eq!(
            p.check(EventKind::Exec, "/a", u64::MAX),
            Err(Skip::TooLarge)
        );
    }

    #[test]
    fn bad_glob_is_refused() {
        let c = PolicyConfig {
            exclude_globs: vec!["[".into()],
            ..PolicyConfig::default()
        };
        assert!(Policy::new(c, LimitsConfig::default()).is_err());
    }

    #[test]
    fn full_scan_roots_are_absolute_and_not_empty() {
        for roots in [vec![], vec!["srv".to_string()]] {
            let c = PolicyConfig {
                full_scan_roots: roots.clone(),
                ..PolicyConfig::default()
            };
            let e = Policy::new(c, LimitsConfig::default()).unwrap_err();
            assert!(e.to_string().contains("full_scan_roots"), "{roots:?}: {e}");
        }
    }
}

#[cfg(test)]
mod group_limits {
    use crate::config::Config;

    #[test]
    fn a_group_sets_its_own_limits_over_the_appliances() {
        let text = r#"
[limits]
max_recursion = 10
max_files = 500

[groups.build-farm.limits]
max_recursion = 3
max_member_size = 1048576
"#;
        let config: Config = toml::from_str(text).expect("config");
        let p = super::Policies::new(&config).expect("policies");
        let farm = p.for_group("build-farm");
        assert_eq!(farm.limits().max_recursion, 3);
        assert_eq!(farm.limits().max_member_size, 1 << 20);
        // What the group does not set is the appliance's.
        assert_eq!(farm.limits().max_files, 500);
        let default = p.for_group("");
        assert_eq!(default.limits().max_recursion, 10);
        assert_eq!(
            default.limits().max_member_size,
            giva_content::Limits::default().max_file_size
        );
        // And the walk is held to them.
        let limits = crate::scan::content_limits(farm.limits(), None);
        assert_eq!((limits.max_recursion, limits.max_files), (3, 500));
        // A misspelt limit is refused, not ignored.
        assert!(toml::from_str::<Config>("[groups.g.limits]\nmax_recursoin = 3\n").is_err());
    }
}
