//! The protocol state machine: elections, replication, commitment, membership, leader transfer and ReadIndex.
//! It only mutates itself and queues messages; `RawNode` turns that into `Ready`s.
//!
//! Durability rule: a node never counts its own unpersisted entries. The leader's own match index moves only when
//! the application reports the entries durable (`on_persisted`), and every message a follower or candidate sends
//! (acknowledgements, votes) waits until the Ready that produced it is persisted.

use bytes::Bytes;
use prost::Message as _;
use raftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use tracing::{debug, info, warn};

use crate::error::{Error, Result, StorageError};
use crate::log::RaftLog;
use crate::read_only::{ReadOnly, ReadOnlyOption, ReadState};
use crate::storage::{entries_size, Storage};
use crate::tracker::{
    Changer, Configuration, Progress, ProgressState, ProgressTracker, VoteResult,
};

/// The context of a MsgVote that a leader transfer triggered: it overrides the leader lease of the voters.
const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

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
    pub fn validate(&self) -> Result<()> {
        let invalid = |s: &str| Err(Error::ConfigInvalid(s.to_string()));
        if self.id == 0 {
            return invalid("cannot use none as id");
        }
        if self.heartbeat_tick == 0 {
            return invalid("heartbeat tick must be greater than 0");
        }
        if self.election_tick <= self.heartbeat_tick {
            return invalid("election tick must be greater than heartbeat tick");
        }
        if self.max_inflight_msgs == 0 {
            return invalid("max inflight messages must be greater than 0");
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return invalid("check_quorum must be enabled when read_only_option is LeaseBased");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// A splitmix64 generator: enough to spread election timeouts, and reproducible from the seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
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

fn vote_resp_type(t: MessageType) -> MessageType {
    if t == MessageType::MsgPreVote {
        MessageType::MsgPreVoteResp
    } else {
        MessageType::MsgVoteResp
    }
}

fn msg(msg_type: MessageType, to: u64) -> Message {
    Message {
        msg_type: msg_type as i32,
        to,
        ..Default::default()
    }
}

/// Decodes the conf change carried by a conf-change entry, as a V2 change.
pub fn decode_conf_change(entry: &Entry) -> Result<ConfChangeV2> {
    match entry.kind() {
        EntryType::EntryConfChange => ConfChange::decode(&entry.data[..])
            .map(ConfChangeV2::from)
            .map_err(|e| Error::Decode {
                what: "ConfChange",
                reason: e.to_string(),
            }),
        EntryType::EntryConfChangeV2 => {
            ConfChangeV2::decode(&entry.data[..]).map_err(|e| Error::Decode {
                what: "ConfChangeV2",
                reason: e.to_string(),
            })
        }
        EntryType::EntryNormal => Err(Error::Decode {
            what: "conf change",
            reason: "normal entry".into(),
        }),
    }
}

pub struct Raft<S: Storage> {
    pub id: u64,
    pub term: u64,
    pub vote: u64,
    pub state: StateRole,
    pub leader_id: u64,
    pub(crate) raft_log: RaftLog<S>,
    pub(crate) prs: ProgressTracker,
    pub(crate) is_learner: bool,
    /// Messages that may be sent before the current Ready is persisted.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may only be sent once the current Ready is persisted.
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub lead_transferee: Option<u64>,
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
    rng: Rng,
}

impl<S: Storage> Raft<S> {
    pub fn new(config: &Config, store: S) -> Result<Raft<S>> {
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
            rng: Rng(if config.seed == 0 {
                config.id
            } else {
                config.seed
            }),
        };
        let cfg = Configuration::from_conf_state(&rs.conf_state);
        cfg.check().map_err(Error::ConfChangeInvalid)?;
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
            return Err(Error::ConfigInvalid(format!(
                "hard state commit {} out of range [{}, {}]",
                hs.commit,
                first - 1,
                last
            )));
        }
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
        Ok(())
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.leader_id,
            raft_state: self.state,
        }
    }

    pub fn committed(&self) -> u64 {
        self.raft_log.committed
    }

    pub fn applied(&self) -> u64 {
        self.raft_log.applied
    }

    pub fn last_index(&self) -> u64 {
        self.raft_log.last_index()
    }

    pub fn conf_state(&self) -> ConfState {
        self.prs.conf_state()
    }

    pub fn progress(&self) -> &std::collections::BTreeMap<u64, Progress> {
        &self.prs.progress
    }

    /// The term of entry `index` as this node's log has it (0 if unknown or compacted).
    pub fn log_term(&self, index: u64) -> u64 {
        self.raft_log.term(index).unwrap_or(0)
    }

    pub fn first_index(&self) -> u64 {
        self.raft_log.first_index()
    }

    fn promotable(&self) -> bool {
        self.prs
            .progress
            .get(&self.id)
            .is_some_and(|p| !p.is_learner)
            && self.raft_log.unstable.snapshot.is_none()
    }

    fn send(&mut self, mut m: Message) {
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

    // ---- replication -----------------------------------------------------------------------------------------

    fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends entries (or a snapshot) to `to` if its progress allows; returns whether a message went out.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx;
        let prev_term = self.raft_log.term(next - 1);
        let entries = self.raft_log.entries_from(next, self.max_msg_size);
        match (prev_term, entries) {
            (Ok(prev_term), Ok(entries)) => {
                if entries.is_empty() && !send_if_empty {
                    return false;
                }
                let (count, bytes) = (entries.len() as u64, entries_size(&entries));
                let mut m = msg(MessageType::MsgApp, to);
                m.index = next - 1;
                m.log_term = prev_term;
                m.entries = entries;
                m.commit = self.raft_log.committed;
                self.send(m);
                if let Some(pr) = self.prs.progress.get_mut(&to) {
                    pr.sent_entries(count, bytes);
                }
                true
            }
            _ => self.send_snapshot(to),
        }
    }

    fn send_snapshot(&mut self, to: u64) -> bool {
        if !self.prs.progress.get(&to).is_some_and(|p| p.recent_active) {
            debug!(
                id = self.id,
                to, "not sending a snapshot to a peer that is not recently active"
            );
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => {
                debug!(id = self.id, to, "snapshot temporarily unavailable");
                return false;
            }
            Err(e) => {
                warn!(id = self.id, to, %e, "cannot read the snapshot");
                return false;
            }
        };
        if snapshot.is_empty() {
            warn!(
                id = self.id,
                to, "peer needs a snapshot but storage has none"
            );
            return false;
        }
        let index = snapshot.index();
        debug!(id = self.id, to, index, "sending snapshot");
        if let Some(pr) = self.prs.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        let mut m = msg(MessageType::MsgSnap, to);
        m.snapshot = Some(snapshot);
        self.send(m);
        true
    }

    fn send_heartbeat(&mut self, to: u64, ctx: Bytes) {
        // Never tell a follower to commit beyond what it is known to have.
        let commit = self
            .prs
            .progress
            .get(&to)
            .map_or(0, |p| p.matched)
            .min(self.raft_log.committed);
        let mut m = msg(MessageType::MsgHeartbeat, to);
        m.commit = commit;
        m.context = ctx;
        self.send(m);
    }

    fn peers(&self) -> Vec<u64> {
        self.prs
            .progress
            .keys()
            .copied()
            .filter(|id| *id != self.id)
            .collect()
    }

    fn bcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id);
        }
    }

    fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: Bytes) {
        for id in self.peers() {
            self.send_heartbeat(id, ctx.clone());
        }
    }

    fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed();
        // Raft §5.4.2: only entries of the current term are committed by counting replicas.
        self.raft_log.maybe_commit(mci, self.term)
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log
            .term(self.raft_log.committed)
            .is_ok_and(|t| t == self.term)
    }

    /// Called by RawNode once the application has persisted entries up to `index` (term `term`) or a snapshot.
    pub(crate) fn on_persisted(
        &mut self,
        last_entry: Option<(u64, u64)>,
        snapshot_index: Option<u64>,
    ) {
        if let Some(index) = snapshot_index {
            self.raft_log.stable_snap(index);
        }
        if let Some((index, term)) = last_entry {
            self.raft_log.stable_to(index, term);
        }
        if self.state != StateRole::Leader {
            return;
        }
        let persisted = self.raft_log.persisted;
        let updated = self
            .prs
            .progress
            .get_mut(&self.id)
            .is_some_and(|p| p.maybe_update(persisted));
        if updated && self.maybe_commit() {
            self.on_commit_advanced();
        }
    }

    fn on_commit_advanced(&mut self) {
        self.release_pending_read_index_messages();
        self.bcast_append();
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        let old = self.raft_log.applied;
        self.raft_log.applied_to(index);
        if self.raft_log.applied > old
            && self.prs.config.auto_leave
            && self.state == StateRole::Leader
            && self.raft_log.applied >= self.pending_conf_index
        {
            // The joint configuration this leader entered is applied; leave it, as etcd does on auto-leave.
            let mut m = msg(MessageType::MsgProp, 0);
            m.from = self.id;
            m.entries = vec![Entry {
                entry_type: EntryType::EntryConfChangeV2 as i32,
                data: ConfChangeV2::default().encode_to_vec().into(),
                ..Default::default()
            }];
            if let Err(e) = self.step(m) {
                debug!(id = self.id, %e, "cannot propose leaving the joint configuration yet");
            } else {
                info!(id = self.id, "proposed leaving the joint configuration");
            }
        }
    }

    fn append_entries(&mut self, entries: &mut [Entry]) -> bool {
        let size: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        // An empty entry (a new leader's first) is always accepted; so is anything into an empty tail.
        if self.uncommitted_size > 0
            && size > 0
            && self.uncommitted_size + size > self.max_uncommitted_size
        {
            return false;
        }
        self.uncommitted_size += size;
        let last = self.raft_log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        self.raft_log.append(entries);
        true
    }

    fn reduce_uncommitted_size(&mut self, entries: &[Entry]) {
        let size: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        self.uncommitted_size = self.uncommitted_size.saturating_sub(size);
    }

    pub(crate) fn on_entries_committed_to_app(&mut self, entries: &[Entry]) {
        if self.state == StateRole::Leader {
            self.reduce_uncommitted_size(entries);
        }
    }

    // ---- role changes ----------------------------------------------------------------------------------------

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.leader_id = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = None;
        self.prs.reset_votes();
        let (last, persisted) = (self.raft_log.last_index(), self.raft_log.persisted);
        let (max_inflight, max_bytes) = (self.prs.max_inflight, self.prs.max_inflight_bytes);
        for (id, pr) in self.prs.progress.iter_mut() {
            *pr = Progress::new(last + 1, max_inflight, max_bytes, pr.is_learner);
            pr.recent_active = false;
            if *id == self.id {
                pr.matched = persisted;
                pr.recent_active = true;
            }
        }
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.read_only = ReadOnly::new(self.read_only.option);
        self.pending_read_index_messages.clear();
    }

    fn reset_randomized_election_timeout(&mut self) {
        let spread = self.rng.next() % self.election_timeout as u64;
        self.randomized_election_timeout = self.election_timeout + spread as usize;
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader_id: u64) {
        self.reset(term);
        self.state = StateRole::Follower;
        self.leader_id = leader_id;
        debug!(id = self.id, term, leader_id, "became follower");
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.state = StateRole::Candidate;
        info!(id = self.id, term, "became candidate");
    }

    fn become_pre_candidate(&mut self) {
        // A pre-candidate changes neither term nor vote: the pre-election must be invisible if it fails.
        self.prs.reset_votes();
        self.state = StateRole::PreCandidate;
        self.leader_id = 0;
        info!(id = self.id, term = self.term, "became pre-candidate");
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.leader_id = self.id;
        self.state = StateRole::Leader;
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.become_replicate();
        }
        // Conf changes in the uncommitted tail may be pending: accept no new one until the tail is applied.
        self.pending_conf_index = self.raft_log.last_index();
        let mut empty = [Entry::default()];
        self.append_entries(&mut empty);
        info!(id = self.id, term, "became leader");
    }

    fn hup(&mut self, campaign: CampaignType) {
        if self.state == StateRole::Leader {
            return;
        }
        if !self.promotable() {
            debug!(id = self.id, "not promotable; ignoring campaign");
            return;
        }
        let (applied, committed) = (self.raft_log.applied, self.raft_log.committed);
        if committed > applied {
            let pending = self
                .raft_log
                .slice(applied + 1, committed + 1, u64::MAX)
                .unwrap_or_default();
            if pending.iter().any(|e| e.is_conf_change()) {
                // The configuration we would campaign in may be about to change.
                warn!(
                    id = self.id,
                    "cannot campaign: committed conf changes are not applied yet"
                );
                return;
            }
        }
        self.campaign(campaign);
    }

    fn campaign(&mut self, campaign: CampaignType) {
        let (vote_msg, term) = if campaign == CampaignType::PreElection {
            self.become_pre_candidate();
            (MessageType::MsgPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgVote, self.term)
        };
        let id = self.id;
        if self.poll(id, vote_resp_type(vote_msg), true) == VoteResult::Won {
            // A single-voter configuration wins outright.
            if campaign == CampaignType::PreElection {
                self.campaign(CampaignType::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        for to in self.prs.config.voters() {
            if to == self.id {
                continue;
            }
            let mut m = msg(vote_msg, to);
            m.term = term;
            m.index = last_index;
            m.log_term = last_term;
            if campaign == CampaignType::Transfer {
                m.context = Bytes::from_static(CAMPAIGN_TRANSFER);
            }
            self.send(m);
        }
    }

    fn poll(&mut self, from: u64, t: MessageType, granted: bool) -> VoteResult {
        let result = self.prs.record_vote(from, granted);
        let (g, r) = self.prs.granted_rejected();
        debug!(
            id = self.id,
            from,
            ?t,
            granted,
            votes_granted = g,
            votes_rejected = r,
            "received vote"
        );
        result
    }

    // ---- ticks -----------------------------------------------------------------------------------------------

    pub fn tick(&mut self) {
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
            if self.state == StateRole::Leader && self.lead_transferee.is_some() {
                // The transfer did not finish within an election timeout: take proposals again.
                info!(id = self.id, "leader transfer timed out; aborting");
                self.lead_transferee = None;
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

    // ---- step ------------------------------------------------------------------------------------------------

    pub fn step(&mut self, m: Message) -> Result<()> {
        let t = m.kind();
        if m.term == 0 {
            // local message
        } else if m.term > self.term {
            if matches!(t, MessageType::MsgVote | MessageType::MsgPreVote) {
                let forced = m.context[..] == *CAMPAIGN_TRANSFER;
                let in_lease = self.check_quorum
                    && self.leader_id != 0
                    && self.election_elapsed < self.election_timeout;
                if !forced && in_lease {
                    // We heard from a leader within the election timeout: it still holds its lease.
                    debug!(
                        id = self.id,
                        from = m.from,
                        term = m.term,
                        "ignoring vote request within leader lease"
                    );
                    return Ok(());
                }
            }
            match t {
                MessageType::MsgPreVote => {}
                MessageType::MsgPreVoteResp if !m.reject => {}
                MessageType::MsgApp | MessageType::MsgHeartbeat | MessageType::MsgSnap => {
                    self.become_follower(m.term, m.from)
                }
                _ => self.become_follower(m.term, 0),
            }
        } else if m.term < self.term {
            if matches!(t, MessageType::MsgHeartbeat | MessageType::MsgApp) {
                // Tell a stale leader our term so it steps down (the Raft paper's rule). etcd answers only with
                // pre-vote or check-quorum on, relying otherwise on our own campaigns to spread the term; but a
                // node that is a learner cannot campaign, and the simulator found that it then never catches up.
                self.send(msg(MessageType::MsgAppResp, m.from));
            } else if t == MessageType::MsgPreVote {
                let mut resp = msg(MessageType::MsgPreVoteResp, m.from);
                resp.term = self.term;
                resp.reject = true;
                self.send(resp);
            }
            return Ok(());
        }

        match t {
            MessageType::MsgHup => {
                self.hup(if self.pre_vote {
                    CampaignType::PreElection
                } else {
                    CampaignType::Election
                });
                Ok(())
            }
            MessageType::MsgVote | MessageType::MsgPreVote => {
                let can_vote = self.vote == m.from
                    || (self.vote == 0 && self.leader_id == 0)
                    || (t == MessageType::MsgPreVote && m.term > self.term);
                let mut resp = msg(vote_resp_type(t), m.from);
                if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
                    // A pre-vote response carries the term of the request, so the pre-candidate accepts it.
                    resp.term = m.term;
                    self.send(resp);
                    if t == MessageType::MsgVote {
                        self.election_elapsed = 0;
                        self.vote = m.from;
                    }
                } else {
                    resp.term = self.term;
                    resp.reject = true;
                    self.send(resp);
                }
                Ok(())
            }
            _ => match self.state {
                StateRole::Leader => self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Follower => self.step_follower(m),
            },
        }
    }

    fn step_leader(&mut self, mut m: Message) -> Result<()> {
        match m.kind() {
            MessageType::MsgBeat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::MsgCheckQuorum => {
                if !self.prs.quorum_active(self.id) {
                    warn!(
                        id = self.id,
                        term = self.term,
                        "no quorum heard from recently; stepping down"
                    );
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                let id = self.id;
                for (pid, pr) in self.prs.progress.iter_mut() {
                    if *pid != id {
                        pr.recent_active = false;
                    }
                }
                return Ok(());
            }
            MessageType::MsgProp => {
                if m.entries.is_empty() {
                    return Err(Error::ProposalDropped);
                }
                if !self.prs.progress.contains_key(&self.id) {
                    // Removed from the configuration: we may still lead, but we must not grow the log.
                    return Err(Error::ProposalDropped);
                }
                if let Some(to) = self.lead_transferee {
                    debug!(
                        id = self.id,
                        to, "leader transfer in progress; dropping proposal"
                    );
                    return Err(Error::ProposalDropped);
                }
                let last = self.raft_log.last_index();
                for (i, e) in m.entries.iter_mut().enumerate() {
                    if !e.is_conf_change() {
                        continue;
                    }
                    let cc = decode_conf_change(e)?;
                    let already_pending = self.pending_conf_index > self.raft_log.applied;
                    let already_joint = self.prs.config.is_joint();
                    let wants_leave_joint = cc.changes.is_empty();
                    let refused = if already_pending {
                        Some("possible unapplied conf change")
                    } else if already_joint && !wants_leave_joint {
                        Some("must transition out of joint config first")
                    } else if !already_joint && wants_leave_joint {
                        Some("not in joint state; refusing empty conf change")
                    } else {
                        None
                    };
                    if let Some(reason) = refused {
                        // As etcd: the slot is kept (the proposer's index bookkeeping stays valid) as a no-op.
                        info!(
                            id = self.id,
                            reason,
                            pending = self.pending_conf_index,
                            applied = self.raft_log.applied,
                            "ignoring conf change"
                        );
                        *e = Entry::default();
                    } else {
                        self.pending_conf_index = last + i as u64 + 1;
                    }
                }
                if !self.append_entries(&mut m.entries) {
                    return Err(Error::ProposalDropped);
                }
                self.bcast_append();
                return Ok(());
            }
            MessageType::MsgReadIndex => {
                if self.prs.is_singleton() {
                    let index = self.raft_log.committed;
                    self.respond_to_read_index(m, index);
                } else if !self.committed_entry_in_current_term() {
                    // Our commit index may lag the true one until an entry of our term commits.
                    self.pending_read_index_messages.push(m);
                } else {
                    self.send_read_index_response(m);
                }
                return Ok(());
            }
            MessageType::MsgForgetLeader => return Ok(()),
            _ => {}
        }

        let from = m.from;
        if !self.prs.progress.contains_key(&from) {
            debug!(id = self.id, from, "no progress for peer");
            return Ok(());
        }
        self.step_leader_from_peer(m);
        Ok(())
    }

    /// Leader handling of messages about a peer that has a progress entry.
    fn step_leader_from_peer(&mut self, m: Message) {
        let from = m.from;
        let Some(pr) = self.prs.progress.get_mut(&from) else {
            return;
        };
        match m.kind() {
            MessageType::MsgAppResp => self.handle_append_response(&m),
            MessageType::MsgHeartbeatResp => {
                let last = self.raft_log.last_index();
                pr.recent_active = true;
                pr.probe_sent = false;
                if pr.state == ProgressState::Replicate && pr.inflights.full() {
                    // MsgApps may have been lost: the heartbeat proves the peer is up, so try again.
                    pr.inflights.free_first_one();
                }
                if pr.matched < last || pr.state == ProgressState::Probe {
                    self.send_append(from);
                }
                if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
                    return;
                }
                let Some(acks) = self.read_only.recv_ack(from, &m.context) else {
                    return;
                };
                let votes = acks.iter().map(|id| (*id, true)).collect();
                if self.prs.config.vote_result(&votes) != VoteResult::Won {
                    return;
                }
                for status in self.read_only.advance(&m.context) {
                    self.respond_to_read_index(status.request, status.index);
                }
            }
            MessageType::MsgSnapStatus => {
                if pr.state != ProgressState::Snapshot {
                    return;
                }
                if m.reject {
                    pr.pending_snapshot = 0;
                }
                pr.become_probe();
                // Wait for the follower's answer (or a heartbeat response) before probing again.
                pr.probe_sent = true;
                debug!(
                    id = self.id,
                    from,
                    failed = m.reject,
                    "snapshot status reported"
                );
            }
            // An unreachable peer may have lost our optimistic stream: probe it again.
            MessageType::MsgUnreachable if pr.state == ProgressState::Replicate => {
                pr.become_probe()
            }
            MessageType::MsgTransferLeader => {
                let transferee = from;
                if pr.is_learner {
                    debug!(
                        id = self.id,
                        transferee, "refusing to transfer leadership to a learner"
                    );
                    return;
                }
                if let Some(current) = self.lead_transferee {
                    if current == transferee {
                        return;
                    }
                    self.lead_transferee = None;
                }
                if transferee == self.id {
                    return;
                }
                info!(id = self.id, transferee, "starting leader transfer");
                // The transfer must finish within one election timeout.
                self.election_elapsed = 0;
                self.lead_transferee = Some(transferee);
                let caught_up = self
                    .prs
                    .progress
                    .get(&transferee)
                    .is_some_and(|p| p.matched == self.raft_log.last_index());
                if caught_up {
                    self.send(msg(MessageType::MsgTimeoutNow, transferee));
                } else {
                    self.send_append(transferee);
                }
            }
            _ => {}
        }
    }

    fn handle_append_response(&mut self, m: &Message) {
        let from = m.from;
        let Some(pr) = self.prs.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                // The follower told us its term at the hint: skip every entry of ours with a larger term.
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let Some(pr) = self.prs.progress.get_mut(&from) else {
                return;
            };
            if pr.maybe_decr_to(m.index, next_probe) {
                debug!(
                    id = self.id,
                    from,
                    next = pr.next_idx,
                    "append rejected; backing off"
                );
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from);
            }
            return;
        }
        let was_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.inflights.free_le(m.index),
        }
        if self.maybe_commit() {
            self.on_commit_advanced();
        } else if was_paused {
            self.send_append(from);
        }
        // Fill the window as far as flow control allows.
        while self.maybe_send_append(from, false) {}
        if self.lead_transferee == Some(from)
            && self
                .prs
                .progress
                .get(&from)
                .is_some_and(|p| p.matched == self.raft_log.last_index())
        {
            info!(
                id = self.id,
                to = from,
                "transferee caught up; sending MsgTimeoutNow"
            );
            self.send(msg(MessageType::MsgTimeoutNow, from));
        }
    }

    fn release_pending_read_index_messages(&mut self) {
        if self.pending_read_index_messages.is_empty() || !self.committed_entry_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.send_read_index_response(m);
        }
    }

    fn send_read_index_response(&mut self, m: Message) {
        let index = self.raft_log.committed;
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                let ctx = m
                    .entries
                    .first()
                    .map(|e| e.data.clone())
                    .unwrap_or_default();
                self.read_only.add_request(index, m);
                let id = self.id;
                self.read_only.recv_ack(id, &ctx);
                self.bcast_heartbeat_with_ctx(ctx);
            }
            ReadOnlyOption::LeaseBased => self.respond_to_read_index(m, index),
        }
    }

    fn respond_to_read_index(&mut self, req: Message, index: u64) {
        let ctx = req
            .entries
            .first()
            .map(|e| e.data.clone())
            .unwrap_or_default();
        if req.from == 0 || req.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: ctx,
            });
            return;
        }
        let mut resp = msg(MessageType::MsgReadIndexResp, req.from);
        resp.index = index;
        resp.entries = req.entries;
        self.send(resp);
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        let my_vote_resp = if self.state == StateRole::PreCandidate {
            MessageType::MsgPreVoteResp
        } else {
            MessageType::MsgVoteResp
        };
        match m.kind() {
            MessageType::MsgProp => return Err(Error::ProposalDropped),
            MessageType::MsgApp => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(&m);
            }
            MessageType::MsgSnap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_vote_resp => match self.poll(m.from, t, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(CampaignType::Election);
                    } else {
                        self.become_leader();
                        self.bcast_append();
                    }
                }
                VoteResult::Lost => {
                    // A rejection with a higher term already made us a follower of that term.
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                VoteResult::Pending => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.kind() {
            MessageType::MsgProp => {
                if self.leader_id == 0 || self.disable_proposal_forwarding {
                    debug!(
                        id = self.id,
                        "no leader to forward the proposal to; dropping"
                    );
                    return Err(Error::ProposalDropped);
                }
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::MsgApp => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_heartbeat(&m);
            }
            MessageType::MsgSnap => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_snapshot(m);
            }
            MessageType::MsgTransferLeader | MessageType::MsgReadIndex => {
                if self.leader_id == 0 {
                    debug!(id = self.id, kind = ?m.kind(), "no leader; dropping");
                    return Ok(());
                }
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::MsgTimeoutNow => {
                info!(
                    id = self.id,
                    from = m.from,
                    "received MsgTimeoutNow; campaigning to take over leadership"
                );
                // A transfer skips the pre-vote: the leader asked for it.
                self.hup(CampaignType::Transfer);
            }
            MessageType::MsgReadIndexResp => {
                if let [entry] = &m.entries[..] {
                    self.read_states.push(ReadState {
                        index: m.index,
                        request_ctx: entry.data.clone(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append_entries(&mut self, m: &Message) {
        let mut resp = msg(MessageType::MsgAppResp, m.from);
        if m.index < self.raft_log.committed {
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        if let Some(last_new) = self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            resp.index = last_new;
        } else {
            // Tell the leader where our log could match: the last index <= its probe with a term <= its term.
            let hint = m.index.min(self.raft_log.last_index());
            let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
            debug!(
                id = self.id,
                from = m.from,
                index = m.index,
                log_term = m.log_term,
                hint_index,
                "rejecting append"
            );
            resp.index = m.index;
            resp.reject = true;
            resp.reject_hint = hint_index;
            resp.log_term = hint_term;
        }
        self.send(resp);
    }

    fn handle_heartbeat(&mut self, m: &Message) {
        self.raft_log.commit_to(m.commit);
        let mut resp = msg(MessageType::MsgHeartbeatResp, m.from);
        resp.context = m.context.clone();
        self.send(resp);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let Some(snapshot) = m.snapshot else {
            return;
        };
        let (index, term) = (snapshot.index(), snapshot.term());
        let mut resp = msg(MessageType::MsgAppResp, m.from);
        if self.restore(snapshot) {
            info!(id = self.id, index, term, "restored snapshot");
            resp.index = self.raft_log.last_index();
        } else {
            debug!(id = self.id, index, term, "ignored snapshot");
            resp.index = self.raft_log.committed;
        }
        self.send(resp);
    }

    /// Installs `snapshot` as the whole log and membership; false if it brings nothing new.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        if snapshot.index() <= self.raft_log.committed {
            return false;
        }
        let cs = snapshot.conf_state();
        let in_config = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .any(|id| *id == self.id);
        if !in_config {
            warn!(
                id = self.id,
                "snapshot does not include this node; ignoring"
            );
            return false;
        }
        let cfg = Configuration::from_conf_state(&cs);
        if let Err(e) = cfg.check() {
            warn!(id = self.id, %e, "snapshot carries an invalid configuration; ignoring");
            return false;
        }
        if self.raft_log.match_term(snapshot.index(), snapshot.term()) {
            // We already have the entry: just fast-forward the commit index.
            self.raft_log.commit_to(snapshot.index());
            return false;
        }
        self.raft_log.restore(snapshot);
        let last = self.raft_log.last_index();
        let mut prs = ProgressTracker::new(self.prs.max_inflight, self.prs.max_inflight_bytes);
        for id in cfg.voters().iter().chain(cfg.learners.iter()) {
            prs.progress.insert(
                *id,
                Progress::new(
                    last + 1,
                    prs.max_inflight,
                    prs.max_inflight_bytes,
                    cfg.learners.contains(id),
                ),
            );
        }
        prs.config = cfg;
        self.prs = prs;
        self.is_learner = self
            .prs
            .progress
            .get(&self.id)
            .is_some_and(|p| p.is_learner);
        true
    }

    // ---- membership ------------------------------------------------------------------------------------------

    /// Applies a committed conf change and returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState> {
        let changer = Changer {
            tracker: &self.prs,
            last_index: self.raft_log.last_index(),
        };
        let changed = if cc.leave_joint() {
            changer.leave_joint()
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        };
        let (cfg, progress) = changed.map_err(Error::ConfChangeInvalid)?;
        self.prs.config = cfg;
        self.prs.progress = progress;
        let cs = self.prs.conf_state();
        info!(id = self.id, voters = ?cs.voters, outgoing = ?cs.voters_outgoing, learners = ?cs.learners,
            "applied conf change");
        let me = self.prs.progress.get(&self.id);
        self.is_learner = me.is_some_and(|p| p.is_learner);
        if (me.is_none() || self.is_learner) && self.state == StateRole::Leader {
            // Removed or demoted leader: it keeps leading until the server stops it (as etcd), so that the
            // followers learn the conf change is committed; it no longer counts itself in any quorum.
            return Ok(cs);
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return Ok(cs);
        }
        if self.maybe_commit() {
            // The quorum shrank or changed: something may have committed.
            self.on_commit_advanced();
        } else {
            for id in self.peers() {
                self.maybe_send_append(id, false);
            }
        }
        if let Some(t) = self.lead_transferee {
            if !self.prs.config.is_voter(t) {
                self.lead_transferee = None;
            }
        }
        Ok(cs)
    }

    pub(crate) fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    pub(crate) fn max_committed_size_per_ready(&self) -> u64 {
        self.max_committed_size_per_ready
    }

    pub(crate) fn pending_reads(&self) -> usize {
        self.read_only.pending_read_count() + self.pending_read_index_messages.len()
    }
}
