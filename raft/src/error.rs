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
    /// An append would leave a hole after the last stored entry.
    #[error("storage failure: missing log entries: last index {last_index}, appending at {appending_at}")]
    MissingEntries { last_index: u64, appending_at: u64 },
}

/// Why a [`crate::Config`], a restarted state or a bootstrap request is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("cannot use none as id")]
    ZeroId,
    #[error("heartbeat tick must be greater than 0")]
    ZeroHeartbeatTick,
    #[error("election tick must be greater than heartbeat tick")]
    ElectionTickTooSmall,
    #[error("max inflight messages must be greater than 0")]
    ZeroMaxInflightMsgs,
    #[error("check_quorum must be enabled when read_only_option is LeaseBased")]
    LeaseBasedWithoutCheckQuorum,
    #[error("hard state commit {commit} out of range [{first}, {last}]")]
    CommitOutOfRange { commit: u64, first: u64, last: u64 },
    #[error("must bootstrap with at least one peer")]
    BootstrapWithoutPeers,
    #[error("can only bootstrap an empty log")]
    BootstrapNonEmptyLog,
}

/// Why a membership change (or a membership restored from storage) is refused; etcd's confchange messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfChangeError {
    #[error("{0} is in learners and voters")]
    LearnerIsVoter(u64),
    #[error("{0} is in learners_next but not in the outgoing voters")]
    LearnerNextNotOutgoing(u64),
    #[error("auto_leave or learners_next set outside a joint configuration")]
    JointFieldsOutsideJoint,
    #[error("config is already joint")]
    AlreadyJoint,
    #[error("can't make a zero-voter config joint")]
    ZeroVoterJoint,
    #[error("can't leave a non-joint config")]
    NotJoint,
    #[error("can't apply simple config change in joint config")]
    SimpleInJoint,
    #[error("more than one voter changed without entering joint config")]
    TooManyVotersChanged,
    #[error("removed all voters")]
    NoVoters,
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
    ConfigInvalid(#[from] ConfigError),
    #[error("invalid conf change: {0}")]
    ConfChangeInvalid(#[from] ConfChangeError),
    #[error("malformed {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("malformed conf change: normal entry")]
    NotConfChange,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T> = std::result::Result<T, Error>;
