//! Binding the appliance's extra listeners: a Unix socket and vsock.

/// Listens on vsock `port` (any CID).
#[cfg(feature = "vsock")]
pub(crate) fn bind_vsock(port: u32) -> anyhow::Result<tokio_vsock::Incoming> {
    let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
    let listener = tokio_vsock::VsockListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on vsock port {port}: {e}"))?;
    Ok(listener.incoming())
}

/// Without vsock support, a configured vsock port is an error, not a
/// silently missing listener.
#[cfg(not(feature = "vsock"))]
pub(crate) fn bind_vsock(
    port: u32,
) -> anyhow::Result<tokio_stream::Empty<std::io::Result<tokio::net::TcpStream>>> {
    anyhow::bail!(
        "server.vsock_port = {port} is set, but this giva was built without vsock support (it is in the default features; this build left it out)"
    )
}

/// Binds a Unix socket at `path`, replacing a stale socket file (but never
/// another kind of file).
pub(crate) fn bind_unix(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            std::fs::remove_file(path).map_err(|e| {
                anyhow::anyhow!("cannot remove the stale socket {}: {e}", path.display())
            })?;
        } else {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on the Unix socket {}: {e}", path.display()))
}
