//! The settings of one raft node and their validation.

use crate::error::ConfigError;
use crate::read_only::ReadOnlyOption;

/// Configuration of one raft node.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// Ticks without hearing from a leader before a follower campaigns; the actual timeout is randomized in
    /// `[election_tick, 2 * election_tick)`.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The last index the application applied before a restart.
    pub applied: u64,
    /// Byte limit of the entries of one MsgApp (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// Byte limit of the committed entries of one Ready.
    pub max_committed_size_per_ready: u64,
    /// Byte limit of the leader's uncommitted tail; proposals beyond it are dropped. 0 means no limit.
    pub max_uncommitted_entries_size: u64,
    /// Most MsgApps in flight to one follower in Replicate state.
    pub max_inflight_msgs: usize,
    /// Most bytes in flight to one follower; 0 means no limit.
    pub max_inflight_bytes: u64,
    /// A leader that has not heard from a quorum for an election timeout steps down, and followers that heard
    /// from a leader within the timeout ignore votes (the leader lease).
    pub check_quorum: bool,
    /// Run a pre-election that does not bump terms, so a partitioned node cannot disrupt the cluster on return.
    pub pre_vote: bool,
    pub read_only_option: ReadOnlyOption,
    /// Followers return `ProposalDropped` instead of forwarding proposals to the leader.
    pub disable_proposal_forwarding: bool,
    /// Seed of the election-timeout randomization; 0 uses the id. Same seed and inputs give the same run.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id: 0,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: u64::MAX,
            max_uncommitted_entries_size: 0,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::ZeroHeartbeatTick);
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::ElectionTickTooSmall);
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroMaxInflightMsgs);
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(ConfigError::LeaseBasedWithoutCheckQuorum);
        }
        Ok(())
    }
}
