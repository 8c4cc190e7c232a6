//! Who a shim is, from the channel rather than its word: over TCP, the VM
//! its TLS client certificate names (when the appliance asks shims for
//! certificates, `server.client_ca_file`); over vsock, the VM the
//! inventory gives the peer's CID, which the hypervisor assigns and a guest
//! cannot choose. Checked against the VM id the shim claims.

use tonic::{Request, Status};
use tracing::warn;

use crate::appliance::Appliance;

/// The vsock CID of the caller, if it came over vsock.
fn peer_cid<T>(request: &Request<T>) -> Option<u32> {
    #[cfg(feature = "vsock")]
    {
        request
            .extensions()
            .get::<tokio_vsock::VsockConnectInfo>()
            .and_then(|i| i.peer_addr())
            .map(|a| a.cid())
    }
    #[cfg(not(feature = "vsock"))]
    {
        let _ = request;
        None
    }
}

/// The VM the vsock peer `cid` is, by the inventory (see
/// [`certified_vm`]).
pub(crate) fn vm_of_cid(app: &Appliance, cid: u32) -> Result<Option<String>, Status> {
    app.registry.inventory().vm_of_cid(cid).map_err(|()| {
        app.stats.identity_refused("unknown_cid");
        warn!(cid, "a vsock shim from a CID the inventory does not know");
        Status::unauthenticated(format!(
            "vsock CID {cid} is no VM of this appliance's inventory"
        ))
    })
}

/// The VM the channel says the caller is: over vsock, by its CID (see
/// [`vm_of_cid`]); over TCP, the VM its certificate names when the
/// appliance asks shims for certificates (`server.client_ca_file`).
/// `Ok(None)` when the channel says nothing (a Unix socket on the host,
/// TCP without client certificates, vsock without CIDs in the inventory);
/// `Err` when a TCP caller shows no certificate, or a vsock CID is unknown.
pub(crate) fn certified_vm<T>(
    app: &Appliance,
    request: &Request<T>,
) -> Result<Option<String>, Status> {
    if let Some(cid) = peer_cid(request) {
        return vm_of_cid(app, cid);
    }
    if app.config.server.client_ca_file.as_os_str().is_empty() || request.remote_addr().is_none() {
        return Ok(None);
    }
    match giva_proto::tls::peer_name(request, giva_proto::tls::Role::Vm) {
        Some(name) => Ok(Some(name)),
        None if giva_proto::tls::peer_has_certificate(request) => {
            app.stats.identity_refused("not_a_vm");
            Err(Status::permission_denied(
                "the certificate is not a VM's: a shim shows its VM's certificate",
            ))
        }
        None => {
            app.stats.identity_refused("no_certificate");
            Err(Status::unauthenticated(
                "this appliance needs a client certificate that names the VM",
            ))
        }
    }
}

/// Refuses a caller whose channel names another VM than `vm_id`, and one
/// whose channel names no VM while the inventory binds `vm_id` to a vsock
/// CID (that VM is known by its CID alone).
pub(crate) fn check_claim(
    app: &Appliance,
    certified: Option<&str>,
    vm_id: &str,
) -> Result<(), Status> {
    if certified.is_none()
        && let Some(cid) = app.registry.inventory().cid_of(vm_id)
    {
        app.stats.identity_refused("bound_elsewhere");
        warn!(
            vm_id,
            cid, "a VM bound to a vsock CID claimed over another channel"
        );
        return Err(Status::permission_denied(format!(
            "VM {vm_id} is known by its vsock CID {cid}; it registers over vsock only"
        )));
    }
    match certified {
        Some(name) if name != vm_id => {
            app.stats.identity_refused("other_vm");
            warn!(
                certified = name,
                claimed = vm_id,
                "a shim claimed another VM than its channel names"
            );
            Err(Status::permission_denied(format!(
                "the certificate or vsock CID names VM {name}, not {vm_id}"
            )))
        }
        _ => Ok(()),
    }
}
