//! Log replication and commitment: the leader's MsgApp/MsgSnap/heartbeat sending under per-follower flow
//! control, the follower's handling of them, acknowledgements, the commit rule, and the bookkeeping of what the
//! application persisted and applied.

use bytes::Bytes;
use raftpb::{Entry, Message, MessageType, Snapshot};
use tracing::{debug, info, warn};

use super::{msg, Raft, StateRole};
use crate::error::StorageError;
use crate::storage::{entries_size, Storage};
use crate::tracker::{Configuration, Progress, ProgressState, ProgressTracker};

impl<S: Storage> Raft<S> {
    pub(super) fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends entries (or a snapshot) to `to` if its progress allows; returns whether a message went out.
    pub(super) fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
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

    pub(super) fn peers(&self) -> Vec<u64> {
        self.prs
            .progress
            .keys()
            .copied()
            .filter(|id| *id != self.id)
            .collect()
    }

    pub(super) fn bcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id);
        }
    }

    pub(super) fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    pub(super) fn bcast_heartbeat_with_ctx(&mut self, ctx: Bytes) {
        for id in self.peers() {
            self.send_heartbeat(id, ctx.clone());
        }
    }

    pub(super) fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed();
        // Raft §5.4.2: only entries of the current term are committed by counting replicas.
        self.raft_log.maybe_commit(mci, self.term)
    }

    pub(super) fn committed_entry_in_current_term(&self) -> bool {
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

    pub(super) fn on_commit_advanced(&mut self) {
        self.release_pending_read_index_messages();
        self.bcast_append();
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        let old = self.raft_log.applied;
        self.raft_log.applied_to(index);
        if self.raft_log.applied > old {
            self.maybe_auto_leave_joint();
        }
    }

    pub(super) fn append_entries(&mut self, entries: &mut [Entry]) -> bool {
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

    pub(crate) fn max_committed_size_per_ready(&self) -> u64 {
        self.max_committed_size_per_ready
    }

    pub(crate) fn on_entries_committed_to_app(&mut self, entries: &[Entry]) {
        if self.state == StateRole::Leader {
            self.reduce_uncommitted_size(entries);
        }
    }

    pub(super) fn handle_append_response(&mut self, m: &Message) {
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
        self.maybe_finish_leader_transfer(from);
    }

    pub(super) fn handle_heartbeat_response(&mut self, m: &Message) {
        let from = m.from;
        let last = self.raft_log.last_index();
        let Some(pr) = self.prs.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            // MsgApps may have been lost: the heartbeat proves the peer is up, so try again.
            pr.inflights.free_first_one();
        }
        if pr.matched < last || pr.state == ProgressState::Probe {
            self.send_append(from);
        }
        self.handle_read_index_ack(from, &m.context);
    }

    /// The application reports how sending a snapshot to `from` ended.
    pub(super) fn handle_snapshot_status(&mut self, from: u64, failed: bool) {
        let Some(pr) = self.prs.progress.get_mut(&from) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if failed {
            pr.pending_snapshot = 0;
        }
        pr.become_probe();
        // Wait for the follower's answer (or a heartbeat response) before probing again.
        pr.probe_sent = true;
        debug!(id = self.id, from, failed, "snapshot status reported");
    }

    /// An unreachable peer may have lost our optimistic stream: probe it again.
    pub(super) fn handle_unreachable(&mut self, from: u64) {
        if let Some(pr) = self.prs.progress.get_mut(&from) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    pub(super) fn handle_append_entries(&mut self, m: &Message) {
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

    pub(super) fn handle_heartbeat(&mut self, m: &Message) {
        self.raft_log.commit_to(m.commit);
        let mut resp = msg(MessageType::MsgHeartbeatResp, m.from);
        resp.context = m.context.clone();
        self.send(resp);
    }

    pub(super) fn handle_snapshot(&mut self, m: Message) {
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
}
