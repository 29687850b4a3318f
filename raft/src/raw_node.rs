//! The application's handle on a raft node: feed it ticks, messages and proposals; take `Ready`s; persist,
//! send, apply; `advance`.
//!
//! The contract of a [`Ready`] (single-threaded, in this order):
//! 1. send `messages` (they may go out before anything is persisted);
//! 2. persist `snapshot`, `entries` and `hard_state` (one fsync);
//! 3. send `persisted_messages` (acknowledgements and votes that must not outrun the disk);
//! 4. apply `snapshot` and `committed_entries` to the state machine (calling `apply_conf_change` for conf
//!    changes), serve `read_states` once applied up to their index;
//! 5. call [`RawNode::advance`].
//!
//! The Ready's fields are the application's to take by move (`std::mem::take`, destructuring): the node keeps its
//! own record of what the Ready covered (the last entry, the snapshot, the last committed entry) and `advance`
//! acknowledges that, so nothing needs to be cloned to hand entries or a snapshot on.

use bytes::Bytes;
use prost::Message as _;
use raftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};

use crate::error::Error;
use crate::error::{ConfigError, Result};
use crate::raft::{is_local_msg, is_response_msg, Config, Raft, SoftState, StateRole};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::tracker::Progress;

/// Everything the application must do after a batch of inputs; see the module documentation for the order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ready {
    /// Set when leadership or role changed.
    pub soft_state: Option<SoftState>,
    /// Set when term, vote or commit changed; persist it.
    pub hard_state: Option<HardState>,
    pub read_states: Vec<ReadState>,
    /// New log entries to persist (they may overwrite a previously persisted suffix).
    pub entries: Vec<Entry>,
    /// A snapshot to persist and apply.
    pub snapshot: Option<Snapshot>,
    /// Entries to apply; all of them were persisted by an earlier Ready.
    pub committed_entries: Vec<Entry>,
    /// Messages that may be sent right away, in parallel with persisting.
    pub messages: Vec<Message>,
    /// Messages to send only once this Ready is persisted.
    pub persisted_messages: Vec<Message>,
    /// Whether persisting needs an fsync (entries, a snapshot, or a new term or vote).
    pub must_sync: bool,
}

/// A snapshot of the node's state for monitoring.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: u64,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: u64,
    /// Every peer's progress, when this node leads (empty otherwise).
    pub progress: Vec<(u64, PeerProgress)>,
    pub conf_state: ConfState,
    pub lead_transferee: Option<u64>,
}

/// A peer's replication state as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProgress {
    pub matched: u64,
    pub next_idx: u64,
    pub state: crate::tracker::ProgressState,
    pub is_learner: bool,
    pub recent_active: bool,
    pub inflight: usize,
    /// The index of the snapshot in flight (Snapshot state), 0 otherwise.
    pub pending_snapshot: u64,
    /// A probe was sent and no answer came yet (Probe state).
    pub probe_sent: bool,
}

impl From<&Progress> for PeerProgress {
    fn from(p: &Progress) -> Self {
        PeerProgress {
            matched: p.matched,
            next_idx: p.next_idx,
            state: p.state,
            is_learner: p.is_learner,
            recent_active: p.recent_active,
            inflight: p.inflights.count(),
            pending_snapshot: p.pending_snapshot,
            probe_sent: p.probe_sent,
        }
    }
}

/// A member of a cluster being bootstrapped; `context` is stored in its ConfChange (etcd puts the member's
/// JSON there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    pub id: u64,
    pub context: Bytes,
}

/// Outcome of a snapshot the application tried to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    Finish,
    Failure,
}

/// What the last [`Ready`] covered, for [`RawNode::advance`] to acknowledge.
#[derive(Debug, Clone, Copy, Default)]
struct ReadyRecord {
    /// Index and term of the last entry to persist.
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    /// The last index handed out for applying (last committed entry, or the snapshot).
    applied: Option<u64>,
}

pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    /// Set by `ready`, taken by `advance`.
    in_flight: Option<ReadyRecord>,
}

impl<S: Storage> RawNode<S> {
    /// Starts (or restarts) a node from what `store` holds: HardState, and membership from the snapshot's
    /// ConfState. On restart, pass the snapshot index as `config.applied` so committed conf changes after it are
    /// handed out again and re-applied with [`RawNode::apply_conf_change`]. A new cluster is bootstrapped either
    /// by a storage whose snapshot carries the initial ConfState, or with [`RawNode::bootstrap`] (etcd's way).
    pub fn new(config: &Config, store: S) -> Result<RawNode<S>> {
        let raft = Raft::new(config, store)?;
        let prev_hard_state = raft.hard_state();
        Ok(RawNode {
            prev_soft_state: raft.soft_state(),
            prev_hard_state,
            raft,
            in_flight: None,
        })
    }

    /// Bootstraps a new cluster on an empty log as etcd's `StartNode` does: one committed `ConfChangeAddNode`
    /// entry per peer (term 1, indexes 1..=n, `context` as given), applied to the membership right away so the
    /// node can campaign once the first Ready is handled. The entries come out in the first Ready to persist and,
    /// once persisted, as committed entries to apply (re-applying them is a no-op).
    pub fn bootstrap(&mut self, peers: &[Peer]) -> Result<()> {
        if peers.is_empty() {
            return Err(ConfigError::BootstrapWithoutPeers.into());
        }
        let r = &mut self.raft;
        if r.raft_log.last_index() != 0 || r.term != 0 {
            return Err(ConfigError::BootstrapNonEmptyLog.into());
        }
        let entries: Vec<Entry> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let cc = ConfChange {
                    change_type: raftpb::ConfChangeType::ConfChangeAddNode as i32,
                    node_id: p.id,
                    context: p.context.clone(),
                    id: 0,
                };
                Entry {
                    term: 1,
                    index: i as u64 + 1,
                    entry_type: EntryType::EntryConfChange as i32,
                    data: cc.encode_to_vec().into(),
                }
            })
            .collect();
        r.become_follower(1, 0);
        r.raft_log.append(&entries);
        r.raft_log.committed = entries.len() as u64;
        for e in &entries {
            let cc = crate::raft::decode_conf_change(e)?;
            r.apply_conf_change(&cc)?;
        }
        Ok(())
    }

    pub fn id(&self) -> u64 {
        self.raft.id
    }

    pub fn term(&self) -> u64 {
        self.raft.term
    }

    /// The candidate this node voted for in the current term (0: none).
    pub fn vote(&self) -> u64 {
        self.raft.vote
    }

    pub fn role(&self) -> StateRole {
        self.raft.state
    }

    /// The leader this node knows of in the current term (0: none).
    pub fn leader_id(&self) -> u64 {
        self.raft.leader_id
    }

    pub fn committed(&self) -> u64 {
        self.raft.committed()
    }

    pub fn applied(&self) -> u64 {
        self.raft.applied()
    }

    pub fn first_index(&self) -> u64 {
        self.raft.first_index()
    }

    pub fn last_index(&self) -> u64 {
        self.raft.last_index()
    }

    /// The term of entry `index` as this node's log has it (0 if unknown or compacted).
    pub fn log_term(&self, index: u64) -> u64 {
        self.raft.log_term(index)
    }

    pub fn conf_state(&self) -> ConfState {
        self.raft.conf_state()
    }

    /// Every member's replication progress as this node tracks it (meaningful while it leads).
    pub fn progress(&self) -> impl Iterator<Item = (u64, PeerProgress)> + '_ {
        self.raft
            .progress()
            .iter()
            .map(|(id, p)| (*id, PeerProgress::from(p)))
    }

    pub fn store(&self) -> &S {
        &self.raft.raft_log.store
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now (subject to pre-vote).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(Message::new(MessageType::MsgHup))
    }

    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.propose_batch(vec![data.into()])
    }

    /// Proposes several entries in one message: one append, one MsgApp per follower.
    pub fn propose_batch(&mut self, batch: Vec<Bytes>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut m = Message::new(MessageType::MsgProp);
        m.from = self.raft.id;
        m.entries = batch
            .into_iter()
            .map(|data| Entry {
                data,
                ..Default::default()
            })
            .collect();
        self.raft.step(m)
    }

    /// Proposes a single-step membership change (etcd's v1 format).
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<()> {
        self.propose_entry(EntryType::EntryConfChange, cc.encode_to_vec())
    }

    /// Proposes a membership change that may go through joint consensus.
    pub fn propose_conf_change_v2(&mut self, cc: &ConfChangeV2) -> Result<()> {
        self.propose_entry(EntryType::EntryConfChangeV2, cc.encode_to_vec())
    }

    fn propose_entry(&mut self, entry_type: EntryType, data: Vec<u8>) -> Result<()> {
        let mut m = Message::new(MessageType::MsgProp);
        m.from = self.raft.id;
        m.entries = vec![Entry {
            entry_type: entry_type as i32,
            data: data.into(),
            ..Default::default()
        }];
        self.raft.step(m)
    }

    /// Applies a committed conf change; call it when the entry is applied.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState> {
        self.raft.apply_conf_change(cc)
    }

    /// Feeds a message received from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let t = m.kind();
        if is_local_msg(t) {
            return Err(Error::StepLocalMsg);
        }
        if is_response_msg(t) && !self.raft.prs.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Requests a read index; the answer comes back as a [`ReadState`] carrying `ctx`.
    pub fn read_index(&mut self, ctx: impl Into<Bytes>) {
        let mut m = Message::new(MessageType::MsgReadIndex);
        m.entries = vec![Entry {
            data: ctx.into(),
            ..Default::default()
        }];
        let _ = self.raft.step(m);
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) {
        let mut m = Message::new(MessageType::MsgTransferLeader);
        m.from = transferee;
        let _ = self.raft.step(m);
    }

    /// Tells the leader that the last message to `id` could not be delivered.
    pub fn report_unreachable(&mut self, id: u64) {
        let mut m = Message::new(MessageType::MsgUnreachable);
        m.from = id;
        let _ = self.raft.step(m);
    }

    /// Tells the leader how sending a snapshot to `id` ended.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let mut m = Message::new(MessageType::MsgSnapStatus);
        m.from = id;
        m.reject = status == SnapshotStatus::Failure;
        let _ = self.raft.step(m);
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_soft_state
            || (r.hard_state() != self.prev_hard_state)
            || r.raft_log.unstable.snapshot.is_some()
            || !r.msgs.is_empty()
            || !r.msgs_after_persist.is_empty()
            || !r.raft_log.unstable.entries.is_empty()
            || r.raft_log.has_next_committed_entries()
            || !r.read_states.is_empty()
    }

    /// Takes the pending work. Call [`RawNode::advance`] once it is handled, before the next `ready`.
    pub fn ready(&mut self) -> Ready {
        debug_assert!(
            self.in_flight.is_none(),
            "ready() called again before advance()"
        );
        let r = &mut self.raft;
        let soft = r.soft_state();
        let hard = r.hard_state();
        let mut rd = Ready {
            soft_state: (soft != self.prev_soft_state).then_some(soft),
            hard_state: (hard != self.prev_hard_state).then_some(hard),
            read_states: r.take_read_states(),
            entries: r.raft_log.unstable.entries.clone(),
            snapshot: r.raft_log.unstable.snapshot.clone(),
            committed_entries: r
                .raft_log
                .next_committed_entries(r.max_committed_size_per_ready()),
            messages: std::mem::take(&mut r.msgs),
            persisted_messages: std::mem::take(&mut r.msgs_after_persist),
            must_sync: false,
        };
        let vote_changed =
            hard.term != self.prev_hard_state.term || hard.vote != self.prev_hard_state.vote;
        if vote_changed && !rd.messages.is_empty() {
            // Nothing may be sent in a term (or after a vote) that a crash could forget.
            let mut now = std::mem::take(&mut rd.messages);
            now.append(&mut rd.persisted_messages);
            rd.persisted_messages = now;
        }
        rd.must_sync = vote_changed || !rd.entries.is_empty() || rd.snapshot.is_some();
        r.on_entries_committed_to_app(&rd.committed_entries);
        self.prev_soft_state = soft;
        self.prev_hard_state = hard;
        let snapshot_index = rd.snapshot.as_ref().map(|s| s.index());
        self.in_flight = Some(ReadyRecord {
            last_entry: rd.entries.last().map(|e| (e.index, e.term)),
            snapshot_index,
            applied: rd
                .committed_entries
                .last()
                .map(|e| e.index)
                .or(snapshot_index),
        });
        rd
    }

    /// Tells raft that everything in the last [`Ready`] was persisted and handed to the state machine.
    pub fn advance(&mut self) {
        let Some(record) = self.in_flight.take() else {
            return;
        };
        self.raft
            .on_persisted(record.last_entry, record.snapshot_index);
        if let Some(index) = record.applied {
            self.raft.applied_to(index);
        }
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.state == StateRole::Leader {
            self.progress().collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied,
            progress,
            conf_state: r.conf_state(),
            lead_transferee: r.lead_transferee,
        }
    }

    /// Read requests waiting for their heartbeat round or for the leader's first commit.
    pub fn pending_read_count(&self) -> usize {
        self.raft.pending_reads()
    }
}
