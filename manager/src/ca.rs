//! The manager's certificate authority: it signs the certificates that
//! appliances show the manager, that appliances show shims, and that shims
//! show appliances, so that each link can check the other end; and the
//! delegated CAs that let appliances sign instant clones' certificates.
//!
//! What goes in a certificate is [`giva_proto::issue`]'s, shared with the
//! appliances' delegated CAs. Where the CA is kept, and its generations,
//! revocations and enrollment tokens, is [`crate::pki`]'s; this module
//! signs. (Releases before the store kept the CA in files; [`Ca::load`]
//! reads them, and [`crate::pki::Pki::init`] adopts them.)

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use giva_proto::issue::Signed as Issued;
use giva_proto::issue::{
    IssueError, delegate_params, issuer, leaf_params, micros, serial_number, sign_new_key,
    sign_request, validity,
};
pub use giva_proto::tls::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why the CA cannot do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// There is no CA in the directory.
    #[error("no CA in {} (make one with `giva-manager ca init`)", dir.display())]
    Missing {
        /// The directory.
        dir: PathBuf,
    },
    /// A certificate or key cannot be made or parsed.
    #[error("{what}: {source}")]
    Cert {
        /// What was being done.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
    /// A certificate cannot be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// The CA: its certificate and the key it signs with.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(<key redacted>)")
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> CaError + '_ {
    move |source| CaError::Cert {
        what: what.to_string(),
        source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `text` to `path`, readable by its owner only if `private`.
///
/// # Errors
///
/// The file cannot be written.
pub fn write_file(path: &Path, text: &str, private: bool) -> Result<(), CaError> {
    giva_runtime::dirs::write_file(path, text, private).map_err(io_err(path))
}

fn hours(days: u32) -> u32 {
    days.saturating_mul(24)
}

impl Ca {
    /// The CA's certificate file in `dir`.
    fn cert_path(dir: &Path) -> PathBuf {
        dir.join("ca.pem")
    }

    fn key_path(dir: &Path) -> PathBuf {
        dir.join("ca.key")
    }

    /// Loads the CA an earlier release kept in `dir` (`ca.pem`, `ca.key`).
    ///
    /// # Errors
    ///
    /// [`CaError::Missing`] when there is none, or it cannot be read.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let key_path = Self::key_path(dir);
        if !key_path.exists() {
            return Err(CaError::Missing {
                dir: dir.to_owned(),
            });
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let cert_path = Self::cert_path(dir);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA of a certificate and its key.
    ///
    /// # Errors
    ///
    /// [`CaError`]: either cannot be read.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            issuer: issuer(cert_pem, key_pem)?,
        })
    }

    /// A new CA: an ECDSA P-256 key and a self-signed certificate, valid
    /// ten years, named `giva CA` and a random tag (so that another giva
    /// CA is told apart by name).
    ///
    /// # Errors
    ///
    /// [`CaError`]: no randomness, or the certificate cannot be made.
    pub fn generate() -> Result<Issued, CaError> {
        let key = KeyPair::generate().map_err(cert_err("generate the CA key"))?;
        let mut params = CertificateParams::default();
        let (number, serial) = serial_number()?;
        params.serial_number = Some(number);
        validity(&mut params, hours(3650));
        let mut dn = DistinguishedName::new();
        let tag = giva_runtime::token::random_hex(4).map_err(IssueError::from)?;
        dn.push(DnType::CommonName, format!("giva CA {tag}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let not_after_us = micros(params.not_after);
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("sign the CA certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            not_after_us,
        })
    }

    /// A revocation list, numbered `number`, of the certificates this CA
    /// signed that were revoked: their serial numbers (hex) and when.
    ///
    /// # Errors
    ///
    /// [`CaError::Cert`]: a serial number is not hex, or signing fails.
    pub fn revocation_list(
        &self,
        revoked: &[(String, i64)],
        number: u64,
    ) -> Result<String, CaError> {
        let now = time::OffsetDateTime::now_utc();
        let mut certs = Vec::with_capacity(revoked.len());
        for (serial, at_us) in revoked {
            let Ok(bytes) = hex::decode(serial) else {
                tracing::warn!(%serial, "a revoked serial number that is not hex is left out");
                continue;
            };
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*at_us) * 1000)
                .unwrap_or(now);
            certs.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&bytes),
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(30),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(cert_err("sign the revocation list"))?;
        crl.pem().map_err(cert_err("write the revocation list"))
    }

    /// The CA's certificate, as PEM (what peers trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a certificate and a new key for `name` in `role` (see
    /// [`giva_proto::issue::leaf_params`]), also valid for `dns` names and
    /// `ips`, for `days`. A VM's certificate is for a client only; an
    /// appliance's and a server's serve too.
    ///
    /// # Errors
    ///
    /// [`CaError`]: a name is not valid in a certificate.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        dns: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, CaError> {
        let (params, serial) = leaf_params(name, role, dns, ips, hours(days))?;
        Ok(sign_new_key(&self.issuer, params, serial)?)
    }

    /// Signs a certificate for `name` in `role`, also valid for `dns` names
    /// and `ips`, valid `days`, for the key of a certificate signing
    /// request. Only the request's key is used.
    ///
    /// # Errors
    ///
    /// [`CaError`]: the request is not valid, or signing fails.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        name: &str,
        role: Role,
        dns: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, CaError> {
        let (params, serial) = leaf_params(name, role, dns, ips, hours(days))?;
        Ok(sign_request(&self.issuer, csr_pem, params, serial)?)
    }

    /// Signs a delegated CA for `appliance` (see
    /// [`giva_proto::issue::delegate_params`]), valid `days`: for a
    /// request's key, or with a new key when `csr_pem` is `None`.
    ///
    /// # Errors
    ///
    /// [`CaError`]: the request is not valid, or signing fails.
    pub fn sign_delegate(
        &self,
        appliance: &str,
        csr_pem: Option<&str>,
        days: u32,
    ) -> Result<Issued, CaError> {
        let (params, serial) = delegate_params(appliance, hours(days))?;
        Ok(match csr_pem {
            Some(csr) => sign_request(&self.issuer, csr, params, serial)?,
            None => sign_new_key(&self.issuer, params, serial)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_certificates_that_name_their_holder_and_role() {
        let made = Ca::generate().unwrap();
        let ca = Ca::from_pem(&made.cert_pem, &made.key_pem).unwrap();
        let issued = ca
            .issue(
                "vm-42",
                Role::Vm,
                &["host.example".into()],
                &["127.0.0.1".parse().unwrap()],
                1,
            )
            .unwrap();
        use giva_proto::tls::certificate_role_name_pem as role_name;
        assert_eq!(
            role_name(&issued.cert_pem, Role::Vm).as_deref(),
            Some("vm-42")
        );
        assert_eq!(
            role_name(&issued.cert_pem, Role::Appliance),
            None,
            "a VM's certificate never names an appliance"
        );
        assert_eq!(
            giva_proto::tls::certificate_name_pem(&issued.cert_pem).as_deref(),
            Some("vm-42")
        );
    }

    #[test]
    fn a_ca_kept_in_files_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Ca::load(dir.path()), Err(CaError::Missing { .. })));
        let made = Ca::generate().unwrap();
        write_file(&dir.path().join("ca.key"), &made.key_pem, true).unwrap();
        write_file(&dir.path().join("ca.pem"), &made.cert_pem, false).unwrap();
        assert_eq!(Ca::load(dir.path()).unwrap().cert_pem(), made.cert_pem);
    }
}
