//! Linearizable reads (ReadIndex): requests waiting for a heartbeat round that proves the leader still leads.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use raftpb::Message;

/// How the leader confirms a read index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// A heartbeat round acknowledged by a quorum confirms leadership (safe under clock drift).
    #[default]
    Safe,
    /// The leader lease (check-quorum) is trusted; no round-trip, unsafe under unbounded clock drift.
    LeaseBased,
}

/// A read index the application may serve once it has applied up to `index`; `request_ctx` identifies the read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Bytes,
}

#[derive(Debug)]
pub(crate) struct ReadIndexStatus {
    pub request: Message,
    pub index: u64,
    pub acks: BTreeSet<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    pub option: ReadOnlyOption,
    pending: HashMap<Bytes, ReadIndexStatus>,
    queue: VecDeque<Bytes>,
}

impl ReadOnly {
    pub fn new(option: ReadOnlyOption) -> ReadOnly {
        ReadOnly {
            option,
            ..Default::default()
        }
    }

    /// Queues a read at `index`; a duplicate context joins the round already pending.
    pub fn add_request(&mut self, index: u64, request: Message) {
        let ctx = request
            .entries
            .first()
            .map(|e| e.data.clone())
            .unwrap_or_default();
        if self.pending.contains_key(&ctx) {
            return;
        }
        self.pending.insert(
            ctx.clone(),
            ReadIndexStatus {
                request,
                index,
                acks: BTreeSet::new(),
            },
        );
        self.queue.push_back(ctx);
    }

    pub fn recv_ack(&mut self, id: u64, ctx: &[u8]) -> Option<&BTreeSet<u64>> {
        let status = self.pending.get_mut(ctx)?;
        status.acks.insert(id);
        Some(&status.acks)
    }

    /// Releases the confirmed read `ctx` and every read queued before it: a heartbeat round confirms them all.
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c[..] == *ctx) else {
            return Vec::new();
        };
        self.queue
            .drain(..=pos)
            .filter_map(|c| self.pending.remove(&c))
            .collect()
    }

    pub fn last_pending_request_ctx(&self) -> Option<Bytes> {
        self.queue.back().cloned()
    }

    pub fn pending_read_count(&self) -> usize {
        self.queue.len()
    }
}
