//! Elections: pre-vote and vote campaigns, granting votes (with the leader lease), and the role changes they
//! cause.

use bytes::Bytes;
use raftpb::{Entry, Message, MessageType};
use tracing::{debug, info, warn};

use super::{msg, Raft, StateRole};
use crate::error::{Error, Result};
use crate::read_only::ReadOnly;
use crate::storage::Storage;
use crate::tracker::{Progress, VoteResult};

/// The context of a MsgVote that a leader transfer triggered: it overrides the leader lease of the voters.
const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

fn vote_resp_type(t: MessageType) -> MessageType {
    if t == MessageType::MsgPreVote {
        MessageType::MsgPreVoteResp
    } else {
        MessageType::MsgVoteResp
    }
}

impl<S: Storage> Raft<S> {
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
        let spread = self.rng.next_u64() % self.election_timeout as u64;
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

    pub(super) fn hup(&mut self, campaign: CampaignType) {
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

    /// Whether a vote request of a higher term must be ignored because we heard from a leader within the election
    /// timeout (it still holds its lease), unless a leader transfer forced the campaign.
    pub(super) fn vote_within_lease(&self, m: &Message) -> bool {
        let forced = m.context[..] == *CAMPAIGN_TRANSFER;
        let in_lease = self.check_quorum
            && self.leader_id != 0
            && self.election_elapsed < self.election_timeout;
        if !forced && in_lease {
            debug!(
                id = self.id,
                from = m.from,
                term = m.term,
                "ignoring vote request within leader lease"
            );
            return true;
        }
        false
    }

    /// Grants or refuses a (pre-)vote request of the current term or, for a pre-vote, a higher one.
    pub(super) fn handle_vote_request(&mut self, m: &Message) {
        let t = m.kind();
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
    }

    pub(super) fn step_candidate(&mut self, m: Message) -> Result<()> {
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
}
