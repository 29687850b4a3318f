//! Typed errors of the raft core and of its storage.

use thiserror::Error;

/// Errors a [`crate::Storage`] returns; the messages are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    #[error("requested entry at index is unavailable")]
    Unavailable,
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    #[error("storage failure: {0}")]
    Other(String),
}

/// Errors returned by [`crate::RawNode`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The proposal was not appended: no leader is known, a leader transfer is in progress, this node was removed,
    /// or the uncommitted log is over its size limit. etcd returns `ErrProposalDropped` in the same cases.
    #[error("raft proposal dropped")]
    ProposalDropped,
    #[error("raft: cannot step raft local message")]
    StepLocalMsg,
    #[error("raft: cannot step as peer not found")]
    StepPeerNotFound,
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    #[error("invalid conf change: {0}")]
    ConfChangeInvalid(String),
    #[error("malformed {what}: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T> = std::result::Result<T, Error>;
