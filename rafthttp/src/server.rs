//! The peer listener's handlers: the inbound message stream and the snapshot upload.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use raftpb::MessageType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::codec::{Decoded, FrameDecoder, MAX_STREAM_FRAME};
use crate::error::{Rejection, StreamEnd};
use crate::peer::{Peer, KEEPALIVE_INTERVAL, READ_TIMEOUT};
use crate::request::{check_request, reject};
use crate::{format_id, snapshot, Inner, HEADER_CLUSTER_ID, SNAPSHOT_PATH, STREAM_PATH};

pub(crate) fn router(inner: Arc<Inner>) -> axum::Router {
    axum::Router::new()
        .route(STREAM_PATH, post(stream_handler))
        .route(SNAPSHOT_PATH, post(snapshot_handler))
        // Bodies here are streams and databases: their size is bounded by the frame limits, not by axum.
        .layer(DefaultBodyLimit::disable())
        .with_state(inner)
}

async fn stream_handler(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let from = match check_request(&inner, &headers, "stream") {
        Ok(from) => from,
        Err(rejection) => return reject(&inner, rejection),
    };
    let Some(peer) = inner.peer(from) else {
        tracing::warn!(
            local_member_id = %format_id(inner.config.member_id),
            remote_peer_id = %format_id(from),
            "failed to find remote peer in cluster"
        );
        return reject(&inner, Rejection::SenderNotFound);
    };
    let token = peer.cancel.child_token();
    let generation = inner.next_inbound.fetch_add(1, Ordering::Relaxed);
    let replaced = inner
        .inbound
        .lock()
        .insert(from, (generation, token.clone()));
    if let Some((_, old)) = replaced {
        old.cancel();
    }
    tracing::info!(peer = %format_id(from), "established inbound stream from peer");
    let (keepalive_tx, keepalive_rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(read_stream(
        inner.clone(),
        peer,
        body,
        token,
        generation,
        keepalive_tx,
    ));
    (
        StatusCode::OK,
        [
            (HEADER_CLUSTER_ID, format_id(inner.config.cluster_id)),
            (http::header::CONNECTION.as_str(), "close".to_string()),
        ],
        Body::from_stream(ReceiverStream::new(keepalive_rx)),
    )
        .into_response()
}

/// Hands the messages of one inbound stream to raft in order, and answers with link heartbeats so that the sender
/// can tell a dead receiver from an idle one. Ends on a bad frame, a silent sender, a replacing stream or a stop.
async fn read_stream(
    inner: Arc<Inner>,
    peer: Arc<Peer>,
    mut body: Body,
    token: CancellationToken,
    generation: u64,
    keepalive: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let from = peer.id;
    let mut decoder = FrameDecoder::new(MAX_STREAM_FRAME);
    // The first byte makes the response head go out now, not with the first heartbeat.
    let _ = keepalive.try_send(Ok(Bytes::from_static(b"\n")));
    let mut ticker = tokio::time::interval(KEEPALIVE_INTERVAL);
    let mut read_deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let reason: StreamEnd = 'read: loop {
        tokio::select! {
            _ = token.cancelled() => break 'read StreamEnd::ClosedLocally,
            _ = ticker.tick() => {
                // A full channel means the sender is not reading: its own timeout will catch that.
                let _ = keepalive.try_send(Ok(Bytes::from_static(b"\n")));
            }
            _ = tokio::time::sleep_until(read_deadline) => {
                break 'read StreamEnd::Idle(READ_TIMEOUT);
            }
            frame = body.frame() => {
                let chunk = match frame {
                    None => break 'read StreamEnd::PeerClosed,
                    Some(Err(err)) => break 'read StreamEnd::Read(err),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                };
                read_deadline = tokio::time::Instant::now() + READ_TIMEOUT;
                decoder.push(&chunk);
                loop {
                    match decoder.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Decoded::Keepalive)) => {}
                        Ok(Some(Decoded::Message(msg))) => {
                            if msg.kind() == MessageType::MsgSnap {
                                tracing::warn!(peer = %format_id(from), "ignored MsgSnap on the message stream");
                                continue;
                            }
                            peer.record_received();
                            inner.raft.process(*msg);
                        }
                        Err(err) => {
                            tracing::warn!(peer = %format_id(from), error = %err, "closing inbound stream: bad frame");
                            break 'read StreamEnd::BadFrame(err);
                        }
                    }
                }
            }
        }
    };
    tracing::info!(peer = %format_id(from), reason = %reason, "lost inbound stream from peer");
    let mut inbound = inner.inbound.lock();
    if inbound.get(&from).map(|(g, _)| *g) == Some(generation) {
        inbound.remove(&from);
    }
}

async fn snapshot_handler(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let from = match check_request(&inner, &headers, "snapshot") {
        Ok(from) => from,
        Err(rejection) => return reject(&inner, rejection),
    };
    snapshot::receive(inner, from, body).await
}
