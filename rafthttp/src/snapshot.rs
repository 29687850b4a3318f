//! Snapshot transfer: `POST /raft/snapshot` on a connection of its own, body = one frame with the MsgSnap followed
//! by the database bytes, streamed in chunks. The receiver answers 204 only after the server saved it.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use raftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::client::{self, Chunk, ChunkBody, Identity};
use crate::codec::{self, Decoded, FrameDecoder, MAX_SNAPSHOT_FRAME};
use crate::error::{ConnectError, SendSnapshotError, SnapshotMessageError};
use crate::request::refuse;
use crate::{format_id, Inner, SnapshotStatus, WriteDb, SNAPSHOT_PATH};

/// Size of one body write of the database.
const CHUNK_SIZE: usize = 64 << 10;
/// Chunks buffered between the database writer and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Once the whole database is sent, the receiver has this long to save it and answer.
const ACK_TIMEOUT: Duration = Duration::from_secs(300);
/// A snapshot upload that stalls for this long is abandoned by the receiver.
const RECEIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `msg` and the database `write_db` produces to `msg.to`, and reports the outcome to raft.
pub(crate) async fn send(inner: Arc<Inner>, msg: Message, write_db: WriteDb) {
    let to = msg.to;
    let index = msg.snapshot.as_ref().map_or(0, |s| s.index());
    let start = Instant::now();
    let result = match inner.peer(to) {
        None => Err(SendSnapshotError::UnknownPeer),
        Some(peer) => {
            let urls = peer.urls_to_try();
            tokio::select! {
                _ = peer.cancel.cancelled() => Err(SendSnapshotError::Stopped),
                r = transfer(&inner, &urls, msg, write_db) => r,
            }
        }
    };
    match result {
        Ok(bytes) => {
            tracing::info!(
                peer = %format_id(to),
                snapshot_index = index,
                db_bytes = bytes,
                took = ?start.elapsed(),
                "sent database snapshot to peer"
            );
            inner.raft.report_snapshot(to, SnapshotStatus::Finish);
        }
        Err(err) => {
            tracing::warn!(peer = %format_id(to), snapshot_index = index, error = %err, "failed to send database snapshot");
            inner.raft.report_unreachable(to);
            inner.raft.report_snapshot(to, SnapshotStatus::Failure);
        }
    }
}

/// One upload attempt: the database is produced once, so only the first URL that accepts a connection gets it.
/// Returns the number of database bytes sent.
async fn transfer(
    inner: &Inner,
    urls: &[String],
    msg: Message,
    write_db: WriteDb,
) -> Result<u64, SendSnapshotError> {
    let Some(url) = urls.first() else {
        return Err(SendSnapshotError::NoUrl);
    };
    let identity = Identity {
        from: inner.config.member_id,
        to: msg.to,
        cluster_id: inner.config.cluster_id,
    };
    let dial_timeout = inner.config.dial_timeout;
    let (body_tx, body) = ChunkBody::channel(CHUNKS_IN_FLIGHT);
    // The channel is empty and has room: this cannot fail.
    let _ = body_tx.try_send(Chunk::Data(codec::encode(&msg)));
    let runtime = inner.runtime.clone();
    let mut writer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: body_tx,
            runtime,
            buf: BytesMut::with_capacity(CHUNK_SIZE),
            timeout: dial_timeout,
            written: 0,
        };
        write_db(&mut out)?;
        out.finish()
    });
    let request = client::post(
        &inner.config,
        url,
        SNAPSHOT_PATH,
        identity,
        body,
        None,
        StatusCode::NO_CONTENT,
    );
    tokio::pin!(request);
    let mut written: Option<u64> = None;
    let mut ack_deadline = tokio::time::Instant::now();
    let response = loop {
        tokio::select! {
            response = &mut request => break response,
            outcome = &mut writer, if written.is_none() => match outcome {
                Ok(Ok(n)) => {
                    written = Some(n);
                    ack_deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
                }
                // Dropping the writer's channel without the end marker already aborted the request.
                Ok(Err(err)) => return Err(SendSnapshotError::WriteDb(err)),
                Err(err) => return Err(SendSnapshotError::Writer(err)),
            },
            _ = tokio::time::sleep_until(ack_deadline), if written.is_some() => {
                return Err(SendSnapshotError::NoAnswer(ACK_TIMEOUT));
            }
        }
    };
    match response {
        Ok(_) => {}
        Err(ConnectError::MemberRemoved) => {
            inner.report_removed();
            return Err(ConnectError::MemberRemoved.into());
        }
        Err(err) => return Err(err.into()),
    }
    // A 204 can only come after the receiver read the whole body, so the writer has finished or is finishing.
    match written {
        Some(n) => Ok(n),
        None => match writer.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(err)) => Err(SendSnapshotError::WriteDb(err)),
            Err(err) => Err(SendSnapshotError::Writer(err)),
        },
    }
}

/// The `io::Write` handed to the server's database writer: buffers chunks and sends each within the dial timeout.
struct ChunkWriter {
    tx: mpsc::Sender<Chunk>,
    runtime: tokio::runtime::Handle,
    buf: BytesMut,
    timeout: Duration,
    written: u64,
}

impl ChunkWriter {
    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        let timeout = self.timeout;
        let tx = &self.tx;
        // Runs on a blocking thread: waiting here for the connection to drain is the back-pressure.
        match self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, tx.send(chunk)).await })
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "snapshot connection closed",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("snapshot chunk write took longer than {timeout:?}"),
            )),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.send(Chunk::Data(chunk))?;
        self.buf.reserve(CHUNK_SIZE);
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.send_buffered()?;
        self.send(Chunk::End)?;
        Ok(self.written)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

/// Reads the MsgSnap at the head of `body`, then lets the server save the database as it streams in.
pub(crate) async fn receive(inner: Arc<Inner>, from: u64, body: Body) -> Response {
    let mut body = body;
    let mut decoder = FrameDecoder::new(MAX_SNAPSHOT_FRAME);
    let msg = loop {
        match decoder.next_frame() {
            Ok(Some(Decoded::Message(msg))) => break *msg,
            Ok(Some(Decoded::Keepalive)) => {
                return bad_snapshot(&inner, from, SnapshotMessageError::Empty)
            }
            Ok(None) => {}
            Err(err) => return bad_snapshot(&inner, from, err.into()),
        }
        match next_chunk(&mut body).await {
            Ok(Some(chunk)) => decoder.push(&chunk),
            Ok(None) => return bad_snapshot(&inner, from, SnapshotMessageError::Truncated),
            Err(err) => return bad_snapshot(&inner, from, err.into()),
        }
    };
    if msg.kind() != MessageType::MsgSnap {
        return bad_snapshot(
            &inner,
            from,
            SnapshotMessageError::UnexpectedType(msg.kind()),
        );
    }
    let index = msg.snapshot.as_ref().map_or(0, |s| s.index());
    tracing::info!(peer = %format_id(from), snapshot_index = index, "receiving database snapshot");
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let head = decoder.into_remainder();
    let shutdown = inner.shutdown.clone();
    let feeder = tokio::spawn(async move {
        if !head.is_empty() && tx.send(Ok(head)).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => Err(io::Error::other("transport stopped")),
                next = next_chunk(&mut body) => next,
            };
            let item = match next {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => return,
                Err(err) => Err(err),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let raft = inner.raft.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
            read: 0,
        };
        let result = raft.receive_snapshot(msg, &mut reader);
        (result, reader.read)
    })
    .await;
    feeder.abort();
    match saved {
        Ok((Ok(()), bytes)) => {
            tracing::info!(
                peer = %format_id(from),
                snapshot_index = index,
                db_bytes = bytes,
                took = ?start.elapsed(),
                "received and saved database snapshot"
            );
            (
                StatusCode::NO_CONTENT,
                [(http::header::CONNECTION, "close")],
            )
                .into_response()
        }
        Ok((Err(err), _)) => {
            tracing::warn!(peer = %format_id(from), snapshot_index = index, error = %err, "failed to save database snapshot");
            refuse(
                &inner,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("failed to save KV snapshot ({err})"),
            )
        }
        Err(err) => {
            tracing::error!(peer = %format_id(from), error = %err, "snapshot receiver failed");
            refuse(
                &inner,
                StatusCode::INTERNAL_SERVER_ERROR,
                "snapshot receiver failed",
            )
        }
    }
}

fn bad_snapshot(inner: &Inner, from: u64, reason: SnapshotMessageError) -> Response {
    tracing::warn!(peer = %format_id(from), error = %reason, "failed to read snapshot message");
    refuse(
        inner,
        StatusCode::BAD_REQUEST,
        &format!("error decoding raft snapshot message ({reason})"),
    )
}

/// The next data chunk of `body`; an upload that stalls for [`RECEIVE_IDLE_TIMEOUT`] is an error.
async fn next_chunk(body: &mut Body) -> io::Result<Option<Bytes>> {
    loop {
        match tokio::time::timeout(RECEIVE_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no snapshot data within {RECEIVE_IDLE_TIMEOUT:?}"),
                ))
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(err))) => return Err(io::Error::other(err)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// The `io::Read` handed to the server: yields the body as it arrives, fails if the transfer broke.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    read: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => return Err(err),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        self.read += n as u64;
        Ok(n)
    }
}
