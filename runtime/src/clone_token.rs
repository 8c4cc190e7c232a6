//! Clone tokens: what lets an instant clone get its own certificate from
//! its appliance with no manager round trip.
//!
//! A clone forked from a running parent carries the parent's memory, and
//! with it any key the parent held, so identity must come from something
//! that differs per clone: a token that the clone's customization step
//! hands in. The token names the VM, expires, and carries a random nonce;
//! it is signed (HMAC-SHA256) with a clone key that the manager keeps and
//! gives its appliances at enrollment, so an appliance checks it locally.
//!
//! Its form is `giva-clone-v1~VM~EXPIRES~NONCE~MAC`: `EXPIRES` in seconds
//! since the epoch, `NONCE` 16 hex digits, `MAC` the hex HMAC of all that
//! comes before it. VM ids carry no `~`.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// What every clone token starts with.
pub const PREFIX: &str = "giva-clone-v1";

/// The longest a clone token may be valid, in seconds (a day): a token that
/// claims more is refused, so that whoever held the clone key once cannot
/// keep using tokens it made long after the key is rotated, and a stolen
/// token is worth a day at most.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// A clone token that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneClaim {
    /// The VM it names.
    pub vm_id: String,
    /// When it expires (seconds since the epoch).
    pub expires: u64,
    /// Its nonce: a token is used once, and the nonce says which.
    pub nonce: String,
}

/// Why a clone token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloneTokenError {
    /// Not a clone token's form.
    #[error("not a clone token")]
    Malformed,
    /// The signature does not match: made with another key, or altered.
    #[error("the clone token's signature does not match (another manager's, or altered)")]
    BadSignature,
    /// Past its time.
    #[error("the clone token has expired")]
    Expired,
    /// Valid for longer than [`MAX_TTL_SECS`].
    #[error("the clone token is valid for longer than a day")]
    TooLong,
    /// The VM id cannot go in a token.
    #[error("'{0}' cannot be named in a clone token")]
    BadName(String),
}

fn mac(key: &[u8], body: &str) -> Vec<u8> {
    let mut m =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// True when a clone token may name `vm_id`.
fn valid_vm_id(vm_id: &str) -> bool {
    !vm_id.is_empty()
        && vm_id.len() <= 128
        && vm_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// A token for `vm_id`, valid until `expires` (seconds since the epoch),
/// signed with `key`.
///
/// # Errors
///
/// [`CloneTokenError::BadName`]; an I/O error reading randomness is
/// reported as `BadName` too, never as a token.
pub fn mint(key: &[u8], vm_id: &str, expires: u64) -> Result<String, CloneTokenError> {
    if !valid_vm_id(vm_id) {
        return Err(CloneTokenError::BadName(vm_id.to_string()));
    }
    let nonce = crate::token::random_hex(8)
        .map_err(|e| CloneTokenError::BadName(format!("{vm_id} (no randomness: {e})")))?;
    let body = format!("{PREFIX}~{vm_id}~{expires}~{nonce}");
    Ok(format!("{body}~{}", hex::encode(mac(key, &body))))
}

/// Checks a token against `key` at `now` (seconds since the epoch).
///
/// # Errors
///
/// [`CloneTokenError`]: malformed, signed with another key, or expired.
pub fn verify(key: &[u8], token: &str, now: u64) -> Result<CloneClaim, CloneTokenError> {
    let (body, given) = token.rsplit_once('~').ok_or(CloneTokenError::Malformed)?;
    let parts: Vec<&str> = body.split('~').collect();
    let [prefix, vm_id, expires, nonce] = parts[..] else {
        return Err(CloneTokenError::Malformed);
    };
    if prefix != PREFIX || nonce.len() != 16 || !valid_vm_id(vm_id) {
        return Err(CloneTokenError::Malformed);
    }
    let given = hex::decode(given).map_err(|_| CloneTokenError::Malformed)?;
    if !bool::from(given.ct_eq(&mac(key, body))) {
        return Err(CloneTokenError::BadSignature);
    }
    let expires: u64 = expires.parse().map_err(|_| CloneTokenError::Malformed)?;
    if expires <= now {
        return Err(CloneTokenError::Expired);
    }
    if expires > now.saturating_add(MAX_TTL_SECS) {
        return Err(CloneTokenError::TooLong);
    }
    Ok(CloneClaim {
        vm_id: vm_id.to_string(),
        expires,
        nonce: nonce.to_string(),
    })
}

/// True when `token` has a clone token's prefix (and so is checked here,
/// not by the manager).
pub fn is_clone_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_checks_out_with_its_key_only_and_until_it_expires() {
        let key = b"the clone key";
        let t = mint(key, "clone-7", 2_000).unwrap();
        assert!(is_clone_token(&t));
        let claim = verify(key, &t, 1_000).unwrap();
        assert_eq!((claim.vm_id.as_str(), claim.expires), ("clone-7", 2_000));
        assert_eq!(
            verify(b"another key", &t, 1_000),
            Err(CloneTokenError::BadSignature)
        );
        assert_eq!(verify(key, &t, 2_000), Err(CloneTokenError::Expired));
        // Another VM's name, or a later expiry, breaks the signature.
        let forged = t.replace("clone-7", "clone-8");
        assert_eq!(
            verify(key, &forged, 1_000),
            Err(CloneTokenError::BadSignature)
        );
        let forged = t.replace("~2000~", "~9000~");
        assert_eq!(
            verify(key, &forged, 1_000),
            Err(CloneTokenError::BadSignature)
        );
        assert_eq!(
            verify(key, "giva-clone-v1~x", 0),
            Err(CloneTokenError::Malformed)
        );
        assert!(matches!(
            mint(key, "a~b", 1),
            Err(CloneTokenError::BadName(_))
        ));
        // Two tokens for one VM differ by their nonce.
        let again = mint(key, "clone-7", 2_000).unwrap();
        assert_ne!(verify(key, &again, 0).unwrap().nonce, claim.nonce);
    }
}
