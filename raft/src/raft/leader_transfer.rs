//! Leader transfer: the leader stops taking proposals, brings the transferee's log up to date and then tells it to
//! campaign at once (MsgTimeoutNow); the transfer is abandoned after an election timeout.

use raftpb::MessageType;
use tracing::{debug, info};

use super::{msg, Raft};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// A MsgTransferLeader reached this leader; `transferee` has a progress entry.
    pub(super) fn handle_transfer_leader(&mut self, transferee: u64) {
        if self
            .prs
            .progress
            .get(&transferee)
            .is_some_and(|p| p.is_learner)
        {
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
        if self.transferee_caught_up(transferee) {
            self.send(msg(MessageType::MsgTimeoutNow, transferee));
        } else {
            self.send_append(transferee);
        }
    }

    /// `from` acknowledged entries: if it is the transferee and now has the whole log, hand leadership over.
    pub(super) fn maybe_finish_leader_transfer(&mut self, from: u64) {
        if self.lead_transferee == Some(from) && self.transferee_caught_up(from) {
            info!(
                id = self.id,
                to = from,
                "transferee caught up; sending MsgTimeoutNow"
            );
            self.send(msg(MessageType::MsgTimeoutNow, from));
        }
    }

    /// The transfer did not finish within an election timeout: take proposals again.
    pub(super) fn abort_leader_transfer(&mut self) {
        if self.lead_transferee.take().is_some() {
            info!(id = self.id, "leader transfer timed out; aborting");
        }
    }

    fn transferee_caught_up(&self, transferee: u64) -> bool {
        self.prs
            .progress
            .get(&transferee)
            .is_some_and(|p| p.matched == self.raft_log.last_index())
    }
}
