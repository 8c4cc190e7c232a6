//! The giva guest shim: the thin agent in each guest VM.
//!
//! - [`client`]: registration and the session stream to the appliance.
//! - [`scan`]: the full-scan walker behind `giva-shim scan`.
//!
//! The shim never links the scan engine: it only reports file events and
//! streams content on request.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod scan;
