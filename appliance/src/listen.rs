//! Binding the appliance's extra listeners (a Unix socket and vsock), and
//! the caps on connections open at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};

/// Listens on vsock `port` (any CID).
#[cfg(feature = "vsock")]
pub(crate) fn bind_vsock(port: u32) -> anyhow::Result<tokio_vsock::Incoming> {
    let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
    let listener = tokio_vsock::VsockListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on vsock port {port}: {e}"))?;
    Ok(listener.incoming())
}

/// The guest a vsock connection comes from.
#[cfg(feature = "vsock")]
pub(crate) fn vsock_peer(stream: &tokio_vsock::VsockStream) -> Option<Peer> {
    stream.peer_addr().ok().map(|a| Peer::Vsock(a.cid()))
}

/// Without vsock support there is no vsock connection.
#[cfg(not(feature = "vsock"))]
pub(crate) fn vsock_peer(_: &tokio::net::TcpStream) -> Option<Peer> {
    None
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

/// Who a connection comes from, for [`ConnectionCap`]: an IP address (an
/// IPv4 address mapped into IPv6 as itself), or a vsock CID. An IPv6
/// address counts alone, not by its /64: guests on one host usually share
/// a /64, and one of them must not lock the others out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Ip(std::net::IpAddr),
    #[cfg_attr(not(feature = "vsock"), allow(dead_code))]
    Vsock(u32),
}

impl Peer {
    /// The peer of an address.
    pub(crate) fn of(addr: std::net::SocketAddr) -> Peer {
        Peer::Ip(addr.ip().to_canonical())
    }
}

/// Connections open at once on one listener: at most `per_peer` from one
/// [`Peer`], and `total` in all. One past either is closed as soon as it
/// is accepted, counted, and logged (at most once a minute at WARN).
#[derive(Clone)]
pub(crate) struct ConnectionCap {
    open: Arc<Mutex<Open>>,
    per_peer: usize,
    total: usize,
    refused: prometheus_client::metrics::counter::Counter,
    what: &'static str,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<Peer, usize>,
    last_warning: Option<Instant>,
}

/// How often a listener at its cap says so at WARN.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl ConnectionCap {
    /// At most `per_peer` connections from one peer and `total` in all,
    /// counting refusals in `refused`; `what` names the listener in logs.
    pub(crate) fn new(
        per_peer: usize,
        total: usize,
        refused: prometheus_client::metrics::counter::Counter,
        what: &'static str,
    ) -> Self {
        ConnectionCap {
            open: Arc::default(),
            per_peer,
            total,
            refused,
            what,
        }
    }

    /// `stream`, counted against its peer while it lives; `None` (the
    /// stream dropped, so the connection closed) when a cap is reached.
    pub(crate) fn admit<S>(&self, stream: S, peer: Option<Peer>) -> Option<Capped<S>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = peer
            .and_then(|p| open.by_peer.get(&p).copied())
            .unwrap_or(0);
        if open.total >= self.total || mine >= self.per_peer {
            self.refused.inc();
            let now = Instant::now();
            if open
                .last_warning
                .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
            {
                open.last_warning = Some(now);
                tracing::warn!(
                    listener = self.what,
                    ?peer,
                    open = open.total,
                    max_connections = self.total,
                    max_connections_per_peer = self.per_peer,
                    "connection refused: too many open (giva_connections_refused counts them; this is said at most once a minute)"
                );
            } else {
                tracing::debug!(
                    listener = self.what,
                    ?peer,
                    "connection refused: too many open"
                );
            }
            return None;
        }
        open.total += 1;
        if let Some(p) = peer {
            open.by_peer.insert(p, mine + 1);
        }
        Some(Capped {
            inner: stream,
            _slot: Slot {
                open: Arc::clone(&self.open),
                peer,
            },
        })
    }

    /// The connections of `incoming` that the caps admit; `peer` says
    /// where one comes from (`None`: counted in the total only).
    pub(crate) fn apply<St, S, E>(
        self,
        incoming: St,
        peer: fn(&S) -> Option<Peer>,
    ) -> impl Stream<Item = Result<Capped<S>, E>>
    where
        St: Stream<Item = Result<S, E>>,
    {
        incoming.filter_map(move |accepted| match accepted {
            Ok(stream) => {
                let p = peer(&stream);
                self.admit(stream, p).map(Ok)
            }
            Err(e) => Some(Err(e)),
        })
    }
}

/// A connection's place in its listener's count, given back when it
/// closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    peer: Option<Peer>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(p) = self.peer
            && let Some(n) = open.by_peer.get_mut(&p)
        {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&p);
            }
        }
    }
}

/// A connection admitted by a [`ConnectionCap`]: the stream itself, and
/// its place in the count.
pub(crate) struct Capped<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection's information is the stream's own: what the service
/// reads from a request (peer address, client certificate, CID) does not
/// change.
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Capped<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(per_peer: usize, total: usize) -> ConnectionCap {
        ConnectionCap::new(per_peer, total, Default::default(), "test")
    }

    fn ip(s: &str) -> Option<Peer> {
        Some(Peer::of(std::net::SocketAddr::new(s.parse().unwrap(), 1)))
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back() {
        let cap = cap(2, 10);
        let a1 = cap.admit((), ip("10.0.0.1"));
        let a2 = cap.admit((), ip("10.0.0.1"));
        assert!(a1.is_some() && a2.is_some());
        assert!(cap.admit((), ip("10.0.0.1")).is_none());
        // Another peer is not held up by the first.
        assert!(cap.admit((), ip("10.0.0.2")).is_some());
        drop(a1);
        assert!(cap.admit((), ip("10.0.0.1")).is_some());
        assert_eq!(cap.refused.get(), 1);
    }

    #[test]
    fn the_total_caps_all_peers_together() {
        let cap = cap(5, 3);
        let held: Vec<_> = (1..=3)
            .map(|i| cap.admit((), ip(&format!("10.0.0.{i}"))))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(cap.admit((), ip("10.0.0.9")).is_none());
        assert!(cap.admit((), None).is_none());
        drop(held);
        assert!(cap.admit((), None).is_some());
        assert!(cap.open.lock().unwrap().by_peer.is_empty());
    }

    #[test]
    fn ipv6_peers_count_alone_and_mapped_ipv4_as_ipv4() {
        let cap = cap(1, 10);
        let _a = cap.admit((), ip("2001:db8::1"));
        assert!(cap.admit((), ip("2001:db8::1")).is_none());
        // A neighbour in the same /64 is another guest.
        assert!(cap.admit((), ip("2001:db8::2")).is_some());
        let _b = cap.admit((), ip("10.0.0.1"));
        assert!(cap.admit((), ip("::ffff:10.0.0.1")).is_none());
    }
}
