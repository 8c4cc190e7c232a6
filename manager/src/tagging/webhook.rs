//! A generic webhook: the event as a JSON POST, signed with HMAC-SHA256.
//!
//! The header `X-Giva-Signature: sha256=<hex>` carries
//! `HMAC-SHA256(secret, raw body)` in lower-case hex. A receiver recomputes
//! it over the bytes it received and compares in constant time.

use hmac::{KeyInit, Mac};

use super::{ActionError, TagAction, TagRequest, http_client, send};
use crate::config::WebhookConfig;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Giva-Signature";

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts events to a URL.
#[derive(Debug)]
pub struct WebhookAction {
    client: reqwest::Client,
    config: WebhookConfig,
    secret: giva_runtime::Secret,
}

impl WebhookAction {
    /// A webhook for `config`.
    ///
    /// # Errors
    ///
    /// The CA file cannot be read or the HTTP client cannot be built.
    pub fn new(config: &WebhookConfig) -> Result<Self, ActionError> {
        Ok(WebhookAction {
            secret: config
                .secret()
                .map_err(|e| ActionError::Config(e.to_string()))?,
            client: http_client(
                config.ca_file.as_deref(),
                config.insecure,
                config.timeout_ms,
            )?,
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl TagAction for WebhookAction {
    async fn apply(&self, request: &TagRequest) -> Result<(), ActionError> {
        let body = request.payload.clone().into_bytes();
        let mut req = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if !self.secret.is_empty() {
            req = req.header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), &body),
            );
        }
        send(req.body(body)).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc4231_case_2() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
