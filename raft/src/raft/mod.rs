//! The protocol state machine: elections, replication, commitment, membership, leader transfer and ReadIndex.
//! It only mutates itself and queues messages; `RawNode` turns that into `Ready`s.
//!
//! Durability rule: a node never counts its own unpersisted entries. The leader's own match index moves only when
//! the application reports the entries durable (`on_persisted`), and every message a follower or candidate sends
//! (acknowledgements, votes) waits until the Ready that produced it is persisted.
//!
//! This module holds the state, the clock (ticks) and the outbox; each concern adds its `impl Raft` block in a
//! file of its own: `step` (term rules and per-role dispatch), `election`, `replication` (log replication and
//! commit), `read_index`, `leader_transfer` and `conf_change`.

mod conf_change;
mod config;
mod election;
mod leader_transfer;
mod read_index;
mod replication;
mod step;

pub use conf_change::decode_conf_change;
pub use config::Config;

use pkg::rand::SplitMix64;
use raftpb::{ConfState, HardState, Message, MessageType};
use tracing::info;

use crate::error::{ConfigError, Result};
use crate::log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::storage::Storage;
use crate::tracker::{Configuration, Progress, ProgressTracker};

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRole {
    #[default]
    Follower,
    Candidate,
    Leader,
    PreCandidate,
}

/// Volatile state useful to the application: who leads and in what role we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader_id: u64,
    pub raft_state: StateRole,
}

pub(crate) fn is_local_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
            | MessageType::MsgStorageAppend
            | MessageType::MsgStorageAppendResp
            | MessageType::MsgStorageApply
            | MessageType::MsgStorageApplyResp
    )
}

pub(crate) fn is_response_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppResp
            | MessageType::MsgVoteResp
            | MessageType::MsgHeartbeatResp
            | MessageType::MsgUnreachable
            | MessageType::MsgReadIndexResp
            | MessageType::MsgPreVoteResp
    )
}

fn msg(msg_type: MessageType, to: u64) -> Message {
    Message {
        msg_type: msg_type as i32,
        to,
        ..Default::default()
    }
}

/// One raft peer's protocol state. Crate-private: the application drives it through [`crate::RawNode`], whose
/// `step` refuses local messages and responses from unknown peers before they reach [`Raft::step`].
pub(crate) struct Raft<S: Storage> {
    pub(crate) id: u64,
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) state: StateRole,
    pub(crate) leader_id: u64,
    pub(crate) raft_log: RaftLog<S>,
    pub(crate) prs: ProgressTracker,
    is_learner: bool,
    /// Messages that may be sent before the current Ready is persisted.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may only be sent once the current Ready is persisted.
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) lead_transferee: Option<u64>,
    /// Index of the latest conf change proposed by this leader; no other is accepted until it is applied.
    pending_conf_index: u64,
    uncommitted_size: u64,
    read_only: ReadOnly,
    /// Reads that arrived before this leader committed an entry of its term: its commit index is not yet known.
    pending_read_index_messages: Vec<Message>,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    check_quorum: bool,
    pre_vote: bool,
    heartbeat_timeout: usize,
    election_timeout: usize,
    randomized_election_timeout: usize,
    max_msg_size: u64,
    max_uncommitted_size: u64,
    max_committed_size_per_ready: u64,
    disable_proposal_forwarding: bool,
    /// Spreads election timeouts; reproducible from the seed (splitmix64, the workspace's one generator).
    rng: SplitMix64,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn new(config: &Config, store: S) -> Result<Raft<S>> {
        config.validate()?;
        let rs = store.initial_state()?;
        let raft_log = RaftLog::new(store)?;
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: 0,
            state: StateRole::Follower,
            leader_id: 0,
            raft_log,
            prs: ProgressTracker::new(config.max_inflight_msgs, config.max_inflight_bytes),
            is_learner: false,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            lead_transferee: None,
            pending_conf_index: 0,
            uncommitted_size: 0,
            read_only: ReadOnly::new(config.read_only_option),
            pending_read_index_messages: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            heartbeat_timeout: config.heartbeat_tick,
            election_timeout: config.election_tick,
            randomized_election_timeout: config.election_tick,
            max_msg_size: config.max_size_per_msg,
            max_uncommitted_size: if config.max_uncommitted_entries_size == 0 {
                u64::MAX
            } else {
                config.max_uncommitted_entries_size
            },
            max_committed_size_per_ready: config.max_committed_size_per_ready,
            disable_proposal_forwarding: config.disable_proposal_forwarding,
            rng: SplitMix64::new(if config.seed == 0 {
                config.id
            } else {
                config.seed
            }),
        };
        let cfg = Configuration::from_conf_state(&rs.conf_state);
        cfg.check()?;
        let last = r.raft_log.last_index();
        for id in cfg.voters().iter().chain(cfg.learners.iter()) {
            let learner = cfg.learners.contains(id);
            r.prs.progress.insert(
                *id,
                Progress::new(
                    last + 1,
                    config.max_inflight_msgs,
                    config.max_inflight_bytes,
                    learner,
                ),
            );
        }
        r.prs.config = cfg;
        r.is_learner = r.prs.progress.get(&r.id).is_some_and(|p| p.is_learner);
        if !rs.hard_state.is_empty() {
            r.load_hard_state(rs.hard_state)?;
        }
        if config.applied > 0 {
            r.raft_log
                .applied_to(config.applied.min(r.raft_log.committed));
        }
        r.become_follower(r.term, 0);
        info!(
            id = r.id,
            term = r.term,
            commit = r.raft_log.committed,
            applied = r.raft_log.applied,
            last_index = r.raft_log.last_index(),
            "raft node started"
        );
        Ok(r)
    }

    fn load_hard_state(&mut self, hs: HardState) -> Result<()> {
        let (first, last) = (self.raft_log.first_index(), self.raft_log.last_index());
        if hs.commit < first - 1 || hs.commit > last {
            return Err(ConfigError::CommitOutOfRange {
                commit: hs.commit,
                first: first - 1,
                last,
            }
            .into());
        }
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
        Ok(())
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.leader_id,
            raft_state: self.state,
        }
    }

    pub(crate) fn committed(&self) -> u64 {
        self.raft_log.committed
    }

    pub(crate) fn applied(&self) -> u64 {
        self.raft_log.applied
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.raft_log.last_index()
    }

    pub(crate) fn conf_state(&self) -> ConfState {
        self.prs.conf_state()
    }

    pub(crate) fn progress(&self) -> &std::collections::BTreeMap<u64, Progress> {
        &self.prs.progress
    }

    /// The term of entry `index` as this node's log has it (0 if unknown or compacted).
    pub(crate) fn log_term(&self, index: u64) -> u64 {
        self.raft_log.term(index).unwrap_or(0)
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.raft_log.first_index()
    }

    pub(super) fn promotable(&self) -> bool {
        self.prs
            .progress
            .get(&self.id)
            .is_some_and(|p| !p.is_learner)
            && self.raft_log.unstable.snapshot.is_none()
    }

    pub(super) fn send(&mut self, mut m: Message) {
        if m.from == 0 {
            // A forwarded MsgTransferLeader keeps the transferee as its sender.
            m.from = self.id;
        }
        let t = m.kind();
        if !matches!(
            t,
            MessageType::MsgVote
                | MessageType::MsgVoteResp
                | MessageType::MsgPreVote
                | MessageType::MsgPreVoteResp
        ) && t != MessageType::MsgProp
            && t != MessageType::MsgReadIndex
        {
            // Votes carry the campaign's term; forwarded proposals and reads are local to the leader's term.
            m.term = self.term;
        }
        let acknowledges_state = matches!(
            t,
            MessageType::MsgAppResp | MessageType::MsgVoteResp | MessageType::MsgPreVoteResp
        );
        if self.state == StateRole::Leader && !acknowledges_state {
            self.msgs.push(m);
        } else {
            self.msgs_after_persist.push(m);
        }
    }

    pub(crate) fn tick(&mut self) {
        if self.state == StateRole::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let _ = self.step(Message {
                from: self.id,
                ..Message::new(MessageType::MsgHup)
            });
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let _ = self.step(Message {
                    from: self.id,
                    ..Message::new(MessageType::MsgCheckQuorum)
                });
            }
            if self.state == StateRole::Leader {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let _ = self.step(Message {
                from: self.id,
                ..Message::new(MessageType::MsgBeat)
            });
        }
    }
}
