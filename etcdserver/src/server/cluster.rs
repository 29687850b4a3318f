//! The live membership of this member's cluster (etcd's `membership.RaftCluster`): read by the
//! request side, changed only by the apply thread as conf changes and attribute updates apply.

use api::etcdserverpb::ClusterMemberAttrSetRequest;
use backend::BatchTx;
use parking_lot::RwLock;
use raftpb::{ConfChangeType, ConfChangeV2};

use super::membership::{Member, Membership};

pub(crate) struct Cluster {
    id: u64,
    local_id: u64,
    members: RwLock<Membership>,
}

impl Cluster {
    pub(crate) fn new(id: u64, local_id: u64, members: Membership) -> Cluster {
        Cluster {
            id,
            local_id,
            members: RwLock::new(members),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// This member's id.
    pub(crate) fn local_id(&self) -> u64 {
        self.local_id
    }

    /// The membership as applied so far.
    pub(crate) fn membership(&self) -> Membership {
        self.members.read().clone()
    }

    /// The members as etcd serves them on the peer port's `/members`.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.members.read().list()).unwrap_or_default()
    }

    pub(crate) fn is_learner(&self, id: u64) -> bool {
        self.members
            .read()
            .members
            .get(&id)
            .is_some_and(|m| m.is_learner)
    }

    pub(crate) fn is_removed(&self, id: u64) -> bool {
        self.members.read().removed.contains(&id)
    }

    pub(crate) fn peer_urls(&self, id: u64) -> Vec<String> {
        self.members
            .read()
            .members
            .get(&id)
            .map(|m| m.peer_urls.clone())
            .unwrap_or_default()
    }

    /// Whether this member's published name and client URLs are these.
    pub(crate) fn is_published(&self, name: &str, client_urls: &[String]) -> bool {
        self.members
            .read()
            .members
            .get(&self.local_id)
            .is_some_and(|m| m.name == name && m.client_urls == client_urls)
    }

    /// Replaces the membership with one a snapshot brought; returns the one before.
    pub(crate) fn replace(&self, members: Membership) -> Membership {
        std::mem::replace(&mut *self.members.write(), members)
    }

    /// Applies a member's published attributes (etcd's `ClusterMemberAttrSet`).
    pub(crate) fn apply_attributes(
        &self,
        tx: &mut BatchTx<'_>,
        attrs: &ClusterMemberAttrSetRequest,
    ) {
        let mut membership = self.members.write();
        if let Some(m) = membership.members.get_mut(&attrs.member_id) {
            if let Some(a) = &attrs.member_attributes {
                m.name = a.name.clone();
                m.client_urls = a.client_urls.clone();
            }
            Membership::save_member(tx, m);
        }
    }

    /// Whether `cc` removes this member.
    pub(crate) fn removes_local(&self, cc: &ConfChangeV2) -> bool {
        cc.changes
            .iter()
            .any(|c| c.kind() == ConfChangeType::ConfChangeRemoveNode && c.node_id == self.local_id)
    }

    /// Applies a committed conf change to the membership and the backend.
    pub(crate) fn apply_conf_change(&self, tx: &mut BatchTx<'_>, cc: &ConfChangeV2) {
        let mut membership = self.members.write();
        for change in &cc.changes {
            let id = change.node_id;
            match change.kind() {
                ConfChangeType::ConfChangeAddNode | ConfChangeType::ConfChangeAddLearnerNode => {
                    let learner = change.kind() == ConfChangeType::ConfChangeAddLearnerNode;
                    let mut m = match serde_json::from_slice::<Member>(&cc.context) {
                        Ok(m) if m.id == id => m,
                        _ => membership.members.get(&id).cloned().unwrap_or(Member {
                            id,
                            ..Member::default()
                        }),
                    };
                    if let Some(existing) = membership.members.get(&id) {
                        // A promotion keeps the published name and client URLs.
                        m.name = existing.name.clone();
                        m.client_urls = existing.client_urls.clone();
                    }
                    m.is_learner = learner;
                    Membership::save_member(tx, &m);
                    membership.members.insert(id, m);
                }
                ConfChangeType::ConfChangeRemoveNode => {
                    membership.members.remove(&id);
                    membership.removed.insert(id);
                    Membership::save_removed(tx, id);
                }
                ConfChangeType::ConfChangeUpdateNode => {
                    if let Ok(update) = serde_json::from_slice::<Member>(&cc.context) {
                        if let Some(m) = membership.members.get_mut(&id) {
                            m.peer_urls = update.peer_urls;
                            Membership::save_member(tx, m);
                        }
                    }
                }
            }
        }
    }
}
