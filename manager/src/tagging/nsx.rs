//! The NSX-T Manager API client.
//!
//! Adds and removes one tag on a VM through the documented fabric
//! actions:
//!
//! ```text
//! POST {url}/api/v1/fabric/virtual-machines?action=add_tags
//! POST {url}/api/v1/fabric/virtual-machines?action=remove_tags
//! {"external_id": "<vm id>", "tags": [{"scope": "ANTI_VIRUS", "tag": "VirusFound.threat=high"}]}
//! ```
//!
//! The body is NSX's `VirtualMachineTagUpdate`; NSX answers 204 (any 2xx is
//! success). Both calls are idempotent on the NSX side, so a retry after a
//! lost answer does no harm. Authentication is HTTP basic (user and
//! password) or a token in a configured header.

use giva_runtime::Secret;
use giva_runtime::secret::SecretError;
use serde::Serialize;

use super::{ActionError, TagAction, TagRequest, http_client, send};
use crate::config::NsxConfig;

/// The path of the fabric virtual-machines collection.
pub const VIRTUAL_MACHINES_PATH: &str = "/api/v1/fabric/virtual-machines";

/// NSX's `Tag`.
#[derive(Debug, Clone, Serialize)]
pub struct NsxTag {
    /// Scope (may be empty).
    pub scope: String,
    /// Tag.
    pub tag: String,
}

/// NSX's `VirtualMachineTagUpdate`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualMachineTagUpdate {
    /// The VM's external id (instance UUID).
    pub external_id: String,
    /// Tags to add or remove.
    pub tags: Vec<NsxTag>,
}

/// Tags VMs through the NSX-T Manager API.
#[derive(Debug)]
pub struct NsxAction {
    client: reqwest::Client,
    base: String,
    config: NsxConfig,
    password: Secret,
    token: Secret,
}

impl NsxAction {
    /// A client for `config`.
    ///
    /// # Errors
    ///
    /// The CA file cannot be read or the HTTP client cannot be built.
    pub fn new(config: &NsxConfig) -> Result<Self, ActionError> {
        let secret =
            |r: Result<Secret, SecretError>| r.map_err(|e| ActionError::Config(e.to_string()));
        Ok(NsxAction {
            password: secret(config.password())?,
            token: secret(config.token())?,
            client: http_client(
                config.ca_file.as_deref(),
                config.insecure,
                config.timeout_ms,
            )?,
            base: config.url.trim_end_matches('/').to_string(),
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl TagAction for NsxAction {
    async fn apply(&self, request: &TagRequest) -> Result<(), ActionError> {
        let action = if request.tag {
            "add_tags"
        } else {
            "remove_tags"
        };
        let url = format!("{}{VIRTUAL_MACHINES_PATH}?action={action}", self.base);
        let body = VirtualMachineTagUpdate {
            external_id: request.vm.vm_id.clone(),
            tags: vec![NsxTag {
                scope: self.config.scope.clone(),
                tag: self.config.tag.clone(),
            }],
        };
        let mut req = self.client.post(url).json(&body);
        if !self.config.user.is_empty() {
            req = req.basic_auth(&self.config.user, Some(self.password.expose()));
        }
        if !self.token.is_empty() {
            req = req.header(self.config.token_header.as_str(), self.token.expose());
        }
        send(req).await
    }
}
