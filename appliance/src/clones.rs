//! Instant clones' certificates, signed here: a clone enrolls with a clone
//! token that its customization step handed in, and the appliance, which
//! holds a CA the manager delegated to it and the clone key, checks the
//! token and signs a short-lived certificate for the VM it names. No
//! manager round trip, so a storm of clones registers at the appliance's
//! pace.
//!
//! - A token is used once: its nonce is remembered until it expires, and
//!   no token is valid for more than a day. The nonces are kept in a
//!   journal beside the outbox, so a restart does not forget them (it is
//!   written, not synced: a host crash can lose the last few). Another
//!   appliance does not know them; `docs/security.md` says so.
//! - The certificate names the VM (`giva:vm:NAME`), is for a client only,
//!   and lives `clones.cert_hours`. The delegated CA's own constraints keep
//!   it from naming any host.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use giva_proto::issue::{issuer, leaf_params, sign_request};
use giva_proto::tls::Role;
use giva_runtime::clone_token;
use rcgen::{Issuer, KeyPair};
use tonic::Status;

use crate::config::ClonesConfig;

/// Nonces remembered at most; beyond, clone enrollments wait for tokens to
/// expire.
const MAX_REMEMBERED: usize = 1_000_000;

/// Signs clones' certificates.
pub struct CloneSigner {
    keys: arc_swap::ArcSwap<Keys>,
    hours: u32,
    used: Mutex<Used>,
}

/// The nonces used and not yet expired, and the journal they are kept in.
struct Used {
    live: HashMap<String, u64>,
    /// The journal's path, its open file, and the lines written to it.
    journal: Option<(PathBuf, std::fs::File, usize)>,
}

impl Used {
    /// The nonces `path` keeps that are still in their time; the journal
    /// is written anew with only those, and kept open for appending.
    fn open(path: Option<&Path>, now: u64) -> Result<Self, String> {
        let mut used = Used {
            live: HashMap::new(),
            journal: None,
        };
        let Some(path) = path else {
            return Ok(used);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    let Some((expires, nonce)) = line.split_once(' ') else {
                        continue;
                    };
                    let (Ok(expires), Ok(nonce)) = (expires.parse::<u64>(), hex::decode(nonce))
                    else {
                        continue;
                    };
                    if expires > now {
                        used.live
                            .insert(String::from_utf8_lossy(&nonce).into_owned(), expires);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(journal_error(path, &e)),
        }
        used.rewrite(path).map_err(|e| journal_error(path, &e))?;
        Ok(used)
    }

    /// Writes the journal anew with the live nonces only, and keeps it
    /// open for appending.
    fn rewrite(&mut self, path: &Path) -> std::io::Result<()> {
        let text: String = self.live.iter().map(|(n, e)| journal_line(n, *e)).collect();
        giva_runtime::dirs::write_file(path, &text, true)?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        self.journal = Some((path.to_owned(), file, self.live.len()));
        Ok(())
    }

    /// Remembers `nonce` until `expires`, in the journal too; the journal
    /// is written anew once expired lines outnumber the live ones, so it
    /// stays the size of what is in its time.
    fn remember(&mut self, nonce: &str, expires: u64) {
        self.live.insert(nonce.to_owned(), expires);
        let Some((path, file, lines)) = &mut self.journal else {
            return;
        };
        let written = file.write_all(journal_line(nonce, expires).as_bytes());
        *lines += 1;
        let compact = *lines > 2 * self.live.len() + 1024;
        let path = path.clone();
        if let Err(e) = written.and_then(|()| if compact { self.rewrite(&path) } else { Ok(()) }) {
            // Still used once while this process runs.
            tracing::warn!(error = %e, "cannot keep a clone token's nonce in the journal");
        }
    }
}

fn journal_error(path: &Path, e: &std::io::Error) -> String {
    format!("the clone-token journal {}: {e}", path.display())
}

fn journal_line(nonce: &str, expires: u64) -> String {
    format!("{expires} {}\n", hex::encode(nonce.as_bytes()))
}

/// What [`CloneSigner::reload`] reads again: the delegated CA and the
/// clone key.
struct Keys {
    issuer: Issuer<'static, KeyPair>,
    delegate_pem: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for CloneSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloneSigner(<keys redacted>)")
    }
}

fn read(what: &str, path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("clones.{what} {}: {e}", path.display()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CloneSigner {
    /// The signer `config` describes, remembering used nonces in `journal`
    /// (`None`: in memory only); `None` when it names no files.
    ///
    /// # Errors
    ///
    /// Some files are given and others not, or one cannot be read; the
    /// journal cannot be read or written.
    pub fn load(config: &ClonesConfig, journal: Option<PathBuf>) -> Result<Option<Self>, String> {
        let given = [
            &config.delegate_cert_file,
            &config.delegate_key_file,
            &config.clone_key_file,
        ]
        .map(|p| !p.as_os_str().is_empty());
        if given.iter().all(|g| !g) {
            return Ok(None);
        }
        if !given.iter().all(|g| *g) {
            return Err(
                "clones needs all of delegate_cert_file, delegate_key_file and clone_key_file"
                    .into(),
            );
        }
        if config.cert_hours == 0 {
            return Err("clones.cert_hours must be at least 1".into());
        }
        Ok(Some(CloneSigner {
            keys: arc_swap::ArcSwap::from_pointee(Self::keys(config)?),
            hours: config.cert_hours,
            used: Mutex::new(Used::open(journal.as_deref(), now_secs())?),
        }))
    }

    /// Reads the delegated CA and the clone key again (a rotated clone
    /// key, a renewed delegated CA); the nonces used so far stay
    /// remembered. On an error the keys in use stay.
    ///
    /// # Errors
    ///
    /// A file cannot be read or used.
    pub fn reload(&self, config: &ClonesConfig) -> Result<(), String> {
        self.keys.store(std::sync::Arc::new(Self::keys(config)?));
        Ok(())
    }

    fn keys(config: &ClonesConfig) -> Result<Keys, String> {
        let delegate_pem = read("delegate_cert_file", &config.delegate_cert_file)?;
        let key_pem = read("delegate_key_file", &config.delegate_key_file)?;
        let clone_key = read("clone_key_file", &config.clone_key_file)?;
        let key = hex::decode(clone_key.trim()).map_err(|_| {
            format!(
                "clones.clone_key_file {}: not a hex key",
                config.clone_key_file.display()
            )
        })?;
        let issuer =
            issuer(&delegate_pem, &key_pem).map_err(|e| format!("the delegated CA: {e}"))?;
        Ok(Keys {
            issuer,
            delegate_pem,
            key,
        })
    }

    /// Checks `token` and signs `csr_pem` for the VM it names; returns the
    /// VM id and the certificate followed by the delegated CA (the chain a
    /// shim shows).
    ///
    /// # Errors
    ///
    /// `PERMISSION_DENIED` for a token that is forged, expired or used;
    /// `INVALID_ARGUMENT` for a bad request.
    pub fn sign(&self, token: &str, csr_pem: &str) -> Result<(String, String), Status> {
        let now = now_secs();
        let keys = self.keys.load();
        let claim = clone_token::verify(&keys.key, token, now)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            Status::invalid_argument(format!("the certificate signing request is not valid: {e}"))
        })?;
        {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            used.live.retain(|_, expires| *expires > now);
            if used.live.contains_key(&claim.nonce) {
                return Err(Status::permission_denied(
                    "the clone token was used already",
                ));
            }
            if used.live.len() >= MAX_REMEMBERED {
                return Err(Status::resource_exhausted(
                    "too many clone tokens in their time; try again later",
                ));
            }
            used.remember(&claim.nonce, claim.expires);
        }
        let (params, serial) = leaf_params(&claim.vm_id, Role::Vm, &[], &[], self.hours)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signed = sign_request(&keys.issuer, csr_pem, params, serial)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((
            claim.vm_id,
            format!("{}{}", signed.cert_pem, keys.delegate_pem),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal keeps what is in its time across a restart, and is
    /// written anew once expired lines outnumber live ones.
    #[test]
    fn the_nonce_journal_survives_a_restart_and_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clone-nonces");
        let mut used = Used::open(Some(&path), 100).unwrap();
        for i in 0..2000 {
            used.remember(&format!("nonce-{i:05}"), 200);
        }
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines(), 2000);
        // All of them expire; the next one compacts the journal.
        used.live.clear();
        used.remember("fresh", 500);
        assert_eq!(lines(), 1);
        let again = Used::open(Some(&path), 300).unwrap();
        assert!(again.live.contains_key("fresh"));
        assert_eq!(again.live.len(), 1);
        // Expired at the next start: not kept.
        let later = Used::open(Some(&path), 600).unwrap();
        assert!(later.live.is_empty());
        assert_eq!(lines(), 0);
    }
}
