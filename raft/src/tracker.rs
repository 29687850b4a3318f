//! What the leader knows about every peer: replication progress, flow control, votes, and the (possibly joint)
//! membership configuration with its quorum rules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raftpb::ConfState;

use crate::error::ConfChangeError;

/// How the leader currently replicates to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Sends one MsgApp at a time until the follower's position is known.
    Probe,
    /// Streams MsgApps optimistically, bounded by the inflight window.
    Replicate,
    /// Waits for a snapshot to be applied before sending anything else.
    Snapshot,
}

/// The window of MsgApps sent and not yet acknowledged, bounded in count and bytes.
#[derive(Debug, Clone)]
pub struct Inflights {
    window: VecDeque<(u64, u64)>,
    bytes: u64,
    max_count: usize,
    max_bytes: u64,
}

impl Inflights {
    pub fn new(max_count: usize, max_bytes: u64) -> Inflights {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// Records a MsgApp whose last entry is `last_index`.
    pub fn add(&mut self, last_index: u64, bytes: u64) {
        self.window.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Releases every message acknowledged by an ack of `index`.
    pub fn free_le(&mut self, index: u64) {
        while let Some(&(i, b)) = self.window.front() {
            if i > index {
                break;
            }
            self.window.pop_front();
            self.bytes -= b;
        }
    }

    /// Frees the oldest slot: lets a full window make progress when its messages may have been lost.
    pub fn free_first_one(&mut self) {
        if let Some((_, b)) = self.window.pop_front() {
            self.bytes -= b;
        }
    }

    pub fn full(&self) -> bool {
        self.window.len() >= self.max_count || (self.max_bytes > 0 && self.bytes >= self.max_bytes)
    }

    pub fn count(&self) -> usize {
        self.window.len()
    }

    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

/// The leader's view of one peer.
#[derive(Debug, Clone)]
pub struct Progress {
    pub matched: u64,
    pub next_idx: u64,
    pub state: ProgressState,
    /// In Probe: a probe is out, wait for its answer (or a heartbeat response) before the next.
    pub probe_sent: bool,
    /// In Snapshot: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    pub inflights: Inflights,
    pub is_learner: bool,
}

impl Progress {
    pub(crate) fn new(
        next_idx: u64,
        max_inflight: usize,
        max_inflight_bytes: u64,
        is_learner: bool,
    ) -> Progress {
        Progress {
            matched: 0,
            next_idx: next_idx.max(1),
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            recent_active: true,
            inflights: Inflights::new(max_inflight, max_inflight_bytes),
            is_learner,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    pub(crate) fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            // Resume after the snapshot, if it was applied, or from what the follower acknowledged.
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    pub(crate) fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    pub(crate) fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// Records a MsgApp of `count` entries (`bytes` in total) that starts at `next_idx`.
    pub(crate) fn sent_entries(&mut self, count: u64, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if count > 0 {
                    let last = self.next_idx + count - 1;
                    self.next_idx = last + 1;
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// Handles an acknowledgement of `index`; false if it was stale.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next_idx = self.next_idx.max(index + 1);
        updated
    }

    /// Handles a rejection of the append after `rejected`; false if the rejection is stale.
    pub(crate) fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = rejected.min(match_hint + 1).max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

/// The outcome of an election so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    Pending,
    Lost,
    Won,
}

/// The largest index acknowledged by a majority of `voters`; an empty set commits everything, so that it is
/// neutral in a joint configuration.
fn majority_committed(voters: &BTreeSet<u64>, acked: impl Fn(u64) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut matched: Vec<u64> = voters.iter().map(|&id| acked(id)).collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[voters.len() / 2]
}

fn majority_vote(voters: &BTreeSet<u64>, votes: &BTreeMap<u64, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// A membership configuration; `outgoing` is non-empty only while joint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    pub incoming: BTreeSet<u64>,
    pub outgoing: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    /// Voters of `outgoing` that become learners when the joint configuration is left.
    pub learners_next: BTreeSet<u64>,
    pub auto_leave: bool,
}

impl Configuration {
    pub fn from_conf_state(cs: &ConfState) -> Configuration {
        Configuration {
            incoming: cs.voters.iter().copied().collect(),
            outgoing: cs.voters_outgoing.iter().copied().collect(),
            learners: cs.learners.iter().copied().collect(),
            learners_next: cs.learners_next.iter().copied().collect(),
            auto_leave: cs.auto_leave,
        }
    }

    pub fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.incoming.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            voters_outgoing: self.outgoing.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn is_voter(&self, id: u64) -> bool {
        self.incoming.contains(&id) || self.outgoing.contains(&id)
    }

    /// Every voter of either half, sorted.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.incoming.union(&self.outgoing).copied().collect()
    }

    /// Joint consensus: an index is committed once each half has committed it.
    pub fn committed(&self, acked: impl Fn(u64) -> u64) -> u64 {
        majority_committed(&self.incoming, &acked).min(majority_committed(&self.outgoing, &acked))
    }

    pub fn vote_result(&self, votes: &BTreeMap<u64, bool>) -> VoteResult {
        match (
            majority_vote(&self.incoming, votes),
            majority_vote(&self.outgoing, votes),
        ) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The invariants every configuration must keep (etcd's confchange checkInvariants).
    pub fn check(&self) -> Result<(), ConfChangeError> {
        if let Some(id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(ConfChangeError::LearnerIsVoter(*id));
        }
        if let Some(id) = self
            .learners_next
            .iter()
            .find(|id| !self.outgoing.contains(*id))
        {
            return Err(ConfChangeError::LearnerNextNotOutgoing(*id));
        }
        if !self.is_joint() && (self.auto_leave || !self.learners_next.is_empty()) {
            return Err(ConfChangeError::JointFieldsOutsideJoint);
        }
        Ok(())
    }
}

/// Membership plus every member's progress and the votes of the current election.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    pub config: Configuration,
    pub progress: BTreeMap<u64, Progress>,
    pub votes: BTreeMap<u64, bool>,
    pub max_inflight: usize,
    pub max_inflight_bytes: u64,
}

impl ProgressTracker {
    pub fn new(max_inflight: usize, max_inflight_bytes: u64) -> ProgressTracker {
        ProgressTracker {
            config: Configuration::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
            max_inflight_bytes,
        }
    }

    pub fn conf_state(&self) -> ConfState {
        self.config.to_conf_state()
    }

    /// One voter and no joint configuration: quorum decisions need no messages.
    pub fn is_singleton(&self) -> bool {
        self.config.incoming.len() == 1 && self.config.outgoing.is_empty()
    }

    pub fn committed(&self) -> u64 {
        self.config
            .committed(|id| self.progress.get(&id).map_or(0, |p| p.matched))
    }

    /// Whether a quorum heard from us recently; `self_id` always counts as active.
    pub fn quorum_active(&self, self_id: u64) -> bool {
        let votes = self
            .progress
            .iter()
            .filter(|(id, p)| !p.is_learner && self.config.is_voter(**id))
            .map(|(id, p)| (*id, *id == self_id || p.recent_active))
            .collect();
        self.config.vote_result(&votes) == VoteResult::Won
    }

    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records the first vote of `id` in this election and returns the tally.
    pub fn record_vote(&mut self, id: u64, granted: bool) -> VoteResult {
        self.votes.entry(id).or_insert(granted);
        self.config.vote_result(&self.votes)
    }

    pub fn granted_rejected(&self) -> (usize, usize) {
        let granted = self.votes.values().filter(|v| **v).count();
        (granted, self.votes.len() - granted)
    }
}

/// Computes a new configuration from the current one (etcd's confchange.Changer). Pure: the caller installs the
/// result only when every check passed.
pub(crate) struct Changer<'a> {
    pub tracker: &'a ProgressTracker,
    pub last_index: u64,
}

use raftpb::{ConfChangeSingle, ConfChangeType};

type Changed = (Configuration, BTreeMap<u64, Progress>);

impl Changer<'_> {
    fn start(&self) -> Changed {
        (self.tracker.config.clone(), self.tracker.progress.clone())
    }

    /// Enters a joint configuration: the current voters become the outgoing half, `changes` build the incoming one.
    pub fn enter_joint(
        &self,
        auto_leave: bool,
        changes: &[ConfChangeSingle],
    ) -> Result<Changed, ConfChangeError> {
        let (mut cfg, mut prs) = self.start();
        if cfg.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        if cfg.incoming.is_empty() {
            return Err(ConfChangeError::ZeroVoterJoint);
        }
        cfg.outgoing = cfg.incoming.clone();
        self.apply(&mut cfg, &mut prs, changes)?;
        cfg.auto_leave = auto_leave;
        cfg.check()?;
        Ok((cfg, prs))
    }

    pub fn leave_joint(&self) -> Result<Changed, ConfChangeError> {
        let (mut cfg, mut prs) = self.start();
        if !cfg.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            if let Some(p) = prs.get_mut(&id) {
                p.is_learner = true;
            }
        }
        for id in std::mem::take(&mut cfg.outgoing) {
            if !cfg.incoming.contains(&id) && !cfg.learners.contains(&id) {
                prs.remove(&id);
            }
        }
        cfg.auto_leave = false;
        cfg.check()?;
        Ok((cfg, prs))
    }

    /// A change that alters at most one voter and so needs no joint consensus.
    pub fn simple(&self, changes: &[ConfChangeSingle]) -> Result<Changed, ConfChangeError> {
        let (mut cfg, mut prs) = self.start();
        if cfg.is_joint() {
            return Err(ConfChangeError::SimpleInJoint);
        }
        self.apply(&mut cfg, &mut prs, changes)?;
        let changed = self
            .tracker
            .config
            .incoming
            .symmetric_difference(&cfg.incoming)
            .count();
        if changed > 1 {
            return Err(ConfChangeError::TooManyVotersChanged);
        }
        cfg.check()?;
        Ok((cfg, prs))
    }

    fn apply(
        &self,
        cfg: &mut Configuration,
        prs: &mut BTreeMap<u64, Progress>,
        changes: &[ConfChangeSingle],
    ) -> Result<(), ConfChangeError> {
        for cc in changes {
            if cc.node_id == 0 {
                continue; // etcd ignores changes of node 0
            }
            match cc.kind() {
                ConfChangeType::ConfChangeAddNode => self.make_voter(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeAddLearnerNode => self.make_learner(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeRemoveNode => Self::remove(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeUpdateNode => {}
            }
        }
        if cfg.incoming.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        Ok(())
    }

    fn new_progress(&self, is_learner: bool) -> Progress {
        // A new peer is probed from our last index; it is "recently active" so check-quorum gives it a chance.
        Progress::new(
            self.last_index,
            self.tracker.max_inflight,
            self.tracker.max_inflight_bytes,
            is_learner,
        )
    }

    fn make_voter(&self, cfg: &mut Configuration, prs: &mut BTreeMap<u64, Progress>, id: u64) {
        match prs.get_mut(&id) {
            Some(p) => p.is_learner = false,
            None => {
                prs.insert(id, self.new_progress(false));
            }
        }
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.incoming.insert(id);
    }

    fn make_learner(&self, cfg: &mut Configuration, prs: &mut BTreeMap<u64, Progress>, id: u64) {
        let Some(mut p) = prs.get(&id).cloned() else {
            prs.insert(id, self.new_progress(true));
            cfg.learners.insert(id);
            return;
        };
        if p.is_learner {
            return;
        }
        Self::remove(cfg, prs, id);
        // A voter of the outgoing half can only become a learner once the joint configuration is left.
        if cfg.outgoing.contains(&id) {
            cfg.learners_next.insert(id);
        } else {
            p.is_learner = true;
            cfg.learners.insert(id);
        }
        prs.insert(id, p);
    }

    fn remove(cfg: &mut Configuration, prs: &mut BTreeMap<u64, Progress>, id: u64) {
        if !prs.contains_key(&id) {
            return;
        }
        cfg.incoming.remove(&id);
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        // The outgoing half still needs this peer's progress until the joint configuration is left.
        if !cfg.outgoing.contains(&id) {
            prs.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn majority_commit_index_is_the_median_of_matches() {
        let acked = |id: u64| [0, 5, 3, 9, 1, 7][id as usize];
        assert_eq!(majority_committed(&set(&[1, 2, 3]), acked), 5);
        assert_eq!(majority_committed(&set(&[1, 2, 3, 4]), acked), 3);
        assert_eq!(majority_committed(&set(&[1, 2, 3, 4, 5]), acked), 5);
    }

    #[test]
    fn joint_commit_needs_both_halves() {
        let cfg = Configuration {
            incoming: set(&[1, 2, 3]),
            outgoing: set(&[3, 4, 5]),
            ..Default::default()
        };
        let acked = |id: u64| [0, 9, 9, 2, 1, 1][id as usize];
        assert_eq!(
            cfg.committed(acked),
            1,
            "the outgoing half has only acked 1"
        );
    }

    #[test]
    fn joint_vote_is_lost_when_either_half_is_lost() {
        let cfg = Configuration {
            incoming: set(&[1, 2, 3]),
            outgoing: set(&[1, 4, 5]),
            ..Default::default()
        };
        let mut votes = BTreeMap::from([(1, true), (2, true)]);
        assert_eq!(cfg.vote_result(&votes), VoteResult::Pending);
        votes.insert(4, false);
        votes.insert(5, false);
        assert_eq!(cfg.vote_result(&votes), VoteResult::Lost);
        votes.insert(5, true); // first vote wins in record_vote, but the raw tally flips here
        assert_eq!(cfg.vote_result(&votes), VoteResult::Won);
    }

    #[test]
    fn inflights_bound_count_and_bytes() {
        let mut ins = Inflights::new(3, 100);
        ins.add(1, 10);
        ins.add(2, 10);
        assert!(!ins.full());
        ins.add(3, 10);
        assert!(ins.full());
        ins.free_le(2);
        assert_eq!(ins.count(), 1);
        ins.add(4, 95);
        assert!(ins.full(), "over the byte budget");
    }

    #[test]
    fn progress_backtracks_to_the_hint_but_never_below_match() {
        let mut p = Progress::new(10, 4, 0, false);
        p.matched = 3;
        assert!(
            !p.maybe_decr_to(5, 2),
            "stale rejection of an index we did not send"
        );
        assert!(p.maybe_decr_to(9, 2));
        assert_eq!(p.next_idx, 4);
        p.become_replicate();
        p.sent_entries(3, 30);
        assert_eq!(p.next_idx, 7);
        assert!(!p.maybe_decr_to(3, 0));
        assert!(p.maybe_decr_to(6, 0));
        assert_eq!(p.next_idx, 4);
    }

    fn tracker(voters: &[u64], learners: &[u64]) -> ProgressTracker {
        let mut t = ProgressTracker::new(8, 0);
        for id in voters {
            t.config.incoming.insert(*id);
            t.progress.insert(*id, Progress::new(1, 8, 0, false));
        }
        for id in learners {
            t.config.learners.insert(*id);
            t.progress.insert(*id, Progress::new(1, 8, 0, true));
        }
        t
    }

    fn cc(t: ConfChangeType, id: u64) -> ConfChangeSingle {
        ConfChangeSingle::new(t, id)
    }

    #[test]
    fn simple_change_refuses_two_voters_at_once() {
        let t = tracker(&[1, 2, 3], &[]);
        let ch = Changer {
            tracker: &t,
            last_index: 5,
        };
        let two = [
            cc(ConfChangeType::ConfChangeAddNode, 4),
            cc(ConfChangeType::ConfChangeRemoveNode, 1),
        ];
        assert!(ch.simple(&two).is_err());
        let (cfg, prs) = ch.simple(&two[..1]).unwrap();
        assert_eq!(cfg.incoming, set(&[1, 2, 3, 4]));
        assert_eq!(prs[&4].next_idx, 5);
    }

    #[test]
    fn demoting_a_voter_through_joint_uses_learners_next() {
        let t = tracker(&[1, 2, 3], &[]);
        let ch = Changer {
            tracker: &t,
            last_index: 5,
        };
        let (cfg, prs) = ch
            .enter_joint(
                true,
                &[
                    cc(ConfChangeType::ConfChangeAddLearnerNode, 3),
                    cc(ConfChangeType::ConfChangeAddNode, 4),
                ],
            )
            .unwrap();
        assert_eq!(
            (cfg.incoming.clone(), cfg.outgoing.clone()),
            (set(&[1, 2, 4]), set(&[1, 2, 3]))
        );
        assert_eq!(cfg.learners_next, set(&[3]));
        assert!(!prs[&3].is_learner, "still a voter of the outgoing half");
        let joint = ProgressTracker {
            config: cfg,
            progress: prs,
            ..t.clone()
        };
        let ch = Changer {
            tracker: &joint,
            last_index: 6,
        };
        assert!(ch.enter_joint(false, &[]).is_err(), "already joint");
        let (cfg, prs) = ch.leave_joint().unwrap();
        assert_eq!(
            (cfg.incoming, cfg.learners, cfg.outgoing.is_empty()),
            (set(&[1, 2, 4]), set(&[3]), true)
        );
        assert!(prs[&3].is_learner);
    }

    #[test]
    fn removing_every_voter_is_refused() {
        let t = tracker(&[1], &[2]);
        let ch = Changer {
            tracker: &t,
            last_index: 1,
        };
        assert!(ch
            .simple(&[cc(ConfChangeType::ConfChangeRemoveNode, 1)])
            .is_err());
        let (cfg, _) = ch
            .simple(&[cc(ConfChangeType::ConfChangeAddNode, 2)])
            .unwrap();
        assert_eq!(
            (cfg.incoming, cfg.learners.is_empty()),
            (set(&[1, 2]), true),
            "learner promoted"
        );
    }
}
