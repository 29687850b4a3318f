//! Dialing a peer URL: `http` and `unix` in the clear, `https` and `unixs` over TLS with the
//! member's peer client configuration (`--peer-cert-file`/`--peer-key-file` presented,
//! `--peer-trusted-ca-file` as roots), as etcd's peer transport dials. The server's other peer
//! clients (join, forwarded requests) dial through the same [`Dialer`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A peer URL taken apart: how to reach it and the `Host` header to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// `host:port` (for unix URLs, the socket file's name, as etcd names it).
    pub authority: String,
    pub tls: bool,
    pub unix: bool,
}

impl PeerAddr {
    /// Parses `scheme://host:port[/...]` for the schemes etcd dials.
    pub fn parse(url: &str) -> Option<PeerAddr> {
        let (scheme, rest) = url.split_once("://")?;
        let (tls, unix) = match scheme {
            "http" => (false, false),
            "https" => (true, false),
            "unix" => (false, true),
            "unixs" => (true, true),
            _ => return None,
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return None;
        }
        let authority = if !unix && !authority.contains(':') {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        } else {
            authority.to_owned()
        };
        Some(PeerAddr {
            authority,
            tls,
            unix,
        })
    }

    /// The name a TLS server certificate must be valid for: the URL's host (an IP or a DNS
    /// name); for unix sockets the part before the port, as Go's dialer takes it.
    pub fn server_name(&self) -> Option<ServerName<'static>> {
        let host = match self.authority.rsplit_once(':') {
            Some((host, _)) => host,
            None => &self.authority,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).ok()
    }
}

/// How this member dials its peers; cheap to clone.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a peer could not be dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("unsupported peer URL {0:?}")]
    BadUrl(String),
    #[error(
        "{0}: https peer URL but no peer TLS configured (--peer-cert-file or --peer-auto-tls)"
    )]
    NoTls(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
}

impl Dialer {
    /// A dialer for `http`/`unix` URLs only.
    pub fn plain() -> Dialer {
        Dialer { tls: None }
    }

    /// A dialer that also reaches `https`/`unixs` peers with `config`.
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> Dialer {
        Dialer { tls: Some(config) }
    }

    /// The TLS client configuration, for the blocking dialers (join).
    pub fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// Connects to `url` and, for TLS URLs, completes the handshake, all within `timeout`.
    pub async fn connect(&self, url: &str, timeout: Duration) -> Result<PeerStream, DialError> {
        let addr = PeerAddr::parse(url).ok_or_else(|| DialError::BadUrl(url.to_owned()))?;
        let tls = match (addr.tls, &self.tls) {
            (false, _) => None,
            (true, Some(config)) => Some(config.clone()),
            (true, None) => return Err(DialError::NoTls(url.to_owned())),
        };
        let dial = async {
            let plain = if addr.unix {
                PlainStream::Unix(UnixStream::connect(&addr.authority).await?)
            } else {
                let tcp = TcpStream::connect(&addr.authority).await?;
                // Raft messages are small and latency-bound; batching is done by the writer.
                let _ = tcp.set_nodelay(true);
                PlainStream::Tcp(tcp)
            };
            let Some(config) = tls else {
                return Ok(PeerStream::Plain(plain));
            };
            let name = addr
                .server_name()
                .ok_or_else(|| DialError::BadUrl(url.to_owned()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, plain)
                .await?;
            Ok(PeerStream::Tls(Box::new(stream)))
        };
        match tokio::time::timeout(timeout, dial).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout),
        }
    }
}

/// A connection before TLS.
pub enum PlainStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A connection to a peer.
pub enum PeerStream {
    Plain(PlainStream),
    Tls(Box<tokio_rustls::client::TlsStream<PlainStream>>),
}

macro_rules! delegate_io {
    ($ty:ty, $($variant:path),+) => {
        impl AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $($variant(s) => Pin::new(s).poll_read(cx, buf),)+ }
            }
        }
        impl AsyncWrite for $ty {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $($variant(s) => Pin::new(s).poll_write(cx, buf),)+ }
            }
            fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $($variant(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+ }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $($variant(s) => s.is_write_vectored(),)+ }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $($variant(s) => Pin::new(s).poll_flush(cx),)+ }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $($variant(s) => Pin::new(s).poll_shutdown(cx),)+ }
            }
        }
    };
}

delegate_io!(PlainStream, PlainStream::Tcp, PlainStream::Unix);
delegate_io!(PeerStream, PeerStream::Plain, PeerStream::Tls);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_taken_apart_as_etcd_dials_them() {
        let https = PeerAddr::parse("https://127.0.0.1:2380").unwrap();
        assert_eq!(https.authority, "127.0.0.1:2380");
        assert!(https.tls && !https.unix);
        assert_eq!(
            https.server_name(),
            Some(ServerName::IpAddress(
                std::net::Ipv4Addr::new(127, 0, 0, 1).into()
            ))
        );
        let named = PeerAddr::parse("https://node1.example:2380/").unwrap();
        assert_eq!(
            named.server_name(),
            Some(ServerName::try_from("node1.example").unwrap())
        );
        let unixs = PeerAddr::parse("unixs://localhost:2380").unwrap();
        assert!(unixs.tls && unixs.unix);
        assert_eq!(unixs.authority, "localhost:2380");
        assert_eq!(PeerAddr::parse("ftp://x:1"), None);
        assert_eq!(PeerAddr::parse("http://").map(|a| a.authority), None);
    }
}
