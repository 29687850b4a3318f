//! Peer transport between the members of a cluster, modelled on etcd's `rafthttp`.
//!
//! Every member keeps one long-lived outgoing HTTP stream to each peer carrying length-prefixed raft messages
//! (see [`codec`]); the peer delivers them in order to its [`Raft`]. Snapshots travel on a connection of their own,
//! so heartbeats keep flowing while a large database is streamed. Every request names its sender, its target and
//! its cluster: a member of another cluster is refused with 412, a removed member with 410.
//!
//! Invariants:
//! - a peer is *active* exactly while its outgoing stream has been accepted and has not failed; messages for an
//!   inactive or unknown peer are dropped at once and reported unreachable, never queued;
//! - at most one inbound stream per peer is read at a time: a new one replaces the old, so per-peer order is the
//!   order of a single TCP connection;
//! - nothing read from the network can panic the process: bad input closes that connection with a log line.

mod client;
mod codec;
mod dial;
mod error;
mod peer;
mod request;
mod server;
mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use raftpb::{Message, MessageType};
use tokio_util::sync::CancellationToken;

use crate::peer::Peer;

pub use crate::dial::{DialError, Dialer, PeerAddr, PeerStream, PlainStream};

/// Header naming the sending member (hex id, as etcd writes ids).
pub(crate) const HEADER_FROM: &str = "X-Server-From";
/// Header naming the member the request is for.
pub(crate) const HEADER_TO: &str = "X-Raft-To";
/// Header carrying the cluster id, on requests and on every answer.
pub(crate) const HEADER_CLUSTER_ID: &str = "X-Etcd-Cluster-ID";

/// Path of the long-lived message stream.
pub const STREAM_PATH: &str = "/raft/stream";
/// Path of the snapshot upload.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

pub(crate) fn format_id(id: u64) -> String {
    format!("{id:x}")
}

pub(crate) fn parse_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

/// Settings of a [`Transport`].
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Bound on connecting to a peer and on each snapshot chunk write.
    pub dial_timeout: Duration,
    /// How peers are dialed (TLS for `https` peer URLs).
    pub dialer: Dialer,
}

impl TransportConfig {
    /// A config with etcd's default dial timeout (1 s).
    pub fn new(member_id: u64, cluster_id: u64) -> TransportConfig {
        TransportConfig {
            member_id,
            cluster_id,
            dial_timeout: Duration::from_secs(1),
            dialer: Dialer::plain(),
        }
    }
}

/// Writes the backend database into the snapshot connection (run on a blocking thread).
pub type WriteDb = Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send>;

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig::new(0, 0)
    }
}

/// Outcome of sending a snapshot, reported to raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    Finish,
    Failure,
}

/// The server's reason for refusing a received snapshot; its message goes back to the sender.
pub type SaveSnapshotError = Box<dyn std::error::Error + Send + Sync>;

/// Implemented by the server; called from transport tasks (must not block long, except `receive_snapshot`, which
/// runs on a blocking thread).
pub trait Raft: Send + Sync + 'static {
    /// A raft message from a peer (anything but the MsgSnap with its database).
    fn process(&self, msg: Message);
    /// A MsgSnap arrived; `db` streams the backend database that goes with it, as it comes off the network: it
    /// returns an error if the transfer breaks. Return Err to refuse (the sender then gets Failure).
    fn receive_snapshot(
        &self,
        msg: Message,
        db: &mut dyn std::io::Read,
    ) -> Result<(), SaveSnapshotError>;
    /// `id` could not be reached. Also called synchronously from [`Transport::send`], so it must only queue the
    /// report.
    fn report_unreachable(&self, id: u64);
    fn report_snapshot(&self, id: u64, status: SnapshotStatus);
    /// True if `id` was removed from the cluster: its connections are refused with 410 Gone and it learns that it
    /// was removed.
    fn is_removed(&self, id: u64) -> bool;
    /// A peer told us that this member was removed from the cluster (the server stops, as etcd does).
    fn removed_from_cluster(&self);
}

/// Counters of one peer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages written to the outgoing stream.
    pub messages_sent: u64,
    /// Body writes on the outgoing stream (one per batch of queued messages).
    pub batches_sent: u64,
    /// Messages dropped because the peer was inactive or its queue was full.
    pub messages_dropped: u64,
    /// Messages read from the peer's inbound stream and handed to raft.
    pub messages_received: u64,
}

pub(crate) struct Inner {
    pub(crate) config: TransportConfig,
    pub(crate) raft: Arc<dyn Raft>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) peers: RwLock<HashMap<u64, Arc<Peer>>>,
    /// The inbound stream being read for each peer: its generation and the token that closes it.
    pub(crate) inbound: Mutex<HashMap<u64, (u64, CancellationToken)>>,
    pub(crate) next_inbound: std::sync::atomic::AtomicU64,
    pub(crate) shutdown: CancellationToken,
    removal_reported: AtomicBool,
}

impl Inner {
    pub(crate) fn peer(&self, id: u64) -> Option<Arc<Peer>> {
        self.peers.read().get(&id).cloned()
    }

    /// A peer said we were removed: tell the server once, it stops.
    pub(crate) fn report_removed(&self) {
        if !self.removal_reported.swap(true, Ordering::SeqCst) {
            self.raft.removed_from_cluster();
        }
    }

    /// Closes the inbound stream of `id`, if any.
    pub(crate) fn close_inbound(&self, id: u64) {
        if let Some((_, token)) = self.inbound.lock().remove(&id) {
            token.cancel();
        }
    }
}

/// The peer transport of one member. Cheap to clone; all clones share the same connections.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// Must be called inside a tokio runtime (tasks are spawned on it).
    pub fn new(config: TransportConfig, raft: Arc<dyn Raft>) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                config,
                raft,
                runtime: tokio::runtime::Handle::current(),
                peers: RwLock::new(HashMap::new()),
                inbound: Mutex::new(HashMap::new()),
                next_inbound: std::sync::atomic::AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                removal_reported: AtomicBool::new(false),
            }),
        }
    }

    /// The handlers for the peer listener ([`STREAM_PATH`], [`SNAPSHOT_PATH`]); the server merges its own endpoints
    /// and serves it.
    pub fn router(&self) -> axum::Router {
        server::router(self.inner.clone())
    }

    /// How this member dials its peers.
    pub fn dialer(&self) -> &Dialer {
        &self.inner.config.dialer
    }

    /// Starts streaming to `id` at `urls` (like "http://127.0.0.1:2380"). Adding a known peer does nothing.
    pub fn add_peer(&self, id: u64, urls: Vec<String>) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let mut peers = self.inner.peers.write();
        if peers.contains_key(&id) {
            return;
        }
        let (peer, queue) = Peer::new(id, urls, self.inner.shutdown.child_token());
        peers.insert(id, peer.clone());
        drop(peers);
        tracing::info!(peer = %format_id(id), urls = ?peer.urls(), "added remote peer");
        self.inner
            .runtime
            .spawn(peer::run(self.inner.clone(), peer, queue));
    }

    /// Replaces the URLs of `id`; a stream to a URL no longer listed is reconnected.
    pub fn update_peer(&self, id: u64, urls: Vec<String>) {
        match self.inner.peer(id) {
            Some(peer) => {
                tracing::info!(peer = %format_id(id), ?urls, "updated remote peer");
                peer.set_urls(urls);
            }
            None => tracing::warn!(peer = %format_id(id), "ignored update of unknown peer"),
        }
    }

    /// Stops streaming to `id` and closes its inbound stream.
    pub fn remove_peer(&self, id: u64) {
        let removed = self.inner.peers.write().remove(&id);
        if let Some(peer) = removed {
            peer.stop();
            self.inner.close_inbound(id);
            tracing::info!(peer = %format_id(id), "removed remote peer");
        }
    }

    /// Queues messages for their peers without blocking. A message for an unknown or inactive peer, or whose
    /// peer's queue is full, is dropped and its peer reported unreachable (once per peer and call).
    /// MsgSnap must go through [`Transport::send_snapshot`]; one given here is refused and reported as failed.
    pub fn send(&self, msgs: Vec<Message>) {
        let mut unreachable: Vec<u64> = Vec::new();
        for msg in msgs {
            let to = msg.to;
            if msg.kind() == MessageType::MsgSnap {
                tracing::error!(peer = %format_id(to), "MsgSnap given to send(): use send_snapshot");
                self.inner.raft.report_snapshot(to, SnapshotStatus::Failure);
                if !unreachable.contains(&to) {
                    unreachable.push(to);
                }
                continue;
            }
            let delivered = match self.inner.peer(to) {
                Some(peer) => peer.enqueue(msg),
                None => {
                    tracing::debug!(peer = %format_id(to), "dropped message for unknown peer");
                    false
                }
            };
            if !delivered && !unreachable.contains(&to) {
                unreachable.push(to);
            }
        }
        for id in unreachable {
            self.inner.raft.report_unreachable(id);
        }
    }

    /// Sends a MsgSnap plus the database that `write_db` writes (on a blocking thread), on a connection of its own.
    /// Reports Finish once the peer acknowledged that it saved it, Failure otherwise.
    pub fn send_snapshot(&self, msg: Message, write_db: WriteDb) {
        let inner = self.inner.clone();
        self.inner
            .runtime
            .spawn(snapshot::send(inner, msg, write_db));
    }

    /// When the stream to `id` became active (None: not connected).
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.inner.peer(id).and_then(|p| p.active_since())
    }

    /// Counters of peer `id`.
    pub fn peer_stats(&self, id: u64) -> Option<PeerStats> {
        self.inner.peer(id).map(|p| p.stats())
    }

    /// Closes every connection and stops the tasks. Later sends are dropped.
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
        let peers: Vec<Arc<Peer>> = self.inner.peers.write().drain().map(|(_, p)| p).collect();
        for peer in peers {
            peer.stop();
        }
        let inbound: Vec<CancellationToken> = self
            .inner
            .inbound
            .lock()
            .drain()
            .map(|(_, (_, token))| token)
            .collect();
        for token in inbound {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transport_is_shareable_across_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<super::Transport>();
    }

    #[test]
    fn ids_are_hex_as_in_etcd() {
        assert_eq!(super::format_id(0x8e9e05c52164694d), "8e9e05c52164694d");
        assert_eq!(
            super::parse_id("8e9e05c52164694d"),
            Some(0x8e9e05c52164694d)
        );
        assert_eq!(super::parse_id("not-an-id"), None);
        assert_eq!(super::parse_id(""), None);
    }
}
