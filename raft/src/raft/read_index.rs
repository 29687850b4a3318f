//! Linearizable reads (ReadIndex) on the leader and their answers on followers: a read waits until this leader
//! committed an entry of its term, then for a heartbeat round a quorum acknowledged (or, lease-based, for
//! nothing), and is answered with the commit index of when it arrived.

use bytes::Bytes;
use raftpb::{Message, MessageType};

use super::{msg, Raft};
use crate::read_only::{ReadOnlyOption, ReadState};
use crate::storage::Storage;
use crate::tracker::VoteResult;

impl<S: Storage> Raft<S> {
    /// A MsgReadIndex reached this leader, from the application or forwarded by a follower.
    pub(super) fn handle_read_index(&mut self, m: Message) {
        if self.prs.is_singleton() {
            let index = self.raft_log.committed;
            self.respond_to_read_index(m, index);
        } else if !self.committed_entry_in_current_term() {
            // Our commit index may lag the true one until an entry of our term commits.
            self.pending_read_index_messages.push(m);
        } else {
            self.send_read_index_response(m);
        }
    }

    /// A follower acknowledged the heartbeat round `ctx`: answer every read a quorum has now confirmed.
    pub(super) fn handle_read_index_ack(&mut self, from: u64, ctx: &Bytes) {
        if self.read_only.option != ReadOnlyOption::Safe || ctx.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(from, ctx) else {
            return;
        };
        let votes = acks.iter().map(|id| (*id, true)).collect();
        if self.prs.config.vote_result(&votes) != VoteResult::Won {
            return;
        }
        for status in self.read_only.advance(ctx) {
            self.respond_to_read_index(status.request, status.index);
        }
    }

    /// The leader's answer to a read this follower forwarded.
    pub(super) fn handle_read_index_resp(&mut self, m: &Message) {
        if let [entry] = &m.entries[..] {
            self.read_states.push(ReadState {
                index: m.index,
                request_ctx: entry.data.clone(),
            });
        }
    }

    pub(super) fn release_pending_read_index_messages(&mut self) {
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

    pub(crate) fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// Read requests waiting for their heartbeat round or for the leader's first commit.
    pub(crate) fn pending_reads(&self) -> usize {
        self.read_only.pending_read_count() + self.pending_read_index_messages.len()
    }
}
