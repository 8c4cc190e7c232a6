//! Issuing certificates: what the manager's CA and an appliance's
//! delegated CA put in the certificates they sign, so that both sign the
//! same way.
//!
//! - A **leaf** names its holder three ways: its common name, a
//!   `giva:ROLE:NAME` URI that peers check ([`crate::tls::Role`]), and
//!   (except a VM's) a DNS name when the name is one.
//! - A **delegated CA** is what the manager gives an appliance so that it
//!   can sign certificates for instant clones with no manager round trip.
//!   It may sign leaves only (path length 0), and its name constraints
//!   allow DNS names under [`DELEGATE_DNS_ZONE`] only and no IP address:
//!   so a stolen delegated key cannot make a certificate that passes as the
//!   manager's host, or any host's. Peers also refuse an appliance's
//!   certificate that a delegated CA signed (see [`issued_by_delegate`]).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};

use crate::tls::Role;

/// The only DNS zone a delegated CA may name.
pub const DELEGATE_DNS_ZONE: &str = "clones.giva.invalid";

/// The common name prefix of a delegated CA.
pub const DELEGATE_PREFIX: &str = "giva delegated CA for ";

/// A signed certificate (PEM), its key if it was made here, its serial
/// number and its expiry.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The certificate.
    pub cert_pem: String,
    /// Its key (PEM), or empty when signed for a request.
    pub key_pem: String,
    /// Its serial number, lower-case hex.
    pub serial: String,
    /// When it expires, in microseconds since the epoch.
    pub not_after_us: i64,
}

/// Why a certificate cannot be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A certificate, key or request cannot be made or read.
    #[error("{what}: {source}")]
    Cert {
        /// What was being done.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
    /// No randomness for a serial number.
    #[error("cannot read randomness: {0}")]
    Random(#[from] std::io::Error),
}

fn err(what: &str) -> impl FnOnce(rcgen::Error) -> IssueError + '_ {
    move |source| IssueError::Cert {
        what: what.to_string(),
        source,
    }
}

/// A random positive serial number of 16 bytes, and its hex.
///
/// # Errors
///
/// [`IssueError::Random`].
pub fn serial_number() -> Result<(rcgen::SerialNumber, String), IssueError> {
    let mut bytes = giva_runtime::token::random_bytes(16)?;
    if let Some(first) = bytes.first_mut() {
        // Positive, and 16 bytes long in DER.
        *first = (*first & 0x7f) | 0x10;
    }
    let serial = rcgen::SerialNumber::from_slice(&bytes);
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok((serial, hex))
}

/// `t` in microseconds since the epoch.
pub fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Valid from five minutes ago (clocks differ) for `hours`.
pub fn validity(params: &mut CertificateParams, hours: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::hours(i64::from(hours));
}

/// The parameters of a leaf for `name` in `role`, also valid for `dns`
/// names and `ips`, for `hours`; and its serial number (hex).
///
/// # Errors
///
/// [`IssueError`]: the name cannot go in a certificate.
pub fn leaf_params(
    name: &str,
    role: Role,
    dns: &[String],
    ips: &[IpAddr],
    hours: u32,
) -> Result<(CertificateParams, String), IssueError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    // A VM's certificate is a client's: no host name, which a delegated
    // CA could not sign anyway.
    let own = (role != Role::Vm).then_some(name);
    for d in own.into_iter().chain(dns.iter().map(String::as_str)) {
        if let Ok(n) = d.to_string().try_into() {
            sans.push(SanType::DnsName(n));
        }
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    sans.push(SanType::URI(
        role.uri(name)
            .try_into()
            .map_err(err(&format!("name {name}")))?,
    ));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match role {
        Role::Vm => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Role::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Role::Appliance => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    let (serial, hex) = serial_number()?;
    params.serial_number = Some(serial);
    validity(&mut params, hours);
    Ok((params, hex))
}

/// The parameters of a delegated CA for `appliance`, for `hours`; and its
/// serial number (hex).
///
/// # Errors
///
/// [`IssueError`]: the name cannot go in a certificate.
pub fn delegate_params(
    appliance: &str,
    hours: u32,
) -> Result<(CertificateParams, String), IssueError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{DELEGATE_PREFIX}{appliance}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(DELEGATE_DNS_ZONE.into())],
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(rcgen::CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(rcgen::CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    params.use_authority_key_identifier_extension = true;
    let (serial, hex) = serial_number()?;
    params.serial_number = Some(serial);
    validity(&mut params, hours);
    Ok((params, hex))
}

/// Signs `params` for the key of a certificate signing request (whose
/// signature proves its holder has that key). Only the request's key is
/// used: its names and extensions are the requester's claims.
///
/// # Errors
///
/// [`IssueError`]: the request is not valid, or signing fails.
pub fn sign_request(
    issuer: &Issuer<'_, KeyPair>,
    csr_pem: &str,
    params: CertificateParams,
    serial: String,
) -> Result<Signed, IssueError> {
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(err("read the certificate signing request"))?;
    let not_after_us = micros(params.not_after);
    csr.params = params;
    let cert = csr.signed_by(issuer).map_err(err("sign the certificate"))?;
    Ok(Signed {
        cert_pem: cert.pem(),
        key_pem: String::new(),
        serial,
        not_after_us,
    })
}

/// Signs `params` with a key made here.
///
/// # Errors
///
/// [`IssueError`]: no key, or signing fails.
pub fn sign_new_key(
    issuer: &Issuer<'_, KeyPair>,
    params: CertificateParams,
    serial: String,
) -> Result<Signed, IssueError> {
    let key = KeyPair::generate().map_err(err("generate a key"))?;
    let not_after_us = micros(params.not_after);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(err("sign the certificate"))?;
    Ok(Signed {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
        not_after_us,
    })
}

/// The issuer of a CA certificate and its key (PEM).
///
/// # Errors
///
/// [`IssueError`]: either cannot be read.
pub fn issuer(cert_pem: &str, key_pem: &str) -> Result<Issuer<'static, KeyPair>, IssueError> {
    let key = KeyPair::from_pem(key_pem).map_err(err("read the CA key"))?;
    Issuer::from_ca_cert_pem(cert_pem, key).map_err(err("read the CA certificate"))
}

/// True when a DER certificate was signed by a delegated CA (its issuer's
/// common name says so). The manager's own CAs never carry that name, so
/// an appliance's certificate that a delegated CA made is told apart.
pub fn issued_by_delegate(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return true;
    };
    cert.issuer()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.starts_with(DELEGATE_PREFIX))
}
