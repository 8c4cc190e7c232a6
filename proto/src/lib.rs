//! giva's wire protocol, generated from the `.proto` files in `proto/`.
//!
//! - [`shim`]: `giva.shim.v1`, between the shim in a guest and the appliance.
//! - [`manager`]: `giva.manager.v1`, between the appliance and the manager.
//! - [`tls`]: TLS for both, from PEM files; peers named by their certificate.
//!
//! The code is generated at build time by `protox` and `tonic-prost-build`,
//! with no system `protoc`.
#![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]

#[cfg(feature = "pki")]
pub mod enroll;
#[cfg(feature = "pki")]
pub mod issue;
pub mod policy;
pub mod tls;

/// `giva.shim.v1`: shim <-> appliance.
pub mod shim {
    tonic::include_proto!("giva.shim.v1");
}

/// `giva.manager.v1`: appliance <-> manager.
pub mod manager {
    tonic::include_proto!("giva.manager.v1");
}

/// Current time in microseconds since the Unix epoch, as used by the
/// `*_us` timestamp fields.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
