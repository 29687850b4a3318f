//! The apply thread (etcd's `applyAll`, `applyEntryNormal`, `applyConfChange` and
//! `applySnapshot`): applies committed entries to the store in log order, exactly once, wakes
//! their callers, and asks the raft thread for a snapshot every `--snapshot-count` entries.

use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::InternalRaftRequest;
use bytes::Bytes;
use crossbeam_channel::Receiver;
use prost::Message as _;
use raftpb::{ConfState, Entry, EntryType};

use super::apply::{ApplyError, KvApplier};
use super::apply_auth::{is_auth_request, AuthApplier};
use super::cluster::Cluster;
use super::membership::{Membership, MembershipError};
use super::proposer::{Proposer, RaftInput};
use super::raft_loop::ApplyTask;
use super::snapshot::restore_store_from;
use super::status::RaftStatus;
use crate::core::Applied;
use crate::error::ServerError;

use lease::Lessor;

use super::lease_store::{LeaseStoreError, StoreLeases};

/// Why a snapshot received from the leader could not be applied (the member then stops).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotApplyError {
    #[error("its database: {0}")]
    Snap(#[from] snap::Error),
    #[error("backend: {0}")]
    Backend(#[from] backend::Error),
    #[error("mvcc: {0}")]
    Mvcc(#[from] mvcc::Error),
    #[error("leases: {0}")]
    Leases(#[from] LeaseStoreError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("auth store: {0}")]
    Auth(#[from] auth::AuthError),
    // downgrade
    #[error("cluster version: {0}")]
    Versions(#[from] super::version::VersionsError),
    #[error(transparent)]
    Downgrade(#[from] super::version::DowngradeCheckError),
}

/// The apply thread: applies committed entries in order, exactly once, and wakes their callers.
pub(crate) struct ApplyLoop {
    pub(super) kv: KvApplier,
    pub(super) auth: AuthApplier,
    /// Reloaded from the backend when a snapshot replaces it.
    pub(super) auth_store: Arc<auth::AuthStore>,
    pub(super) tasks: Receiver<ApplyTask>,
    pub(super) snapshotter: snap::Snapshotter,
    /// Applied entries between two raft snapshots (`--snapshot-count`).
    pub(super) snapshot_count: u64,
    pub(super) conf_state: ConfState,
    pub(super) last_snapshot: u64,
    pub(super) store: Arc<mvcc::Store>,
    pub(super) lessor: Arc<Lessor>,
    pub(super) status: Arc<RaftStatus>,
    pub(super) proposer: Arc<Proposer>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) transport: rafthttp::Transport,
    /// How long a removed member keeps going before it stops (etcd's `stopWithDelay`).
    pub(super) election_timeout: Duration,
    // quota
    /// The alarms in force: applied here, reloaded with a snapshot.
    pub(super) alarms: Arc<super::alarms::AlarmStore>,
    /// Where a write refused at apply for want of space raises NOSPACE before its caller is
    /// answered (the apply thread cannot wait for raft).
    pub(super) runtime: tokio::runtime::Handle,
    // downgrade
    pub(super) versions: Arc<super::version::ClusterVersions>,
    /// Tests only (hidden `--test-only-apply-delay`): a pause before each request applied.
    pub(super) test_only_apply_delay: Option<Duration>,
}

impl ApplyLoop {
    pub(crate) fn run(mut self) {
        while let Ok(task) = self.tasks.recv() {
            let applied = match task {
                ApplyTask::Snapshot(snap) => match self.apply_snapshot(&snap) {
                    Ok(()) => snap.index,
                    Err(e) => {
                        self.proposer
                            .fatal(&format!("applying snapshot {}: {e}", snap.index));
                        return;
                    }
                },
                ApplyTask::SendSnapshot(msg) => {
                    self.send_snapshot(msg);
                    continue;
                }
                ApplyTask::Entries {
                    entries,
                    conf_states,
                } => {
                    let Some(last) = entries.last().map(|e| e.index) else {
                        continue;
                    };
                    for entry in &entries {
                        self.apply_entry(entry, conf_states.get(&entry.index));
                    }
                    last
                }
            };
            crate::metrics::hooks::applied(applied);
            self.status.set_applied(applied);
            if applied > self.last_snapshot + self.snapshot_count {
                // The snapshot must never be ahead of what the backend has made durable.
                if let Err(e) = self.store.commit() {
                    self.proposer
                        .fatal(&format!("committing the backend for a snapshot: {e}"));
                    return;
                }
                self.last_snapshot = applied;
                self.proposer.send(RaftInput::TakeSnapshot {
                    index: applied,
                    conf_state: self.conf_state.clone(),
                });
            }
        }
    }

    /// Sends the store as applied so far: committed first, so the database a peer receives is
    /// never behind the index the message names.
    fn send_snapshot(&mut self, mut msg: raftpb::Message) {
        let store = &self.store;
        if let Err(e) = store.commit() {
            tracing::error!(error = %e, "committing the backend before sending a snapshot");
            self.proposer.send(RaftInput::SnapshotStatus(
                msg.to,
                raft::SnapshotStatus::Failure,
            ));
            return;
        }
        let (index, term) = store.consistent_index();
        msg.snapshot = Some(raftpb::Snapshot {
            data: Bytes::from(self.cluster.to_json()),
            metadata: Some(raftpb::SnapshotMetadata {
                conf_state: Some(self.conf_state.clone()),
                index,
                term,
            }),
        });
        let backend = store.backend().clone();
        tracing::info!(to = format!("{:x}", msg.to), index, "sending a snapshot");
        self.transport.send_snapshot(
            msg,
            Box::new(move |w: &mut dyn std::io::Write| {
                backend
                    .snapshot_to(w)
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }),
        );
    }

    fn apply_snapshot(
        &mut self,
        snap: &raftpb::SnapshotMetadata,
    ) -> Result<(), SnapshotApplyError> {
        let index = snap.index;
        let (ci, _) = self.store.consistent_index();
        if index <= ci {
            return Ok(());
        }
        let snapshotter = &self.snapshotter;
        let db = snapshotter.db_path(index)?;
        restore_store_from::<SnapshotApplyError>(&self.store, &db)?;
        self.lessor.recover(&StoreLeases(&self.store))?;
        self.auth_store.recover(self.store.backend())?;
        crate::metrics::hooks::auth_revision(self.auth_store.revision());
        self.alarms.reload(self.store.backend())?;
        // downgrade
        self.versions.reload(self.store.backend())?;
        self.versions.check_local()?;
        let membership = Membership::load(self.store.backend())?;
        for m in membership.members.values() {
            if m.id != self.cluster.local_id() {
                self.transport.add_peer(m.id, m.peer_urls.clone());
            }
        }
        let before = self.cluster.replace(membership);
        let now = self.cluster.membership();
        for id in before.members.keys() {
            if !now.members.contains_key(id) {
                self.transport.remove_peer(*id);
            }
        }
        self.conf_state = snap.conf_state.clone().unwrap_or_default();
        self.last_snapshot = index;
        let _ = snapshotter.release_dbs_before(index);
        tracing::info!(index, "applied a snapshot received from the leader");
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry, conf_state: Option<&ConfState>) {
        match entry.kind() {
            EntryType::EntryNormal => self.apply_normal(entry),
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                if let Some(cs) = conf_state {
                    self.conf_state = cs.clone();
                }
                self.apply_conf_change(entry);
            }
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        let store = &self.store;
        if entry.data.is_empty() {
            // A new leader's empty entry: only the consistent index moves.
            store.apply(entry.index, entry.term, |_| ());
            return;
        }
        if let Some(delay) = self.test_only_apply_delay {
            std::thread::sleep(delay);
        }
        let req = match InternalRaftRequest::decode(entry.data.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "undecodable entry; skipped");
                store.apply(entry.index, entry.term, |_| ());
                return;
            }
        };
        let id = req.header.as_ref().map_or(req.id, |h| h.id);
        if let Some(attrs) = &req.cluster_member_attr_set {
            let applied = store.apply(entry.index, entry.term, |txn| {
                self.cluster.apply_attributes(txn.backend_tx(), attrs)
            });
            if applied.is_some() {
                self.proposer.wake(id, Ok(Applied::Empty));
            }
            return;
        }
        // downgrade: the cluster version and the downgrade state (etcd's `ClusterVersionSet`
        // and `DowngradeInfoSet`).
        if let Some(set) = &req.cluster_version_set {
            let versions = &self.versions;
            let checked = store.apply(entry.index, entry.term, |txn| {
                versions.apply_cluster_version(txn.backend_tx(), &set.ver)
            });
            self.proposer.wake(id, Ok(Applied::Empty));
            if let Some(Err(e)) = checked {
                self.proposer.fatal(&e.to_string());
            }
            return;
        }
        if let Some(set) = &req.downgrade_info_set {
            let versions = &self.versions;
            store.apply(entry.index, entry.term, |txn| {
                versions.apply_downgrade(txn.backend_tx(), set.enabled, &set.ver)
            });
            self.proposer.wake(id, Ok(Applied::Empty));
            return;
        }
        // quota
        if let Some(alarm) = &req.alarm {
            let alarms = &self.alarms;
            if let Some(listed) = store.apply(entry.index, entry.term, |txn| {
                alarms.apply(txn.backend_tx(), alarm)
            }) {
                self.proposer.wake(id, Ok(Applied::Alarms(listed)));
            }
            return;
        }
        if is_auth_request(&req) {
            if let Some(result) = self.auth.apply(store, entry.index, entry.term, req) {
                crate::metrics::hooks::proposal_result(result.is_ok());
                self.proposer.wake(id, result.map_err(ServerError::from));
            }
            return;
        }
        if let Some(result) = self.kv.apply(entry.index, entry.term, req) {
            crate::metrics::hooks::proposal_result(result.is_ok());
            if matches!(result, Err(ApplyError::NoSpace)) && !self.alarms.has_nospace() {
                self.raise_nospace_then_wake(id);
                return;
            }
            self.proposer.wake(id, result.map_err(ServerError::from));
        }
    }

    /// etcd's `applyEntryNormal` on a write that passed the quota before it was proposed but
    /// not when applied: every member that applies it raises NOSPACE for itself, and the
    /// caller learns of the refusal once the alarm is in force.
    fn raise_nospace_then_wake(&self, id: u64) {
        tracing::warn!("message exceeded backend quota; raising alarm");
        let proposer = self.proposer.clone();
        let alarm = InternalRaftRequest {
            alarm: Some(api::etcdserverpb::AlarmRequest {
                action: api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.cluster.local_id(),
                alarm: api::etcdserverpb::AlarmType::Nospace as i32,
            }),
            ..Default::default()
        };
        self.runtime.spawn(async move {
            if let Err(e) = proposer.propose(alarm).await {
                tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
            }
            proposer.wake(id, Err(ServerError::NoSpace));
        });
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        let cc = match raft::decode_conf_change(entry) {
            Ok(cc) => cc,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "undecodable conf change; skipped");
                self.store.apply(entry.index, entry.term, |_| ());
                return;
            }
        };
        self.store.apply(entry.index, entry.term, |txn| {
            self.cluster.apply_conf_change(txn.backend_tx(), &cc)
        });
        let removed_self = self.cluster.removes_local(&cc);
        if removed_self {
            // As etcd's `stopWithDelay`: a removed leader keeps sending heartbeats a little
            // longer, so the others learn the removal is committed before it goes.
            let proposer = self.proposer.clone();
            let delay = self.election_timeout;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                proposer.fatal("the member has been permanently removed from the cluster");
            });
        }
        if entry.kind() == EntryType::EntryConfChange {
            // etcd's server puts the proposer's request id in the v1 ConfChange.
            if let Ok(v1) = <raftpb::ConfChange as prost::Message>::decode(entry.data.as_ref()) {
                self.proposer.wake(v1.id, Ok(Applied::Empty));
            }
        }
    }
}
