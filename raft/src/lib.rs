//! The Raft consensus core: a single-owner, I/O-free state machine driven by tick/step/propose.
//!
//! [`RawNode`] is the whole public surface for a server: it takes ticks, peer messages and proposals, and hands
//! back [`Ready`] batches that separate messages that may be sent at once from those that must wait until the
//! batch is durable. Nothing here does I/O, spawns threads or reads clocks; with the same seed and inputs a node
//! behaves the same, so whole clusters can be simulated deterministically in one thread.
//!
//! Semantics follow etcd's raft: pre-vote, check-quorum and the leader lease, per-follower flow control with
//! fast backtracking, joint consensus with auto-leave, learners, leader transfer, ReadIndex (safe and
//! lease-based) and snapshots.

mod error;
mod log;
mod raft;
mod raw_node;
mod read_only;
mod storage;
mod tracker;

pub use error::{ConfChangeError, ConfigError, Error, Result, StorageError};
pub use raft::{decode_conf_change, Config, SoftState, StateRole};
pub use raw_node::{Peer, PeerProgress, RawNode, Ready, SnapshotStatus, Status};
pub use read_only::{ReadOnlyOption, ReadState};
pub use storage::{MemoryStorage, RaftState, Storage, StorageResult};
pub use tracker::ProgressState;

pub use raftpb;
