//! Accepting one connection on a TLS listener: a client that does not open with a TLS
//! handshake gets its connection closed with no reply (as etcd, observed: curl's "Empty reply
//! from server"); the handshake is bounded in time; the verified client certificate's CN is
//! kept for the handlers; on the peer port, the client certificate's SANs must name the remote
//! address (etcd's peer SAN check, off with `--experimental-peer-skip-client-san-verification`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rafthttp::PlainStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::leaf_names;

/// A TLS record of type handshake opens every TLS connection.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers learn about the connection a request came on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnInfo {
    /// On a listener whose client certificates name the user (`--client-cert-auth`): the CN of
    /// the verified client certificate, empty when it has none (etcd then checks an empty user
    /// name, which is denied). None elsewhere.
    pub common_name: Option<Arc<str>>,
}

/// The peer port's check of a client certificate's SANs against the remote address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSanCheck;

/// The TLS side of one listener.
#[derive(Clone)]
pub(crate) struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    san_check: Option<PeerSanCheck>,
    /// Whether a client certificate's CN is the request's user (`--client-cert-auth`).
    cert_names_user: bool,
}

/// A served connection and what is known of it.
pub(crate) struct Accepted {
    pub stream: ServerStream,
    pub info: ConnInfo,
}

impl TlsAcceptor {
    pub(crate) fn new(
        config: Arc<rustls::ServerConfig>,
        san_check: Option<PeerSanCheck>,
        cert_names_user: bool,
    ) -> TlsAcceptor {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            san_check,
            cert_names_user,
        }
    }

    /// The TLS handshake on `plain`; None (the connection dropped) if it is not TLS, fails,
    /// or the client certificate is refused.
    pub(crate) async fn accept(
        &self,
        plain: PlainStream,
        remote_addr: Option<SocketAddr>,
    ) -> Option<Accepted> {
        if let PlainStream::Tcp(tcp) = &plain {
            let mut first = [0u8; 1];
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
                _ => {
                    tracing::debug!(remote = ?remote_addr, "closing a connection that does not speak TLS");
                    drain(tcp);
                    return None;
                }
            }
        }
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.accept(plain)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::warn!(remote = ?remote_addr, error = %e, "rejected connection: TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::warn!(remote = ?remote_addr, "rejected connection: TLS handshake timed out");
                return None;
            }
        };
        let names = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(leaf_names);
        if let (Some(PeerSanCheck), Some(names), Some(remote)) =
            (self.san_check, &names, remote_addr)
        {
            if !san_matches(names, remote.ip()).await {
                tracing::warn!(
                    "rejected connection: tls: {:?} does not match any of DNSNames {:?}",
                    remote.ip().to_string(),
                    names.dns()
                );
                return None;
            }
        }
        Some(Accepted {
            stream: ServerStream::Tls(Box::new(stream)),
            info: ConnInfo {
                common_name: match names {
                    Some(names) if self.cert_names_user => {
                        Some(Arc::from(names.common_name.unwrap_or_default()))
                    }
                    _ => None,
                },
            },
        })
    }
}

/// Reads what the client already sent, so that closing the socket is a FIN ("empty reply", as
/// from etcd, which reads it into its record buffer) rather than a reset.
fn drain(tcp: &tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match tcp.try_read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// etcd's peer SAN check: a certificate without SANs passes; otherwise the remote IP must be
/// one of its IP SANs or an address one of its DNS SANs resolves to.
async fn san_matches(names: &super::LeafNames, remote: std::net::IpAddr) -> bool {
    if !names.has_sans() || names.ips().contains(&remote) {
        return true;
    }
    for dns in names.dns() {
        if let Ok(addrs) = tokio::net::lookup_host((dns.as_str(), 0)).await {
            if addrs.into_iter().any(|a| a.ip() == remote) {
                return true;
            }
        }
    }
    false
}

/// A connection as a listener serves it.
pub(crate) enum ServerStream {
    Plain(PlainStream),
    Tls(Box<tokio_rustls::server::TlsStream<PlainStream>>),
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
