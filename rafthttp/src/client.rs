//! Outgoing HTTP/1.1 connections to peers: one TCP connection per request, so that a stream or a snapshot owns its
//! connection and closing it is as simple as dropping it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dial::{DialError, PeerAddr};
use crate::error::ConnectError;
use crate::{format_id, TransportConfig, HEADER_CLUSTER_ID, HEADER_FROM, HEADER_TO};

/// What a writer puts into a [`ChunkBody`].
pub(crate) enum Chunk {
    Data(Bytes),
    /// The body is complete: end it cleanly.
    End,
}

/// A request body fed through a channel. Only an explicit [`Chunk::End`] ends it cleanly: if the writer goes away
/// without one (an error, a panic, a stop) the body fails, hyper aborts the request, and the receiver sees a broken
/// body instead of a truncated one that looks complete.
pub(crate) struct ChunkBody {
    rx: mpsc::Receiver<Chunk>,
    done: bool,
}

impl ChunkBody {
    pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<Chunk>, ChunkBody) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, ChunkBody { rx, done: false })
    }
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Chunk::Data(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Chunk::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(io::Error::other("body writer went away"))))
            }
        }
    }
}

/// Aborts the connection task when dropped.
pub(crate) struct ConnGuard(JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Who is talking to whom, sent with every request.
#[derive(Clone, Copy)]
pub(crate) struct Identity {
    pub from: u64,
    pub to: u64,
    pub cluster_id: u64,
}

/// POSTs `body` to `path` on the peer at `url`. Returns once the response head arrives (within `response_timeout`
/// when given) and only if its status is `expected`; refusals are mapped to their meaning.
pub(crate) async fn post(
    config: &TransportConfig,
    url: &str,
    path: &str,
    identity: Identity,
    body: ChunkBody,
    response_timeout: Option<Duration>,
    expected: StatusCode,
) -> Result<(Response<Incoming>, ConnGuard), ConnectError> {
    let authority = PeerAddr::parse(url)
        .ok_or_else(|| ConnectError::BadUrl(url.to_string()))?
        .authority;
    let dial_timeout = config.dial_timeout;
    let stream = match config.dialer.connect(url, dial_timeout).await {
        Ok(stream) => stream,
        Err(DialError::Timeout) => {
            return Err(ConnectError::DialTimeout {
                url: url.to_string(),
            })
        }
        Err(DialError::Io(source)) => {
            return Err(ConnectError::Dial {
                url: url.to_string(),
                source,
            })
        }
        Err(e) => return Err(ConnectError::BadUrl(e.to_string())),
    };
    let (mut sender, conn) = match tokio::time::timeout(
        dial_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    {
        Ok(handshake) => handshake?,
        Err(_) => return Err(ConnectError::ResponseTimeout),
    };
    let guard = ConnGuard(tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%err, "peer connection closed");
        }
    }));
    let request = Request::post(path)
        .header(http::header::HOST, &authority)
        .header(HEADER_FROM, format_id(identity.from))
        .header(HEADER_TO, format_id(identity.to))
        .header(HEADER_CLUSTER_ID, format_id(identity.cluster_id))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)?;
    let response = match response_timeout {
        Some(limit) => match tokio::time::timeout(limit, sender.send_request(request)).await {
            Ok(response) => response?,
            Err(_) => return Err(ConnectError::ResponseTimeout),
        },
        None => sender.send_request(request).await?,
    };
    if response.status() == expected {
        return Ok((response, guard));
    }
    Err(refusal(response, dial_timeout).await)
}

/// The meaning of an unexpected response.
async fn refusal(response: Response<Incoming>, read_timeout: Duration) -> ConnectError {
    let status = response.status();
    let remote_cluster = response
        .headers()
        .get(HEADER_CLUSTER_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The body is a short error text; bound both its size and the wait for it.
    let limited = http_body_util::Limited::new(response.into_body(), 4096);
    let body = match tokio::time::timeout(read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        _ => String::new(),
    };
    match status {
        StatusCode::PRECONDITION_FAILED if body.contains("cluster ID mismatch") => {
            ConnectError::ClusterIdMismatch { remote_cluster }
        }
        StatusCode::GONE => ConnectError::MemberRemoved,
        _ => ConnectError::Refused { status, body },
    }
}
