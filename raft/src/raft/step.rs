//! The entry point of every message: the term rules every role shares, then dispatch by role to the handlers of
//! each concern.

use raftpb::{Message, MessageType};
use tracing::{debug, info, warn};

use super::election::CampaignType;
use super::{msg, Raft, StateRole};
use crate::error::{Error, Result};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Handles one message, local or from a peer. It trusts its input: [`crate::RawNode::step`] is the guarded
    /// entry for messages from the network.
    pub(crate) fn step(&mut self, m: Message) -> Result<()> {
        let t = m.kind();
        if m.term == 0 {
            // local message
        } else if m.term > self.term {
            if matches!(t, MessageType::MsgVote | MessageType::MsgPreVote)
                && self.vote_within_lease(&m)
            {
                return Ok(());
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
                self.handle_vote_request(&m);
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
                self.admit_conf_changes(&mut m.entries)?;
                if !self.append_entries(&mut m.entries) {
                    return Err(Error::ProposalDropped);
                }
                self.bcast_append();
                return Ok(());
            }
            MessageType::MsgReadIndex => {
                self.handle_read_index(m);
                return Ok(());
            }
            MessageType::MsgForgetLeader => return Ok(()),
            _ => {}
        }

        // The rest are about a peer, which must have a progress entry.
        let from = m.from;
        if !self.prs.progress.contains_key(&from) {
            debug!(id = self.id, from, "no progress for peer");
            return Ok(());
        }
        match m.kind() {
            MessageType::MsgAppResp => self.handle_append_response(&m),
            MessageType::MsgHeartbeatResp => self.handle_heartbeat_response(&m),
            MessageType::MsgSnapStatus => self.handle_snapshot_status(from, m.reject),
            MessageType::MsgUnreachable => self.handle_unreachable(from),
            MessageType::MsgTransferLeader => self.handle_transfer_leader(from),
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
            MessageType::MsgReadIndexResp => self.handle_read_index_resp(&m),
            _ => {}
        }
        Ok(())
    }
}
