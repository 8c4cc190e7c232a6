//! The manager's configuration file (`giva-manager serve --config FILE`).
//!
//! Every option has a default, so an empty file (or no file) is a valid
//! configuration: tag on any detection, remove the tag after a clean full
//! scan, and no tagging action (the quarantine is then recorded in the store
//! only). `giva-manager serve --print-config` prints the effective
//! configuration as TOML.
//!
//! ```toml
//! [quarantine]
//! tag_on = "any"                 # or "reported": only when the appliance could not deny
//! levels = ["high", "medium", "low"]
//! untag_after_clean_scan = true
//! concurrency = 32
//! max_attempts = 0              # retry until applied, superseded or cancelled
//! initial_backoff_ms = 200
//! max_backoff_ms = 10000
//!
//! [[actions]]
//! kind = "nsx"
//! url = "https://nsx.example.com"
//! user = "admin"
//! password = "..."
//! scope = "ANTI_VIRUS"
//! tag = "VirusFound.threat=high"
//!
//! [[actions]]
//! kind = "webhook"
//! url = "https://hooks.example.com/giva"
//! secret = "..."
//!
//! [[actions]]
//! kind = "command"
//! program = "/usr/local/bin/quarantine"
//! args = []
//! timeout_ms = 10000
//! ```

use std::path::{Path, PathBuf};

use giva_runtime::Secret;
use giva_runtime::secret::{self, SecretError, SecretSource};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// When to quarantine and release, and how actions are retried.
    pub quarantine: QuarantineConfig,
    /// The tagging actions, applied in this order for every tag and untag.
    /// None (the default): the quarantine is recorded in the store only.
    pub actions: Vec<ActionConfig>,
}

/// Which detections quarantine a VM.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TagOn {
    /// Every detection (default).
    #[default]
    Any,
    /// Only detections the appliance could not deny (`Action::Reported`):
    /// the file was reached, so the VM may be compromised.
    Reported,
}

/// A threat level, derived from the signature name (see
/// [`crate::quarantine::threat_level`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ThreatLevel {
    /// `PUA.*`: potentially unwanted applications.
    Low,
    /// `Heuristics.*`: heuristic detections.
    Medium,
    /// Everything else.
    High,
}

/// The quarantine policy and the action worker's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Which detections quarantine a VM.
    pub tag_on: TagOn,
    /// Threat levels that quarantine a VM (default: all).
    pub levels: Vec<ThreatLevel>,
    /// Remove the tag when a full scan of the VM completes clean.
    pub untag_after_clean_scan: bool,
    /// Most tagging calls in flight at once, over all VMs.
    pub concurrency: usize,
    /// Attempts per action before it is given up as failed. 0 (the
    /// default): retry until it is applied, superseded by a newer action
    /// for the same VM, or cancelled by an operator (`giva-manager
    /// cancel VM`); pending actions survive a restart.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on each retry.
    pub initial_backoff_ms: u64,
    /// Longest wait between retries.
    pub max_backoff_ms: u64,
    /// At shutdown, how long calls in flight may take to finish. Unfinished
    /// actions stay pending and resume at the next start.
    pub drain_ms: u64,
    /// The manager's `/healthz` answers 503 while a tagging action has
    /// been pending longer than this.
    pub overdue_secs: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            tag_on: TagOn::Any,
            levels: vec![ThreatLevel::High, ThreatLevel::Medium, ThreatLevel::Low],
            untag_after_clean_scan: true,
            concurrency: 32,
            max_attempts: 0,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            drain_ms: 2_000,
            overdue_secs: 300,
        }
    }
}

/// One tagging action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// NSX-T Manager API: `fabric/virtual-machines` add/remove tags.
    Nsx(NsxConfig),
    /// A JSON POST with an HMAC-SHA256 signature header.
    Webhook(WebhookConfig),
    /// A program run with the event as JSON on stdin.
    Command(CommandConfig),
}

impl ActionConfig {
    /// The name used in the store and in `last_action`: the configured
    /// name, else the kind.
    pub fn name(&self) -> &str {
        let (name, kind) = match self {
            ActionConfig::Nsx(c) => (&c.name, "nsx"),
            ActionConfig::Webhook(c) => (&c.name, "webhook"),
            ActionConfig::Command(c) => (&c.name, "command"),
        };
        if name.is_empty() { kind } else { name }
    }
}

/// The NSX-T Manager API client.
///
/// The VM is addressed by its NSX external id, which is the VM id the shim
/// reports: run the shim with `--vm-id` set to the VM's instance UUID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NsxConfig {
    /// Name of this action (default "nsx").
    pub name: String,
    /// Base URL of the NSX Manager, e.g. `https://nsx.example.com`
    /// (`http://` is accepted, for tests).
    pub url: String,
    /// User for HTTP basic authentication.
    pub user: String,
    /// Password for HTTP basic authentication (printed as `<redacted>`;
    /// better given with `password_file` or `password_env`).
    pub password: Secret,
    /// A file holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A header carrying a token instead of basic authentication, e.g.
    /// `csp-auth-token` (VMware Cloud) or `Authorization`.
    pub token_header: String,
    /// The token's value (printed as `<redacted>`; or `token_file`,
    /// `token_env`).
    pub token: Secret,
    /// A file holding the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Tag scope. Default "ANTI_VIRUS" with tag "VirusFound.threat=high",
    /// which is Deep Security's `ANTI_VIRUS.VirusFound.threat=high` split
    /// into NSX's scope and tag.
    pub scope: String,
    /// Tag value.
    pub tag: String,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for labs.
    pub insecure: bool,
    /// Timeout of one HTTP call.
    pub timeout_ms: u64,
}

impl NsxConfig {
    /// The password, from wherever it is given.
    ///
    /// # Errors
    ///
    /// It is given in more than one way, or its file or variable is missing.
    pub fn password(&self) -> Result<Secret, SecretError> {
        secret::resolve(
            "nsx password",
            &self.password,
            &SecretSource {
                file: self.password_file.clone(),
                env: self.password_env.clone(),
            },
        )
    }

    /// The token, from wherever it is given.
    ///
    /// # Errors
    ///
    /// As for [`password`](Self::password).
    pub fn token(&self) -> Result<Secret, SecretError> {
        secret::resolve(
            "nsx token",
            &self.token,
            &SecretSource {
                file: self.token_file.clone(),
                env: self.token_env.clone(),
            },
        )
    }
}

impl Default for NsxConfig {
    fn default() -> Self {
        NsxConfig {
            name: String::new(),
            url: String::new(),
            user: String::new(),
            password: Secret::default(),
            password_file: None,
            password_env: None,
            token_header: String::new(),
            token: Secret::default(),
            token_file: None,
            token_env: None,
            scope: "ANTI_VIRUS".into(),
            tag: "VirusFound.threat=high".into(),
            ca_file: None,
            insecure: false,
            timeout_ms: 10_000,
        }
    }
}

/// A generic webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name of this action (default "webhook").
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The HMAC-SHA256 key. The body is signed in the header
    /// `X-Giva-Signature: sha256=<hex>`; empty = no signature header.
    /// Printed as `<redacted>`; or `secret_file`, `secret_env`.
    pub secret: Secret,
    /// A file holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for labs.
    pub insecure: bool,
    /// Timeout of one HTTP call.
    pub timeout_ms: u64,
}

impl WebhookConfig {
    /// The signing key, from wherever it is given.
    ///
    /// # Errors
    ///
    /// It is given in more than one way, or its file or variable is missing.
    pub fn secret(&self) -> Result<Secret, SecretError> {
        secret::resolve(
            "webhook secret",
            &self.secret,
            &SecretSource {
                file: self.secret_file.clone(),
                env: self.secret_env.clone(),
            },
        )
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            url: String::new(),
            secret: Secret::default(),
            secret_file: None,
            secret_env: None,
            ca_file: None,
            insecure: false,
            timeout_ms: 10_000,
        }
    }
}

/// A command hook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CommandConfig {
    /// Name of this action (default "command").
    pub name: String,
    /// The program to run (no shell).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may run before it is killed and the attempt fails.
    pub timeout_ms: u64,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            name: String::new(),
            program: PathBuf::new(),
            args: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

const ACTION_EXAMPLES: &str = r#"
# No tagging action: quarantines are recorded in the store only. Examples:
#
# [[actions]]
# kind = "nsx"                  # POST /api/v1/fabric/virtual-machines?action=add_tags|remove_tags
# url = "https://nsx.example.com"
# user = "admin"                # basic auth; or token_header + token
# password_file = "/etc/giva/nsx-password"   # or password_env = "NSX_PASSWORD", or password = "..."
# scope = "ANTI_VIRUS"
# tag = "VirusFound.threat=high"
# ca_file = "/etc/giva/nsx-ca.pem"
# insecure = false
#
# [[actions]]
# kind = "webhook"              # JSON POST, header X-Giva-Signature: sha256=<hex HMAC of the body>
# url = "https://hooks.example.com/giva"
# secret_file = "/etc/giva/webhook-secret"  # or secret_env, or secret = "..."
#
# [[actions]]
# kind = "command"              # the event as JSON on stdin; exit 0 = applied
# program = "/usr/local/bin/giva-quarantine"
# args = []
# timeout_ms = 10000
"#;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or missing.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A secret cannot be read.
    #[error("invalid configuration: {0}")]
    Secret(#[from] SecretError),
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, parsed or validated.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a configuration from TOML text.
    ///
    /// # Errors
    ///
    /// The text cannot be parsed or validated.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML; with no action configured, followed by
    /// a commented example of each kind.
    pub fn to_toml(&self) -> String {
        let mut s =
            toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        if self.actions.is_empty() {
            s.push_str(ACTION_EXAMPLES);
        }
        s
    }

    /// Checks ranges and required fields.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let q = &self.quarantine;
        if q.concurrency == 0 {
            return Err(ConfigError::Invalid(
                "quarantine.concurrency must be at least 1".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.actions {
            if !names.insert(a.name().to_string()) {
                return Err(ConfigError::Invalid(format!(
                    "two actions are named '{}'; give each a distinct name",
                    a.name()
                )));
            }
            match a {
                ActionConfig::Nsx(c) => {
                    if c.url.is_empty() {
                        return Err(ConfigError::Invalid("nsx action without url".into()));
                    }
                    if c.tag.is_empty() {
                        return Err(ConfigError::Invalid("nsx action with an empty tag".into()));
                    }
                    c.password()?;
                    if !c.token()?.is_empty() && c.token_header.is_empty() {
                        return Err(ConfigError::Invalid(
                            "nsx action: token without token_header".into(),
                        ));
                    }
                }
                ActionConfig::Webhook(c) => {
                    if c.url.is_empty() {
                        return Err(ConfigError::Invalid("webhook action without url".into()));
                    }
                    c.secret()?;
                }
                ActionConfig::Command(c) => {
                    if c.program.as_os_str().is_empty() {
                        return Err(ConfigError::Invalid(
                            "command action without program".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_config_shows_no_secret_and_cannot_be_used_as_one() {
        let mut c = Config::default();
        c.actions.push(ActionConfig::Nsx(NsxConfig {
            url: "https://nsx".into(),
            user: "admin".into(),
            password: "nsx-hunter2".into(),
            token_header: "csp-auth-token".into(),
            token: "nsx-token-42".into(),
            ..NsxConfig::default()
        }));
        c.actions.push(ActionConfig::Webhook(WebhookConfig {
            url: "https://hook".into(),
            secret: "hook-key-7".into(),
            ..WebhookConfig::default()
        }));
        let printed = c.to_toml();
        for secret in ["nsx-hunter2", "nsx-token-42", "hook-key-7"] {
            assert!(!printed.contains(secret), "{printed}");
            assert!(!format!("{c:?}").contains(secret));
        }
        assert!(printed.contains("<redacted>"), "{printed}");
        // Fed back as it is, the redaction marker is refused as a secret.
        let e = Config::parse(&printed).expect_err("the marker is not a password");
        assert!(
            e.to_string()
                .contains("copied from a printed configuration"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nsx-password");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let nsx = NsxConfig {
            url: "https://nsx".into(),
            password_file: Some(file.clone()),
            ..NsxConfig::default()
        };
        assert_eq!(nsx.password().unwrap().expose(), "from-a-file");
        let both = NsxConfig {
            password: "inline".into(),
            ..nsx.clone()
        };
        assert!(both.password().is_err(), "one source only");
        let printed = Config {
            actions: vec![ActionConfig::Nsx(nsx)],
            ..Config::default()
        }
        .to_toml();
        assert!(printed.contains("password_file") && !printed.contains("from-a-file"));
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn printed_config_parses_back() {
        // Secrets given by file print as the file, so the printed
        // configuration is usable as it is.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "s").unwrap();
        let mut c = Config::default();
        c.actions.push(ActionConfig::Nsx(NsxConfig {
            url: "https://nsx".into(),
            ..NsxConfig::default()
        }));
        c.actions.push(ActionConfig::Webhook(WebhookConfig {
            url: "https://hook".into(),
            secret_file: Some(key),
            ..WebhookConfig::default()
        }));
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[quarantine]\nfoo = 1\n").is_err());
        assert!(Config::parse("[quarantine]\nconcurrency = 0\n").is_err());
        assert!(Config::parse("[[actions]]\nkind = \"nsx\"\n").is_err());
        assert!(Config::parse("[quarantine]\ntag_on = \"never\"\n").is_err());
    }
}
