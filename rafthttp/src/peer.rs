//! One remote member: its queue, its outgoing stream and whether that stream is active.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::StatusCode;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use raftpb::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Chunk, ChunkBody, Identity};
use crate::error::ConnectError;
use crate::{codec, format_id, Inner, PeerStats, STREAM_PATH};

/// Messages waiting for the stream writer (etcd's streamBufSize).
pub(crate) const QUEUE_CAPACITY: usize = 4096;
/// First wait before reconnecting; doubles on each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An idle stream carries a link heartbeat this often in both directions.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A stream that carried nothing (not even a link heartbeat) for this long is dead (etcd's ConnReadTimeout).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A write to a stream that does not drain for this long means a dead peer (etcd's ConnWriteTimeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch stops growing past this many bytes so that one body write stays bounded.
const MAX_BATCH_BYTES: usize = 4 << 20;

pub(crate) struct Peer {
    pub(crate) id: u64,
    urls: watch::Sender<Vec<String>>,
    /// The URL to try first: the last one that worked, moved on when one fails (etcd's urlPicker).
    preferred_url: AtomicUsize,
    queue: mpsc::Sender<Message>,
    active: AtomicBool,
    active_since: Mutex<Option<Instant>>,
    pub(crate) cancel: CancellationToken,
    messages_sent: AtomicU64,
    batches_sent: AtomicU64,
    messages_dropped: AtomicU64,
    messages_received: AtomicU64,
}

impl Peer {
    pub(crate) fn new(
        id: u64,
        urls: Vec<String>,
        cancel: CancellationToken,
    ) -> (Arc<Peer>, mpsc::Receiver<Message>) {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let peer = Arc::new(Peer {
            id,
            urls: watch::Sender::new(urls),
            preferred_url: AtomicUsize::new(0),
            queue,
            active: AtomicBool::new(false),
            active_since: Mutex::new(None),
            cancel,
            messages_sent: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
        });
        (peer, rx)
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.urls.borrow().clone()
    }

    pub(crate) fn set_urls(&self, urls: Vec<String>) {
        self.preferred_url.store(0, Ordering::Relaxed);
        self.urls.send_replace(urls);
    }

    /// The URLs in the order to try them: the preferred one first.
    pub(crate) fn urls_to_try(&self) -> Vec<String> {
        let mut urls = self.urls();
        if !urls.is_empty() {
            let first = self.preferred_url.load(Ordering::Relaxed) % urls.len();
            urls.rotate_left(first);
        }
        urls
    }

    /// Remembers which URL worked (or moves past one that failed).
    pub(crate) fn prefer_url(&self, url: &str, worked: bool) {
        let urls = self.urls.borrow();
        if let Some(pos) = urls.iter().position(|u| u == url) {
            let next = if worked { pos } else { pos + 1 };
            self.preferred_url.store(next, Ordering::Relaxed);
        }
    }

    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    /// Queues `msg` if the stream is active and has room; false when it was dropped.
    pub(crate) fn enqueue(&self, msg: Message) -> bool {
        if self.active.load(Ordering::Acquire) && self.queue.try_send(msg).is_ok() {
            return true;
        }
        self.messages_dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    pub(crate) fn active_since(&self) -> Option<Instant> {
        *self.active_since.lock()
    }

    pub(crate) fn record_received(&self) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PeerStats {
        PeerStats {
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            messages_dropped: self.messages_dropped.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
        }
    }

    fn activate(&self) {
        *self.active_since.lock() = Some(Instant::now());
        self.active.store(true, Ordering::Release);
        tracing::info!(peer = %format_id(self.id), "peer became active");
    }

    fn deactivate(&self, err: &ConnectError) {
        self.active.store(false, Ordering::Release);
        *self.active_since.lock() = None;
        tracing::warn!(peer = %format_id(self.id), error = %err, "peer became inactive (message send to peer failed)");
    }
}

/// The stream writer of `peer`: connects, pumps the queue, reconnects with backoff, until the peer is removed or
/// the transport stops.
pub(crate) async fn run(inner: Arc<Inner>, peer: Arc<Peer>, mut queue: mpsc::Receiver<Message>) {
    let mut backoff = MIN_BACKOFF;
    // Failures are logged when they change, not on every retry.
    let mut last_failure: Option<String> = None;
    loop {
        let mut activated = false;
        let err = tokio::select! {
            _ = peer.cancel.cancelled() => ConnectError::Stopped,
            err = connect_and_pump(&inner, &peer, &mut queue, &mut activated) => err,
        };
        if activated {
            peer.deactivate(&err);
            backoff = MIN_BACKOFF;
            last_failure = None;
            // Whatever was queued for the dead stream is lost, as in etcd; raft learns it through unreachable.
            let mut lost = 0usize;
            while queue.try_recv().is_ok() {
                lost += 1;
            }
            if lost > 0 {
                peer.messages_dropped
                    .fetch_add(lost as u64, Ordering::Relaxed);
                inner.raft.report_unreachable(peer.id);
            }
        }
        if matches!(err, ConnectError::Stopped) || peer.cancel.is_cancelled() {
            return;
        }
        if !activated {
            log_failure(&inner, &peer, &err, &mut last_failure);
            match err {
                ConnectError::ClusterIdMismatch { .. } => backoff = MAX_BACKOFF,
                ConnectError::MemberRemoved => {
                    backoff = MAX_BACKOFF;
                    inner.report_removed();
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = peer.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn log_failure(inner: &Inner, peer: &Peer, err: &ConnectError, last: &mut Option<String>) {
    let text = err.to_string();
    if last.as_deref() == Some(text.as_str()) {
        tracing::debug!(peer = %format_id(peer.id), error = %text, "stream to peer still failing");
        return;
    }
    *last = Some(text);
    match err {
        ConnectError::ClusterIdMismatch { remote_cluster } => tracing::error!(
            peer = %format_id(peer.id),
            local_cluster_id = %format_id(inner.config.cluster_id),
            remote_cluster_id = %remote_cluster,
            "request sent was ignored by remote peer due to cluster ID mismatch"
        ),
        ConnectError::MemberRemoved => tracing::error!(
            peer = %format_id(peer.id),
            "remote peer says this member was removed from the cluster"
        ),
        _ => {
            tracing::warn!(peer = %format_id(peer.id), error = %err, "failed to connect stream to peer")
        }
    }
}

/// Connects to the first URL that answers, then writes queued messages until the stream breaks. Returns why it
/// ended; sets `activated` once the peer accepted the stream.
async fn connect_and_pump(
    inner: &Inner,
    peer: &Peer,
    queue: &mut mpsc::Receiver<Message>,
    activated: &mut bool,
) -> ConnectError {
    let identity = Identity {
        from: inner.config.member_id,
        to: peer.id,
        cluster_id: inner.config.cluster_id,
    };
    let dial_timeout = inner.config.dial_timeout;
    let mut urls_rx = peer.urls.subscribe();
    urls_rx.mark_unchanged();
    let urls = peer.urls_to_try();
    let mut last_err = ConnectError::NoUrl;
    for url in urls {
        let (body_tx, body) = ChunkBody::channel(1);
        let result = client::post(
            &inner.config,
            &url,
            STREAM_PATH,
            identity,
            body,
            Some(dial_timeout),
            StatusCode::OK,
        )
        .await;
        let (response, _conn) = match result {
            Ok(ok) => ok,
            Err(err) => {
                peer.prefer_url(&url, false);
                // A refusal is the peer's answer, the same on every URL: no point in trying the others.
                let final_answer = matches!(
                    err,
                    ConnectError::ClusterIdMismatch { .. }
                        | ConnectError::MemberRemoved
                        | ConnectError::Refused { .. }
                );
                last_err = err;
                if final_answer {
                    break;
                }
                continue;
            }
        };
        peer.prefer_url(&url, true);
        peer.activate();
        *activated = true;
        let mut response_body = response.into_body();
        let mut keepalive = tokio::time::interval(KEEPALIVE_INTERVAL);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_write = Instant::now();
        let mut read_deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            tokio::select! {
                first = queue.recv() => {
                    let Some(first) = first else { return ConnectError::Stopped };
                    let batch = drain_batch(first, queue);
                    peer.messages_sent.fetch_add(batch.1, Ordering::Relaxed);
                    peer.batches_sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(err) = write(&body_tx, Chunk::Data(batch.0.freeze())).await {
                        return err;
                    }
                    last_write = Instant::now();
                }
                _ = keepalive.tick() => {
                    if last_write.elapsed() >= KEEPALIVE_INTERVAL {
                        if let Err(err) = write(&body_tx, Chunk::Data(codec::keepalive())).await {
                            return err;
                        }
                        last_write = Instant::now();
                    }
                }
                frame = response_body.frame() => match frame {
                    Some(Ok(_)) => read_deadline = tokio::time::Instant::now() + READ_TIMEOUT,
                    Some(Err(err)) => return ConnectError::Http(err),
                    None => return ConnectError::StreamEnded,
                },
                _ = tokio::time::sleep_until(read_deadline) => return ConnectError::ReadTimeout(READ_TIMEOUT),
                changed = urls_rx.changed() => {
                    if changed.is_err() {
                        return ConnectError::Stopped;
                    }
                    if !urls_rx.borrow_and_update().contains(&url) {
                        return ConnectError::UrlsChanged;
                    }
                }
            }
        }
    }
    last_err
}

/// `first` plus everything queued behind it, up to [`MAX_BATCH_BYTES`], encoded as one body write.
fn drain_batch(first: Message, queue: &mut mpsc::Receiver<Message>) -> (BytesMut, u64) {
    let mut buf = BytesMut::new();
    codec::encode_into(&first, &mut buf);
    let mut count = 1;
    while buf.len() < MAX_BATCH_BYTES {
        match queue.try_recv() {
            Ok(msg) => {
                codec::encode_into(&msg, &mut buf);
                count += 1;
            }
            Err(_) => break,
        }
    }
    (buf, count)
}

async fn write(body: &mpsc::Sender<Chunk>, chunk: Chunk) -> Result<(), ConnectError> {
    match tokio::time::timeout(WRITE_TIMEOUT, body.send(chunk)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ConnectError::StreamEnded),
        Err(_) => Err(ConnectError::WriteTimeout(WRITE_TIMEOUT)),
    }
}
