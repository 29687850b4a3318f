//! The sockets a member listens on (`http`, `https`, `unix`, `unixs` URLs, as etcd's
//! `transport.NewListener`) and their accept loops: each accepted connection is handed over
//! (after its TLS handshake, which runs in a task of its own so a slow client delays no one)
//! on a channel the HTTP/gRPC server reads.

use std::net::SocketAddr;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::RunError;
use crate::config::ListenAddr;
use crate::transport::{Accepted, ConnInfo, ServerStream, TlsAcceptor};
use rafthttp::PlainStream;

/// Connections accepted but not yet taken by the server.
const ACCEPT_BACKLOG: usize = 128;

/// A bound listen URL.
pub(crate) struct Bound {
    socket: Socket,
    /// The TLS side of https/unixs URLs.
    tls: Option<TlsAcceptor>,
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    /// Binds `addr`. A unix socket's file is replaced if it exists, as etcd removes it first.
    pub(crate) async fn bind(
        addr: &ListenAddr,
        tls: Option<TlsAcceptor>,
    ) -> Result<Bound, RunError> {
        let socket =
            match addr {
                ListenAddr::Tcp(a) => Socket::Tcp(TcpListener::bind(a).await.map_err(
                    |source| RunError::Bind {
                        addr: format!("tcp {a}"),
                        source,
                    },
                )?),
                ListenAddr::Unix(path) => {
                    let _ = std::fs::remove_file(path);
                    Socket::Unix(UnixListener::bind(path).map_err(|source| RunError::Bind {
                        addr: format!("unix {}", path.display()),
                        source,
                    })?)
                }
            };
        Ok(Bound { socket, tls })
    }

    pub(crate) fn describe(&self) -> String {
        match &self.socket {
            Socket::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Socket::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts forever (until the receiver is dropped), handing over served connections.
    pub(crate) fn spawn_accept(self) -> mpsc::Receiver<Accepted> {
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        tokio::spawn(async move {
            loop {
                let (plain, remote) = match self.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors and the like: wait a little, as Go's server does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                match &self.tls {
                    None => {
                        let accepted = Accepted {
                            stream: ServerStream::Plain(plain),
                            info: ConnInfo::default(),
                        };
                        if tx.send(accepted).await.is_err() {
                            return;
                        }
                    }
                    Some(tls) => {
                        let (tls, tx) = (tls.clone(), tx.clone());
                        tokio::spawn(async move {
                            if let Some(accepted) = tls.accept(plain, remote).await {
                                let _ = tx.send(accepted).await;
                            }
                        });
                    }
                }
            }
        });
        rx
    }

    async fn accept(&self) -> std::io::Result<(PlainStream, Option<SocketAddr>)> {
        match &self.socket {
            Socket::Tcp(l) => {
                let (tcp, remote) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                Ok((PlainStream::Tcp(tcp), Some(remote)))
            }
            Socket::Unix(l) => {
                let (unix, _) = l.accept().await?;
                Ok((PlainStream::Unix(unix), None))
            }
        }
    }
}

/// The peer port as axum serves it: connections from [`Bound::spawn_accept`].
pub(crate) struct PeerListener(pub(crate) mpsc::Receiver<Accepted>);

impl axum::serve::Listener for PeerListener {
    type Io = ServerStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (ServerStream, ConnInfo) {
        match self.0.recv().await {
            Some(accepted) => (accepted.stream, accepted.info),
            // The accept loop is gone (it never ends by itself): nothing more to serve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnInfo> {
        Ok(ConnInfo::default())
    }
}
