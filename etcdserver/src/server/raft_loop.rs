//! The raft thread: the only owner of the `RawNode`, the WAL and the snapshot files.
//!
//! Each round it drains every queued input (peer messages, proposals, read requests), feeds
//! them to raft in one go (all proposals in one batch), and handles the Ready: messages that may
//! go out now are handed to the transport *before* the WAL write (the leader replicates while it
//! persists), the rest only after the fsync (a follower's acknowledgement, a vote); committed
//! entries go to the apply thread in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use raft::{MemoryStorage, RawNode, StateRole};
use raftpb::{ConfChangeType, ConfState, EntryType, Message, MessageType, SnapshotMetadata};
use tokio::sync::oneshot;

use super::cluster::Cluster;
use super::leases::Leases;
use super::membership::Member;
use super::proposer::{Proposer, RaftInput};
use super::status::RaftStatus;
use super::storage::DiskStorage;
use crate::error::ServerError;

/// How long a ReadIndex round may go unanswered before it is asked again (etcd: 500 ms).
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);
/// Proposals held while there is no leader; beyond this they are dropped and their callers time out.
const MAX_HELD_PROPOSALS: usize = 10_000;
/// Inputs handled per round before raft's output is processed, so a flood cannot starve ticks.
const MAX_INPUTS_PER_ROUND: usize = 4096;

/// What the apply thread gets, in log order.
pub(crate) enum ApplyTask {
    /// A snapshot from the leader was persisted: the backend received with it is to be restored.
    Snapshot(SnapshotMetadata),
    Entries {
        entries: Vec<raftpb::Entry>,
        /// The membership after each conf-change entry among `entries`, by index.
        conf_states: HashMap<u64, ConfState>,
    },
    /// A snapshot raft wants sent to a follower. As etcd's `createMergedSnapshotMessage`, it
    /// goes out at the applied index with the membership of then, not at the last raft
    /// snapshot: a member added since that snapshot must find itself in the one it receives.
    SendSnapshot(Message),
}

struct ReadRound {
    ctx: u64,
    waiters: Vec<oneshot::Sender<Result<u64, ServerError>>>,
    sent_at: Instant,
}

/// The raft thread's state: raft itself, the disk, and the handles it reports to.
pub(crate) struct RaftLoop {
    pub(super) node: RawNode<MemoryStorage>,
    pub(super) storage: DiskStorage,
    pub(super) inputs: Receiver<RaftInput>,
    pub(super) apply: Sender<ApplyTask>,
    pub(super) heartbeat: Duration,
    pub(super) snapshot_catch_up_entries: u64,
    pub(super) status: Arc<RaftStatus>,
    pub(super) proposer: Arc<Proposer>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) leases: Arc<Leases>,
    pub(super) transport: rafthttp::Transport,
}

impl RaftLoop {
    pub fn run(mut self) {
        let ticker = crossbeam_channel::tick(self.heartbeat);
        let mut held: Vec<Bytes> = Vec::new();
        let mut pending_reads: Vec<oneshot::Sender<Result<u64, ServerError>>> = Vec::new();
        let mut round: Option<ReadRound> = None;
        let mut next_ctx: u64 = 1;
        loop {
            let mut proposals: Vec<Bytes> = std::mem::take(&mut held);
            let first = crossbeam_channel::select! {
                recv(ticker) -> _ => { self.node.tick(); None }
                recv(self.inputs) -> input => match input {
                    Ok(i) => Some(i),
                    Err(_) => return,
                },
            };
            let mut inputs: Vec<RaftInput> = first.into_iter().collect();
            while inputs.len() < MAX_INPUTS_PER_ROUND {
                match self.inputs.try_recv() {
                    Ok(i) => inputs.push(i),
                    Err(_) => break,
                }
            }
            for input in inputs {
                match input {
                    RaftInput::Propose(data) => proposals.push(data),
                    RaftInput::Step(m) => {
                        if let Err(e) = self.node.step(m) {
                            tracing::debug!(error = %e, "raft ignored a peer message");
                        }
                    }
                    RaftInput::ReadIndex(tx) => pending_reads.push(tx),
                    RaftInput::Unreachable(id) => self.node.report_unreachable(id),
                    RaftInput::SnapshotStatus(id, status) => self.node.report_snapshot(id, status),
                    RaftInput::TakeSnapshot { index, conf_state } => {
                        let data = Bytes::from(self.cluster.to_json());
                        if let Err(e) = self.storage.snapshot_at(
                            index,
                            conf_state,
                            data,
                            self.snapshot_catch_up_entries,
                        ) {
                            self.proposer
                                .fatal(&format!("saving a snapshot failed: {e}"));
                            return;
                        }
                    }
                    RaftInput::TransferLeader(to) => self.node.transfer_leader(to),
                    RaftInput::ProposeConfChange { cc, promote } => {
                        self.propose_conf_change(cc, promote)
                    }
                    RaftInput::Stop => return,
                }
            }

            let leader = self.node.leader_id();
            if !proposals.is_empty() {
                if leader == 0 {
                    // Kept until a leader is known: a write sent during an election succeeds after it.
                    if proposals.len() > MAX_HELD_PROPOSALS {
                        let excess = proposals.len() - MAX_HELD_PROPOSALS;
                        proposals.drain(..excess);
                        tracing::warn!(
                            dropped = excess,
                            "no leader: dropping the oldest proposals"
                        );
                    }
                    held = proposals;
                } else if let Err(e) = self.node.propose_batch(proposals) {
                    tracing::debug!(error = %e, "raft dropped proposals");
                }
            }

            if let Some(r) = &round {
                if r.sent_at.elapsed() >= READ_INDEX_RETRY {
                    // Lost to a leader change or a dropped message: ask again for the same waiters.
                    let mut r = round.take().expect("checked above");
                    pending_reads.append(&mut r.waiters);
                }
            }
            if round.is_none() && !pending_reads.is_empty() && leader != 0 {
                let ctx = next_ctx;
                next_ctx += 1;
                self.node
                    .read_index(Bytes::copy_from_slice(&ctx.to_be_bytes()));
                round = Some(ReadRound {
                    ctx,
                    waiters: std::mem::take(&mut pending_reads),
                    sent_at: Instant::now(),
                });
            }

            if !self.node.has_ready() {
                continue;
            }
            // Taken apart by move: `advance` needs nothing back, so nothing is cloned on the way to the disk
            // and the apply thread.
            let raft::Ready {
                soft_state,
                hard_state,
                read_states,
                entries,
                snapshot,
                committed_entries,
                messages,
                persisted_messages,
                must_sync,
            } = self.node.ready();
            if let Some(ss) = &soft_state {
                self.on_soft_state(ss.leader_id, ss.raft_state == StateRole::Leader);
            }
            if let Some(hs) = &hard_state {
                self.status.set_hard_state(hs.term, hs.commit);
                crate::metrics::hooks::committed(hs.commit);
            }
            self.send(messages);
            // The apply thread needs only where the snapshot is and its membership; the snapshot itself goes to
            // the raft log.
            let snapshot_metadata = snapshot
                .as_ref()
                .map(|s| s.metadata.clone().unwrap_or_default());
            let started = Instant::now();
            if let Err(e) = self.storage.save_ready(hard_state, entries, snapshot) {
                // A failed fsync leaves the disk state unknown: etcd panics here; we stop serving.
                self.proposer
                    .fatal(&format!("persisting raft state failed: {e}"));
                return;
            }
            if must_sync {
                crate::metrics::hooks::wal_fsync(started.elapsed());
            }
            if let Some(metadata) = snapshot_metadata {
                if self.apply.send(ApplyTask::Snapshot(metadata)).is_err() {
                    return;
                }
            }
            if !committed_entries.is_empty() {
                let mut conf_states = HashMap::new();
                for entry in &committed_entries {
                    if entry.kind() == EntryType::EntryNormal {
                        continue;
                    }
                    match raft::decode_conf_change(entry) {
                        Ok(cc) => {
                            self.update_transport(&cc);
                            match self.node.apply_conf_change(&cc) {
                                Ok(cs) => {
                                    conf_states.insert(entry.index, cs);
                                }
                                Err(e) => tracing::error!(error = %e, "applying a conf change"),
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "undecodable conf change entry"),
                    }
                }
                let task = ApplyTask::Entries {
                    entries: committed_entries,
                    conf_states,
                };
                if self.apply.send(task).is_err() {
                    return;
                }
            }
            self.send(persisted_messages);
            for rs in read_states {
                let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_ref()) else {
                    continue;
                };
                let ctx = u64::from_be_bytes(ctx);
                if round.as_ref().is_some_and(|r| r.ctx == ctx) {
                    let r = round.take().expect("checked above");
                    for w in r.waiters {
                        let _ = w.send(Ok(rs.index));
                    }
                }
            }
            self.node.advance();
        }
    }

    fn on_soft_state(&self, leader: u64, is_leader: bool) {
        let before = self.status.set_leader(leader);
        if before != leader {
            tracing::info!(
                leader = format!("{leader:x}"),
                is_leader,
                "raft leader changed"
            );
        }
        if !is_leader {
            // Only a leader expires leases; a new one is promoted once it caught up.
            self.leases.demote();
        }
        crate::metrics::hooks::leader(
            self.cluster.local_id(),
            leader,
            before != leader && leader != 0,
        );
    }

    fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let mut plain = Vec::with_capacity(msgs.len());
        for m in msgs {
            if m.kind() == MessageType::MsgSnap {
                // Built by the apply thread at its applied index (etcd's merged snapshot).
                let _ = self.apply.send(ApplyTask::SendSnapshot(m));
            } else {
                plain.push(m);
            }
        }
        if !plain.is_empty() {
            self.transport.send(plain);
        }
    }

    fn propose_conf_change(&mut self, cc: raftpb::ConfChange, promote: bool) {
        let checked = if promote {
            super::reconfig::learner_ready(&self.node.status(), cc.node_id)
        } else if self.node.leader_id() == 0 {
            Err(ServerError::NoLeader)
        } else {
            Ok(())
        };
        let proposed = checked.and_then(|()| {
            self.node.propose_conf_change(&cc).map_err(|e| {
                tracing::info!(error = %e, "raft dropped a conf change");
                ServerError::LeaderChanged
            })
        });
        if let Err(e) = proposed {
            self.proposer.wake(cc.id, Err(e));
        }
    }

    /// Peers join the transport when their conf change commits, before it is applied, so the
    /// new member hears from the leader at once (as etcd does).
    fn update_transport(&self, cc: &raftpb::ConfChangeV2) {
        let local = self.cluster.local_id();
        for change in &cc.changes {
            let id = change.node_id;
            if id == local {
                continue;
            }
            match change.kind() {
                ConfChangeType::ConfChangeAddNode | ConfChangeType::ConfChangeAddLearnerNode => {
                    if let Ok(m) = serde_json::from_slice::<Member>(&cc.context) {
                        if m.id == id {
                            self.transport.add_peer(id, m.peer_urls);
                        }
                    }
                }
                ConfChangeType::ConfChangeRemoveNode => self.transport.remove_peer(id),
                ConfChangeType::ConfChangeUpdateNode => {
                    if let Ok(m) = serde_json::from_slice::<Member>(&cc.context) {
                        self.transport.update_peer(id, m.peer_urls);
                    }
                }
            }
        }
    }
}
