//! Who a shim is: the VM its TLS client certificate names, when the
//! appliance asks shims for certificates (`server.client_ca_file`), checked
//! against the VM id it claims.

use tonic::{Request, Status};
use tracing::warn;

use crate::appliance::Appliance;

/// The VM a TCP caller's certificate names, when the appliance asks shims
/// for certificates (`server.client_ca_file`): `Ok(None)` when it does not
/// (or the caller is on a Unix socket or vsock), `Err` when a TCP caller
/// shows none.
pub(crate) fn certified_vm<T>(
    app: &Appliance,
    request: &Request<T>,
) -> Result<Option<String>, Status> {
    if app.config.server.client_ca_file.as_os_str().is_empty() || request.remote_addr().is_none() {
        return Ok(None);
    }
    match giva_proto::tls::peer_name(request) {
        Some(name) => Ok(Some(name)),
        None => {
            app.stats.identity_refused("no_certificate");
            Err(Status::unauthenticated(
                "this appliance needs a client certificate that names the VM",
            ))
        }
    }
}

/// Refuses a caller whose certificate names another VM than `vm_id`.
pub(crate) fn check_claim(
    app: &Appliance,
    certified: Option<&str>,
    vm_id: &str,
) -> Result<(), Status> {
    match certified {
        Some(name) if name != vm_id => {
            app.stats.identity_refused("other_vm");
            warn!(
                certified = name,
                claimed = vm_id,
                "a shim claimed another VM than its certificate names"
            );
            Err(Status::permission_denied(format!(
                "the certificate names VM {name}, not {vm_id}"
            )))
        }
        _ => Ok(()),
    }
}
