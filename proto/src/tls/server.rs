//! A TLS server whose certificate, key, client CAs and revocation lists
//! are read from files and can be read again while it serves
//! ([`ServerTls::reload`], on SIGHUP): a renewed certificate, a rotated CA
//! or a new revocation list takes effect for the next connection, and the
//! connections already open carry on.
//!
//! - The client CA file may hold several CA certificates: during a CA
//!   rotation it holds the old and the new, so that certificates from
//!   either are accepted until the old CA is retired.
//! - The revocation file holds the CAs' certificate revocation lists (PEM
//!   `X509 CRL` blocks). A client whose certificate, or any CA certificate
//!   between it and the root, is on a list is refused at the handshake.
//! - A reload that fails (a missing file, a key that does not match its
//!   certificate, an expired certificate) keeps the configuration in use
//!   and says why.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

use super::TlsError;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at once per listener; a connection beyond is
/// closed at once (the accept loop never waits), so that a flood of idle
/// connections neither takes all memory nor stops others from connecting.
const MAX_HANDSHAKES: usize = 1024;

/// Handshakes in progress at once from one address: one guest's idle
/// connections cannot fill the listener's slots. Loopback peers (this
/// host's own processes, which are trusted) are not held to it.
const MAX_HANDSHAKES_PER_PEER: usize = 16;

/// Handshakes in progress, by peer address.
#[derive(Default)]
struct Pending {
    total: usize,
    by_peer: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// A handshake's place in [`Pending`], given back when it ends.
struct Slot {
    pending: Arc<std::sync::Mutex<Pending>>,
    peer: std::net::IpAddr,
}

impl Slot {
    /// A place for a handshake from `peer`, if the limits allow one.
    fn take(pending: &Arc<std::sync::Mutex<Pending>>, peer: std::net::IpAddr) -> Option<Slot> {
        let mut p = pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = p.by_peer.get(&peer).copied().unwrap_or(0);
        if p.total >= MAX_HANDSHAKES || (mine >= MAX_HANDSHAKES_PER_PEER && !peer.is_loopback()) {
            return None;
        }
        p.total += 1;
        p.by_peer.insert(peer, mine + 1);
        Some(Slot {
            pending: Arc::clone(pending),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut p = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                p.by_peer.remove(&self.peer);
            }
        }
    }
}

/// A server's TLS files (empty paths: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFiles {
    /// The server's certificate (followed by its chain, if any).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CAs that clients' certificates must chain to (empty: clients
    /// show none).
    pub client_ca: PathBuf,
    /// The CAs' revocation lists (empty: none).
    pub crl: PathBuf,
}

/// A TLS server configuration that can be read again from its files.
pub struct ServerTls {
    files: ServerFiles,
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NotPem {
        what: "key",
        path: path.to_owned(),
        expected: "PRIVATE KEY",
    })
}

fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read_file("revocation list", path)?;
    let text = String::from_utf8_lossy(&bytes);
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    // An empty file is no list; a file with text that holds no list is a
    // mistake (a certificate given as the list, say).
    if crls.is_empty() && !text.trim().is_empty() {
        return Err(TlsError::NotPem {
            what: "revocation list",
            path: path.to_owned(),
            expected: "X509 CRL",
        });
    }
    Ok(crls)
}

/// With revocation lists, every client CA must have one: otherwise a
/// certificate from a CA without a list (after a rotation, with an old
/// crl.pem) would pass unchecked, and revocation would be off for it
/// without a word.
fn every_ca_has_a_list(
    cas: &[CertificateDer<'_>],
    ca_path: &Path,
    crl_path: &Path,
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<(), TlsError> {
    let issuers: Vec<Vec<u8>> = crls
        .iter()
        .filter_map(|c| x509_parser::parse_x509_crl(c.as_ref()).ok())
        .map(|(_, crl)| crl.issuer().as_raw().to_vec())
        .collect();
    for ca in cas {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(ca.as_ref()) else {
            continue;
        };
        if !issuers
            .iter()
            .any(|i| i.as_slice() == cert.subject().as_raw())
        {
            return Err(TlsError::Invalid {
                path: crl_path.to_owned(),
                reason: format!(
                    "no revocation list from the CA '{}' in {}: write both files again \
                     (giva-manager ca export) so that they match",
                    cert.subject(),
                    ca_path.display()
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a certificate that has expired or is not valid yet: every
/// handshake with it would fail, so it is named now.
fn check_validity(path: &Path, cert: &CertificateDer<'_>) -> Result<(), TlsError> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: "not a valid X.509 certificate".into(),
        });
    };
    let validity = parsed.validity();
    if !validity.is_valid() {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "valid only from {} to {}: the certificate has expired or is not valid yet",
                validity.not_before, validity.not_after
            ),
        });
    }
    Ok(())
}

fn build(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates("certificate", &files.cert)?;
    check_validity(&files.cert, &chain[0])?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder();
    let builder = if files.client_ca.as_os_str().is_empty() {
        if !files.crl.as_os_str().is_empty() {
            return Err(TlsError::Scheme(
                "a revocation list needs the client CA whose certificates it revokes".into(),
            ));
        }
        builder.with_no_client_auth()
    } else {
        let cas = certificates("CA", &files.client_ca)?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(cas.iter().cloned());
        if added == 0 {
            return Err(TlsError::Invalid {
                path: files.client_ca.clone(),
                reason: "no usable CA certificate in it".into(),
            });
        }
        let crls = if files.crl.as_os_str().is_empty() {
            Vec::new()
        } else {
            let crls = revocation_lists(&files.crl)?;
            every_ca_has_a_list(&cas, &files.client_ca, &files.crl, &crls)?;
            crls
        };
        // Clients may come without a certificate (operators use tokens);
        // calls that need one check the peer. The lists come from the
        // root CAs: a VM certificate issued by an appliance's delegated CA
        // has no list of its own, and is refused when that CA is revoked.
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid {
                path: files.crl.clone(),
                reason: e.to_string(),
            })?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid {
            path: files.key.clone(),
            reason: format!("does not go with the certificate: {e}"),
        })?;
    config.alpn_protocols.push(b"h2".to_vec());
    Ok(config)
}

impl ServerTls {
    /// The server TLS these files make; `None` when no certificate is
    /// given (plaintext).
    ///
    /// # Errors
    ///
    /// [`TlsError`]: a file is missing or unusable, a certificate lacks its
    /// key, or a client CA is given without a certificate of the server's
    /// own.
    pub fn load(files: ServerFiles) -> Result<Option<Arc<Self>>, TlsError> {
        let none = |p: &PathBuf| p.as_os_str().is_empty();
        match (none(&files.cert), none(&files.key)) {
            (true, true) => {
                if !none(&files.client_ca) || !none(&files.crl) {
                    return Err(TlsError::Scheme(
                        "a client CA needs the server's own certificate and key: clients can \
                         show certificates only over TLS"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            (false, false) => {}
            _ => return Err(TlsError::Unpaired),
        }
        let config = build(&files)?;
        Ok(Some(Arc::new(ServerTls {
            files,
            config: ArcSwap::from_pointee(config),
        })))
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// Reads the files again; new connections use what they say. On an
    /// error the configuration in use stays.
    ///
    /// # Errors
    ///
    /// As for [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The TLS connections accepted on `listener`: each handshake runs on
    /// its own task (a slow client holds up no one), and one that fails is
    /// logged, with what it means, under `what`, and dropped.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
        what: &'static str,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        self.incoming_with(listener, what, |tcp, _| Some(tcp))
    }

    /// As [`incoming`](Self::incoming), with `admit` deciding first, as a
    /// connection is accepted and before any handshake, whether it is
    /// served at all (`None`: it is closed at once) and over what stream
    /// (a wrapper that counts it, say).
    pub fn incoming_with<IO, F>(
        self: &Arc<Self>,
        listener: TcpListener,
        what: &'static str,
        admit: F,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<IO>>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        F: Fn(TcpStream, std::net::SocketAddr) -> Option<IO> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let tls = Arc::clone(self);
        let pending = Arc::new(std::sync::Mutex::new(Pending::default()));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(listener = what, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let Some(io) = admit(tcp, peer) else {
                    continue;
                };
                let Some(slot) = Slot::take(&pending, peer.ip()) else {
                    tracing::debug!(listener = what, %peer, "too many handshakes in progress; connection closed");
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.load_full());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        // A connection closed before any handshake (a port
                        // probe, a health check) is not news.
                        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => tracing::debug!(
                            listener = what,
                            %peer,
                            "connection closed before its TLS handshake"
                        ),
                        Ok(Err(e)) => tracing::info!(
                            listener = what,
                            %peer,
                            error = %super::explain(&e),
                            "TLS handshake refused"
                        ),
                        Err(_) => tracing::info!(
                            listener = what,
                            %peer,
                            "TLS handshake timed out"
                        ),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
