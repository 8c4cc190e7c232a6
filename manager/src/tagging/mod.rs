//! Tagging actions: what quarantines a VM outside the manager.
//!
//! [`TagAction`] is the plug: [`nsx::NsxAction`] (NSX-T Manager API),
//! [`webhook::WebhookAction`] (a signed JSON POST) and
//! [`command::CommandAction`] (a program with the event on stdin).
//! [`build`] turns the configuration into actions. The worker that runs
//! them with retries and a concurrency limit is [`crate::tagger::Tagger`].

pub mod command;
pub mod nsx;
pub mod webhook;

use std::sync::Arc;

use crate::config::{ActionConfig, Config};

/// The VM an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRef {
    /// The VM id as reported by the shim; for NSX, the VM's external id
    /// (instance UUID).
    pub vm_id: String,
    /// Its name, when known.
    pub name: String,
    /// The appliance serving it.
    pub appliance_id: String,
}

/// One call of an action: add or remove the tag on a VM, with the event
/// document that webhooks and commands receive.
#[derive(Debug, Clone)]
pub struct TagRequest {
    /// The VM.
    pub vm: VmRef,
    /// True to add the tag, false to remove it.
    pub tag: bool,
    /// The event as JSON (see [`crate::store::ActionRow::payload`]).
    pub payload: String,
}

/// Why one attempt of an action failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The endpoint answered with an error status.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The endpoint could not be reached, or the call timed out.
    #[error("transport: {0}")]
    Transport(String),
    /// The command could not be started.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// The command ran longer than its timeout and was killed.
    #[error("timed out after {ms} ms")]
    Timeout {
        /// The timeout.
        ms: u64,
    },
    /// The command exited with a failure.
    #[error("exit status {code}: {stderr}")]
    Exit {
        /// Exit code (-1 if killed by a signal).
        code: i32,
        /// The end of its standard error.
        stderr: String,
    },
    /// The action cannot be built from its configuration.
    #[error("configuration: {0}")]
    Config(String),
}

/// A way to add or remove the quarantine tag.
#[async_trait::async_trait]
pub trait TagAction: Send + Sync + std::fmt::Debug + 'static {
    /// Adds (`request.tag`) or removes the tag. One attempt; the caller
    /// retries.
    ///
    /// # Errors
    ///
    /// The attempt failed; the error says why.
    async fn apply(&self, request: &TagRequest) -> Result<(), ActionError>;
}

/// A configured action with its name.
#[derive(Debug, Clone)]
pub struct NamedAction {
    /// The name in the store and in `last_action`.
    pub name: String,
    /// The action.
    pub action: Arc<dyn TagAction>,
}

/// Builds the configured actions.
///
/// # Errors
///
/// An action cannot be built (for example an unreadable CA file).
pub fn build(config: &Config) -> Result<Vec<NamedAction>, ActionError> {
    config
        .actions
        .iter()
        .map(|a| {
            let action: Arc<dyn TagAction> = match a {
                ActionConfig::Nsx(c) => Arc::new(nsx::NsxAction::new(c)?),
                ActionConfig::Webhook(c) => Arc::new(webhook::WebhookAction::new(c)?),
                ActionConfig::Command(c) => Arc::new(command::CommandAction::new(c)),
            };
            Ok(NamedAction {
                name: a.name().to_string(),
                action,
            })
        })
        .collect()
}

/// An HTTP client with an optional extra CA and an explicit insecure mode.
pub(crate) fn http_client(
    ca_file: Option<&std::path::Path>,
    insecure: bool,
    timeout_ms: u64,
) -> Result<reqwest::Client, ActionError> {
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms.max(1)))
        .connect_timeout(std::time::Duration::from_millis(timeout_ms.clamp(1, 5_000)))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("giva-manager/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ActionError::Config(format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ActionError::Config(format!("{}: {e}", path.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if insecure {
        tracing::warn!("TLS certificate verification is off for a tagging action");
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| ActionError::Config(format!("HTTP client: {e}")))
}

/// Sends `req`; a non-2xx status is an error carrying the start of the body.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<(), ActionError> {
    let resp = req
        .send()
        .await
        .map_err(|e| ActionError::Transport(error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(ActionError::Http {
        status: status.as_u16(),
        body: truncate(&body, 200),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
