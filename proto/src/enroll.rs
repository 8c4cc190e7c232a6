//! The enrolling side of enrollment: a key made here and kept here, a
//! certificate signing request for it, and the files the answer is kept
//! in. The manager's `Enroll` call signs the request for the role and name
//! that the one-time token was made for.

use std::path::{Path, PathBuf};

/// What an enrollment wrote.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The role the certificate is for (`appliance` or `vm`).
    pub role: String,
    /// The name it gives its holder.
    pub name: String,
    /// The certificate.
    pub cert: PathBuf,
    /// Its key (mode 0600).
    pub key: PathBuf,
    /// The CAs to trust.
    pub ca: PathBuf,
    /// Their revocation lists.
    pub crl: PathBuf,
}

/// Why an enrollment cannot go ahead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// A key is in the way.
    #[error("{} exists: this host is enrolled already (--force makes a new key)", path.display())]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The key or the request cannot be made.
    #[error("cannot make a key and its request: {0}")]
    Key(String),
    /// A file cannot be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No usable token.
    #[error("{0}")]
    Token(String),
    /// The answer is not what was asked for.
    #[error("the answer is unusable: {0}")]
    Answer(String),
}

/// The environment variable an enrollment token is read from when no
/// file is given: where an appliance image's first-boot step, or a clone's
/// customization step, puts it.
pub const TOKEN_ENV: &str = "GIVA_ENROLL_TOKEN";

/// Reads an enrollment token: from `file`, else from [`TOKEN_ENV`]; never
/// from the command line, which other users can see.
///
/// # Errors
///
/// [`EnrollError::Token`]: no token, an unreadable file, or an empty one.
pub fn read_token(file: Option<&Path>) -> Result<String, EnrollError> {
    let token = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| {
            EnrollError::Token(format!("cannot read the token file {}: {e}", f.display()))
        })?,
        None => std::env::var(TOKEN_ENV).map_err(|_| {
            EnrollError::Token(format!("no token: give --token-file, or set {TOKEN_ENV}"))
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(EnrollError::Token("the enrollment token is empty".into()));
    }
    Ok(token)
}

/// A new key (ECDSA P-256, PEM) and a certificate signing request for it
/// (PEM). The request names nothing: the manager takes the name from the
/// token. Refuses when `out/STEM.key` exists, unless `force`.
///
/// # Errors
///
/// [`EnrollError::Exists`], or the key cannot be made.
pub fn request(out: &Path, stem: &str, force: bool) -> Result<(String, String), EnrollError> {
    let key_path = out.join(format!("{stem}.key"));
    if key_path.exists() && !force {
        return Err(EnrollError::Exists { path: key_path });
    }
    key_request()
}

/// A new key (ECDSA P-256, PEM) and a certificate signing request for it
/// (PEM) that names nothing.
///
/// # Errors
///
/// [`EnrollError::Key`]: the key cannot be made.
pub fn key_request() -> Result<(String, String), EnrollError> {
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

/// What an enrollment answered, from the manager or an appliance.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The role of the certificate.
    pub role: &'a str,
    /// The name it gives.
    pub name: &'a str,
    /// The certificate (and its chain, if any).
    pub cert_pem: &'a str,
    /// The CAs to trust.
    pub ca_pem: &'a str,
    /// Their revocation lists.
    pub crl_pem: &'a str,
}

impl<'a> From<&'a crate::manager::EnrollResponse> for Answer<'a> {
    fn from(r: &'a crate::manager::EnrollResponse) -> Self {
        Answer {
            role: &r.role,
            name: &r.name,
            cert_pem: &r.cert_pem,
            ca_pem: &r.ca_pem,
            crl_pem: &r.crl_pem,
        }
    }
}

impl<'a> From<&'a crate::shim::EnrollResponse> for Answer<'a> {
    fn from(r: &'a crate::shim::EnrollResponse) -> Self {
        Answer {
            role: "vm",
            name: &r.vm_id,
            cert_pem: &r.cert_pem,
            ca_pem: &r.ca_pem,
            crl_pem: &r.crl_pem,
        }
    }
}

/// Keeps the answer: `out/STEM.pem`, `out/STEM.key` (mode 0600, written
/// last, so a key on disk always has its certificate), `out/ca.pem` and
/// `out/crl.pem`.
///
/// # Errors
///
/// A file cannot be written, or the answer holds no certificate.
pub fn save<'a>(
    out: &Path,
    stem: &str,
    key_pem: &str,
    answer: impl Into<Answer<'a>>,
) -> Result<Enrolled, EnrollError> {
    let answer = answer.into();
    if !answer.cert_pem.contains("BEGIN CERTIFICATE")
        || !answer.ca_pem.contains("BEGIN CERTIFICATE")
    {
        return Err(EnrollError::Answer("no certificate in it".into()));
    }
    let files = Enrolled {
        role: answer.role.to_string(),
        name: answer.name.to_string(),
        cert: out.join(format!("{stem}.pem")),
        key: out.join(format!("{stem}.key")),
        ca: out.join("ca.pem"),
        crl: out.join("crl.pem"),
    };
    for (path, text, private) in [
        (&files.cert, answer.cert_pem, false),
        (&files.ca, answer.ca_pem, false),
        (&files.crl, answer.crl_pem, false),
        (&files.key, key_pem, true),
    ] {
        giva_runtime::dirs::write_file(path, text, private).map_err(|source| {
            EnrollError::Write {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(files)
}
