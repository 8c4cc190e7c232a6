//! TLS for every gRPC link: certificates and keys read from PEM files, the
//! peer named by its certificate, and the rules that keep plaintext off the
//! network.
//!
//! - A server with a certificate serves TLS ([`ServerTls`]); with a client
//!   CA as well, it asks clients for a certificate, and [`peer_name`] says
//!   whom it names. Its files are read again on [`ServerTls::reload`].
//! - A client to an `https://` URL uses TLS and never falls back to
//!   plaintext ([`endpoint`] refuses an `https://` URL without a TLS
//!   configuration, and an `http://` URL with one).
//! - A server without TLS may listen on loopback only, unless told
//!   `insecure_plaintext` ([`check_plaintext`]).
//! - Handshake failures are named: an expired certificate, an unknown CA,
//!   a name mismatch ([`explain`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

mod server;

pub use server::{ServerFiles, ServerTls};

/// Why a TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// Which file ("certificate", "key", "CA").
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{what} {}: no PEM {expected} in it", path.display())]
    NotPem {
        /// Which file.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// What was looked for.
        expected: &'static str,
    },
    /// A certificate is given without its key, or the other way round.
    #[error("a TLS certificate needs its key, and a key its certificate")]
    Unpaired,
    /// The URL's scheme and the TLS configuration disagree.
    #[error("{0}")]
    Scheme(String),
    /// The URL is not a valid endpoint.
    #[error("invalid URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A file holds something that cannot be used.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A plaintext listener on a network address.
    #[error(
        "{what} would listen on {addr} without TLS: give it a certificate and key, or \
         listen on loopback, or accept plaintext on this network with --insecure-plaintext"
    )]
    Plaintext {
        /// Which listener.
        what: String,
        /// Where.
        addr: SocketAddr,
    },
}

fn read(what: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(expected) {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            expected,
        });
    }
    Ok(bytes)
}

fn certificate(path: &Path) -> Result<Certificate, TlsError> {
    Ok(Certificate::from_pem(read("CA", path, "CERTIFICATE")?))
}

fn identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    Ok(Identity::from_pem(
        read("certificate", cert, "CERTIFICATE")?,
        read("key", key, "PRIVATE KEY")?,
    ))
}

/// A certificate and its key, as files (empty paths: none).
fn pair<'a>(cert: &'a Path, key: &'a Path) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((cert, key))),
        _ => Err(TlsError::Unpaired),
    }
}

/// A client's TLS: the CA the server's certificate must chain to, and the
/// client's own certificate and key (empty: none). `None` when no CA is
/// given.
///
/// # Errors
///
/// [`TlsError`]: a file is missing or not PEM, a certificate lacks its key.
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Option<ClientTlsConfig>, TlsError> {
    let own = pair(cert, key)?;
    if ca.as_os_str().is_empty() {
        return match own {
            None => Ok(None),
            Some(_) => Err(TlsError::Scheme(
                "a client certificate is given without the CA to check the server with".into(),
            )),
        };
    }
    let mut config = ClientTlsConfig::new().ca_certificate(certificate(ca)?);
    if let Some((cert, key)) = own {
        config = config.identity(identity(cert, key)?);
    }
    Ok(Some(config))
}

/// A client's TLS files: the CA the server's certificate must chain to,
/// and the client's own certificate and key (empty paths: none). Read
/// when a connection is made, so a missing file is named then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA (needed for `https://`).
    pub ca: PathBuf,
    /// This client's certificate (shown when the server asks).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl ClientFiles {
    /// The configuration these files make (`None`: no CA, plaintext).
    ///
    /// # Errors
    ///
    /// As for [`client_config`].
    pub fn config(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        client_config(&self.ca, &self.cert, &self.key)
    }

    /// The endpoint for `url` with these files (see [`endpoint`]).
    ///
    /// # Errors
    ///
    /// As for [`endpoint`] and [`client_config`].
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        endpoint(url, self.config()?)
    }
}

/// The endpoint for `url`: TLS for `https://` (which needs `tls`), and
/// plaintext for `http://` (which must not have it). A `https://` URL never
/// falls back to plaintext.
///
/// # Errors
///
/// [`TlsError::Scheme`] when the scheme and `tls` disagree,
/// [`TlsError::Url`] for an invalid URL.
pub fn endpoint(url: &str, tls: Option<ClientTlsConfig>) -> Result<Endpoint, TlsError> {
    let bad = |reason: String| TlsError::Url {
        url: url.to_string(),
        reason,
    };
    let https = url.starts_with("https://");
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| bad(e.to_string()))?;
    match (https, tls) {
        (true, Some(tls)) => endpoint.tls_config(tls).map_err(|e| bad(e.to_string())),
        (true, None) => Err(TlsError::Scheme(format!(
            "{url} needs TLS: give the CA that signed its certificate (--ca-file)"
        ))),
        (false, Some(_)) => Err(TlsError::Scheme(format!(
            "a CA is given but {url} is plaintext: use https://"
        ))),
        (false, None) => Ok(endpoint),
    }
}

/// True for addresses only this host can reach.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Refuses a plaintext listener on a network address, unless the operator
/// accepted plaintext with `insecure_plaintext` (then it only warns).
///
/// # Errors
///
/// [`TlsError::Plaintext`].
pub fn check_plaintext(
    what: &str,
    addr: &SocketAddr,
    tls: bool,
    insecure_plaintext: bool,
) -> Result<(), TlsError> {
    if tls || is_loopback(addr) {
        return Ok(());
    }
    if insecure_plaintext {
        return Ok(());
    }
    Err(TlsError::Plaintext {
        what: what.to_string(),
        addr: *addr,
    })
}

/// What a certificate from the manager's CA was issued for. The role is a
/// SAN URI `giva:ROLE:NAME`, so that a VM's certificate (which sits in the
/// guest, where malware can read it) can never speak for an appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An appliance (serves shims, reports to the manager).
    Appliance,
    /// A VM's shim.
    Vm,
    /// A server only (the manager's listener).
    Server,
}

impl Role {
    /// The role's name in the URI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Appliance => "appliance",
            Role::Vm => "vm",
            Role::Server => "server",
        }
    }

    /// The SAN URI that gives `name` this role.
    pub fn uri(self, name: &str) -> String {
        format!("giva:{}:{name}", self.as_str())
    }
}

/// The name a DER certificate gives its holder in `role` (its
/// `giva:ROLE:NAME` SAN URI), if it was issued for that role.
pub fn certificate_role_name(der: &[u8], role: Role) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let prefix = format!("giva:{}:", role.as_str());
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => {
                    u.strip_prefix(prefix.as_str()).map(str::to_string)
                }
                _ => None,
            })
        })
}

/// The name a DER certificate gives its subject: its common name, else its
/// first DNS name.
pub fn certificate_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                _ => None,
            })
        })
}

/// The name the first certificate in PEM text gives its subject.
pub fn certificate_name_pem(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    certificate_name(&block.contents)
}

/// The name the first certificate in PEM text gives its holder in `role`.
pub fn certificate_role_name_pem(pem: &str, role: Role) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    certificate_role_name(&block.contents, role)
}

/// The serial number (lower-case hex) of the first certificate in `pem`.
pub fn certificate_serial_pem(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    Some(
        cert.raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Whether the peer of `request` showed a certificate (the server's TLS
/// has a client CA, and the certificate chains to it).
pub fn peer_has_certificate<T>(request: &tonic::Request<T>) -> bool {
    request.peer_certs().is_some_and(|c| !c.is_empty())
}

/// The name the peer of `request` has in `role`, by the certificate it
/// showed: `None` without a certificate, or with one issued for another
/// role.
pub fn peer_name<T>(request: &tonic::Request<T>, role: Role) -> Option<String> {
    let certs = request.peer_certs()?;
    certs
        .first()
        .and_then(|c| certificate_role_name(c.as_ref(), role))
}

/// A connection error, with what a TLS failure means in plain words.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    let all = chain.join(": ");
    let hint = if all.contains("CertificateRevoked") {
        Some("this certificate was revoked: enroll again or get a new one")
    } else if all.contains("alert: UnknownCA") || all.contains("alert: BadCertificate") {
        Some("the server does not trust the CA that signed this certificate")
    } else if all.contains("Expired") || all.contains("expired") {
        Some("the certificate has expired")
    } else if all.contains("UnknownIssuer")
        || all.contains("unknown issuer")
        || all.contains("BadSignature")
    {
        Some("the certificate is signed by a CA that is not trusted here")
    } else if all.contains("NotValidForName") || all.contains("not valid for name") {
        Some("the certificate does not name the host connected to")
    } else if all.contains("CertificateRequired") || all.contains("certificate required") {
        Some("the server wants a client certificate")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{h} ({all})"),
        None => all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_never_falls_back_and_http_never_upgrades() {
        let e = endpoint("https://10.0.0.5:7412", None).unwrap_err();
        assert!(e.to_string().contains("needs TLS"), "{e}");
        assert!(endpoint("http://127.0.0.1:7412", None).is_ok());
        let tls = ClientTlsConfig::new();
        let e = endpoint("http://10.0.0.5:7412", Some(tls)).unwrap_err();
        assert!(e.to_string().contains("plaintext"), "{e}");
    }

    #[test]
    fn plaintext_stays_on_loopback_unless_accepted() {
        let lo: SocketAddr = "127.0.0.1:7411".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7411".parse().unwrap();
        let net: SocketAddr = "0.0.0.0:7411".parse().unwrap();
        assert!(check_plaintext("x", &lo, false, false).is_ok());
        assert!(check_plaintext("x", &lo6, false, false).is_ok());
        let e = check_plaintext("the shim listener", &net, false, false).unwrap_err();
        assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
        assert!(check_plaintext("x", &net, true, false).is_ok());
        assert!(check_plaintext("x", &net, false, true).is_ok());
    }

    #[test]
    fn files_are_named_when_missing_or_not_pem() {
        let dir = std::env::temp_dir().join(format!("giva-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = client_config(&junk, Path::new(""), Path::new("")).unwrap_err();
        assert!(
            e.to_string().contains("junk.pem") && e.to_string().contains("no PEM"),
            "{e}"
        );
        let e = client_config(&dir.join("none.pem"), Path::new(""), Path::new("")).unwrap_err();
        assert!(e.to_string().contains("none.pem"), "{e}");
        let e = ServerTls::load(ServerFiles {
            cert: junk.clone(),
            ..ServerFiles::default()
        })
        .unwrap_err();
        assert!(matches!(e, TlsError::Unpaired), "{e}");
        assert!(ServerTls::load(ServerFiles::default()).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
