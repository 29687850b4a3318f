//! Membership changes: decoding conf-change entries, admitting their proposals (one pending at a time, joint
//! consensus entered and left in order), applying committed ones, and leaving a joint configuration on its own
//! (auto-leave).

use prost::Message as _;
use raftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, MessageType};
use tracing::{debug, info};

use super::{msg, Raft, StateRole};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tracker::Changer;

/// Decodes the conf change carried by a conf-change entry, as a V2 change.
pub fn decode_conf_change(entry: &Entry) -> Result<ConfChangeV2> {
    match entry.kind() {
        EntryType::EntryConfChange => ConfChange::decode(&entry.data[..])
            .map(ConfChangeV2::from)
            .map_err(|source| Error::Decode {
                what: "ConfChange",
                source,
            }),
        EntryType::EntryConfChangeV2 => {
            ConfChangeV2::decode(&entry.data[..]).map_err(|source| Error::Decode {
                what: "ConfChangeV2",
                source,
            })
        }
        EntryType::EntryNormal => Err(Error::NotConfChange),
    }
}

impl<S: Storage> Raft<S> {
    /// Checks the conf changes among `entries`, proposed to this leader, which will append them from index
    /// `last + 1`. A refused one is replaced by an empty entry, as etcd does: the slot is kept, so the proposer's
    /// index bookkeeping stays valid.
    pub(super) fn admit_conf_changes(&mut self, entries: &mut [Entry]) -> Result<()> {
        let last = self.raft_log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            if !e.is_conf_change() {
                continue;
            }
            let cc = decode_conf_change(e)?;
            let already_pending = self.pending_conf_index > self.raft_log.applied;
            let already_joint = self.prs.config.is_joint();
            let wants_leave_joint = cc.changes.is_empty();
            let refused = if already_pending {
                Some("possible unapplied conf change")
            } else if already_joint && !wants_leave_joint {
                Some("must transition out of joint config first")
            } else if !already_joint && wants_leave_joint {
                Some("not in joint state; refusing empty conf change")
            } else {
                None
            };
            if let Some(reason) = refused {
                info!(
                    id = self.id,
                    reason,
                    pending = self.pending_conf_index,
                    applied = self.raft_log.applied,
                    "ignoring conf change"
                );
                *e = Entry::default();
            } else {
                self.pending_conf_index = last + i as u64 + 1;
            }
        }
        Ok(())
    }

    /// Called when the applied index moved: once the joint configuration this leader entered with auto-leave is
    /// applied, propose leaving it, as etcd does.
    pub(super) fn maybe_auto_leave_joint(&mut self) {
        if !(self.prs.config.auto_leave
            && self.state == StateRole::Leader
            && self.raft_log.applied >= self.pending_conf_index)
        {
            return;
        }
        let mut m = msg(MessageType::MsgProp, 0);
        m.from = self.id;
        m.entries = vec![Entry {
            entry_type: EntryType::EntryConfChangeV2 as i32,
            data: ConfChangeV2::default().encode_to_vec().into(),
            ..Default::default()
        }];
        if let Err(e) = self.step(m) {
            debug!(id = self.id, %e, "cannot propose leaving the joint configuration yet");
        } else {
            info!(id = self.id, "proposed leaving the joint configuration");
        }
    }

    /// Applies a committed conf change and returns the new membership.
    pub(crate) fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState> {
        let changer = Changer {
            tracker: &self.prs,
            last_index: self.raft_log.last_index(),
        };
        let changed = if cc.leave_joint() {
            changer.leave_joint()
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        };
        let (cfg, progress) = changed?;
        self.prs.config = cfg;
        self.prs.progress = progress;
        let cs = self.prs.conf_state();
        info!(id = self.id, voters = ?cs.voters, outgoing = ?cs.voters_outgoing, learners = ?cs.learners,
            "applied conf change");
        let me = self.prs.progress.get(&self.id);
        self.is_learner = me.is_some_and(|p| p.is_learner);
        if (me.is_none() || self.is_learner) && self.state == StateRole::Leader {
            // Removed or demoted leader: it keeps leading until the server stops it (as etcd), so that the
            // followers learn the conf change is committed; it no longer counts itself in any quorum.
            return Ok(cs);
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return Ok(cs);
        }
        if self.maybe_commit() {
            // The quorum shrank or changed: something may have committed.
            self.on_commit_advanced();
        } else {
            for id in self.peers() {
                self.maybe_send_append(id, false);
            }
        }
        if let Some(t) = self.lead_transferee {
            if !self.prs.config.is_voter(t) {
                self.lead_transferee = None;
            }
        }
        Ok(cs)
    }
}
