//! The connection to the appliance: registration and the session stream.

use std::time::Duration;

use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ApplianceMessage, GuestMessage, RegisterRequest, RegisterResponse, SessionOpen, VmIdentity,
    guest_message,
};
use giva_proto::tls::ClientFiles;
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// Messages buffered towards the appliance.
pub const OUT_BUFFER: usize = 64;

/// Errors talking to the appliance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not usable.
    #[error("invalid appliance URL {url}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The appliance cannot be reached.
    #[error("cannot reach the appliance at {url}: {reason}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The appliance refused a call.
    #[error("the appliance refused {call}: {}", giva_proto::tls::explain(status))]
    Refused {
        /// Which call.
        call: &'static str,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// The session stream ended unexpectedly.
    #[error("the session with the appliance ended: {0}")]
    SessionEnded(String),
}

/// Connects to an appliance, with TLS for an `https://` URL.
///
/// # Errors
///
/// A bad URL, unusable TLS files, or an unreachable appliance.
pub async fn connect(
    url: &str,
    tls: &ClientFiles,
) -> Result<ShimServiceClient<Channel>, ClientError> {
    Ok(
        ShimServiceClient::new(channel(url, tls).await?)
            .max_decoding_message_size(64 * 1024 * 1024),
    )
}

/// Opens a connection (one HTTP/2 channel) to an appliance: `http://HOST:PORT`
/// over TCP, `https://HOST:PORT` over TCP with TLS (`tls` gives the CA, and
/// a client certificate when the appliance asks for one),
/// `unix:/path/to/socket` on the same host, or `vsock://CID:PORT` (with the
/// `vsock` feature).
///
/// # Errors
///
/// A bad URL, unusable TLS files, or an unreachable appliance.
pub async fn channel(url: &str, tls: &ClientFiles) -> Result<Channel, ClientError> {
    let bad = |reason: String| ClientError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let local = url.starts_with("vsock://") || url.starts_with("unix:");
    if local && *tls != ClientFiles::default() {
        return Err(bad(
            "TLS files are for https:// URLs; a Unix socket or vsock is not a network link".into(),
        ));
    }
    if let Some(addr) = url.strip_prefix("vsock://") {
        return vsock_channel(url, addr).await;
    }
    let unix_path = url
        .strip_prefix("unix:")
        .map(|p| p.trim_start_matches("//").to_string());
    // For a Unix socket the URI only names the HTTP/2 authority; the
    // connector below ignores it and dials the socket.
    let endpoint = match &unix_path {
        Some(_) => Endpoint::from_static("http://localhost"),
        None => tls.endpoint(url).map_err(|e| bad(e.to_string()))?,
    }
    .connect_timeout(Duration::from_secs(5))
    .tcp_nodelay(true)
    // Notice a vanished appliance (host gone, cable cut) within seconds,
    // so that held accesses are decided by policy at once.
    .http2_keep_alive_interval(Duration::from_secs(5))
    .keep_alive_timeout(Duration::from_secs(5))
    .keep_alive_while_idle(true);
    let connected = match unix_path {
        Some(path) => {
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        }
        None => endpoint.connect().await,
    };
    connected.map_err(|e| ClientError::Unreachable {
        url: url.to_string(),
        reason: giva_proto::tls::explain(&e),
    })
}

/// Connects over vsock to `CID:PORT` (guests without a network path to
/// the host).
#[cfg(feature = "vsock")]
async fn vsock_channel(url: &str, addr: &str) -> Result<Channel, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (cid, port) = addr
        .split_once(':')
        .ok_or_else(|| bad("expected vsock://CID:PORT"))?;
    let cid: u32 = cid.parse().map_err(|_| bad("the CID is not a number"))?;
    let port: u32 = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| bad("the port is not a number"))?;
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_with_connector(tower::service_fn(
            move |_: tonic::transport::Uri| async move {
                let stream =
                    tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(cid, port))
                        .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            },
        ))
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: giva_proto::tls::explain(&e),
        })
}

/// Without vsock support a `vsock://` URL is refused with the reason.
#[cfg(not(feature = "vsock"))]
async fn vsock_channel(url: &str, _addr: &str) -> Result<Channel, ClientError> {
    Err(ClientError::BadUrl {
        url: url.to_string(),
        reason: "this giva-shim was built without vsock support (it is in the default features; this build left it out)"
            .into(),
    })
}

/// An open session: a sender towards the appliance and the incoming stream.
#[derive(Debug)]
pub struct Session {
    /// The registration answer (session id, policy, database version).
    pub registration: RegisterResponse,
    /// Messages to the appliance.
    pub tx: mpsc::Sender<GuestMessage>,
    /// Messages from the appliance.
    pub rx: Streaming<ApplianceMessage>,
}

/// Registers the VM and opens its session stream.
///
/// # Errors
///
/// The appliance refuses the registration or the stream.
pub async fn open_session(
    client: &mut ShimServiceClient<Channel>,
    vm: VmIdentity,
) -> Result<Session, ClientError> {
    let registration = client
        .register(RegisterRequest { vm: Some(vm) })
        .await
        .map_err(|status| ClientError::Refused {
            call: "Register",
            status,
        })?
        .into_inner();
    let (tx, out_rx) = mpsc::channel(OUT_BUFFER);
    let open = GuestMessage {
        msg: Some(guest_message::Msg::Open(SessionOpen {
            session_id: registration.session_id.clone(),
        })),
    };
    tx.send(open)
        .await
        .map_err(|_| ClientError::SessionEnded("closed before open".into()))?;
    let rx = client
        .session(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await
        .map_err(|status| ClientError::Refused {
            call: "Session",
            status,
        })?
        .into_inner();
    Ok(Session {
        registration,
        tx,
        rx,
    })
}

/// This machine's default VM identity: `/etc/machine-id` (or the host name)
/// as the id, the host name as the name.
pub fn default_identity() -> VmIdentity {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.clone());
    VmIdentity {
        vm_id: id,
        name: host,
        image_id: String::new(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        group: String::new(),
    }
}
