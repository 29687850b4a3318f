//! Raft wire messages as prost types, with etcd's `raftpb` names, enum values and field numbers.
//!
//! The types are declared with `prost` derives instead of generated from `raft.proto`, so the crate needs no build
//! script. Decoding is compatible with what etcd writes in both directions. etcd's gogoproto marshaller also writes
//! zero-valued scalar fields, which prost omits, so re-encoding an etcd message can be shorter than the original
//! bytes; readers that verify checksums (the WAL) must therefore check the stored bytes, never a re-encoding.

use bytes::Bytes;

/// How the payload of an [`Entry`] is to be interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryType {
    EntryNormal = 0,
    EntryConfChange = 1,
    EntryConfChangeV2 = 2,
}

/// One log entry.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(uint64, tag = "3")]
    pub index: u64,
    #[prost(enumeration = "EntryType", tag = "1")]
    pub entry_type: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

impl Entry {
    /// A normal entry carrying `data`.
    pub fn normal(term: u64, index: u64, data: impl Into<Bytes>) -> Entry {
        Entry {
            term,
            index,
            entry_type: EntryType::EntryNormal as i32,
            data: data.into(),
        }
    }

    /// The entry type; unknown values read as [`EntryType::EntryNormal`], like prost's default.
    pub fn kind(&self) -> EntryType {
        EntryType::try_from(self.entry_type).unwrap_or(EntryType::EntryNormal)
    }

    /// Whether this entry carries a `ConfChange` or `ConfChangeV2`.
    pub fn is_conf_change(&self) -> bool {
        matches!(
            self.kind(),
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2
        )
    }
}

/// Where a snapshot sits in the log and the membership it carries.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    pub conf_state: Option<ConfState>,
    #[prost(uint64, tag = "2")]
    pub index: u64,
    #[prost(uint64, tag = "3")]
    pub term: u64,
}

/// A state-machine snapshot: opaque application data plus its position in the log.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Snapshot {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<SnapshotMetadata>,
}

impl Snapshot {
    /// The log index the snapshot covers (0 for an empty snapshot).
    pub fn index(&self) -> u64 {
        self.metadata.as_ref().map_or(0, |m| m.index)
    }

    /// The term of the entry at [`Snapshot::index`].
    pub fn term(&self) -> u64 {
        self.metadata.as_ref().map_or(0, |m| m.term)
    }

    /// The membership the snapshot carries (empty when absent).
    pub fn conf_state(&self) -> ConfState {
        self.metadata
            .as_ref()
            .and_then(|m| m.conf_state.clone())
            .unwrap_or_default()
    }

    /// An empty snapshot has index 0: it means "no snapshot".
    pub fn is_empty(&self) -> bool {
        self.index() == 0
    }
}

/// Every message kind etcd's raft knows, with etcd's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    MsgHup = 0,
    MsgBeat = 1,
    MsgProp = 2,
    MsgApp = 3,
    MsgAppResp = 4,
    MsgVote = 5,
    MsgVoteResp = 6,
    MsgSnap = 7,
    MsgHeartbeat = 8,
    MsgHeartbeatResp = 9,
    MsgUnreachable = 10,
    MsgSnapStatus = 11,
    MsgCheckQuorum = 12,
    MsgTransferLeader = 13,
    MsgTimeoutNow = 14,
    MsgReadIndex = 15,
    MsgReadIndexResp = 16,
    MsgPreVote = 17,
    MsgPreVoteResp = 18,
    MsgStorageAppend = 19,
    MsgStorageAppendResp = 20,
    MsgStorageApply = 21,
    MsgStorageApplyResp = 22,
    MsgForgetLeader = 23,
}

/// A raft message between peers (or a local input such as `MsgHup`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(enumeration = "MessageType", tag = "1")]
    pub msg_type: i32,
    #[prost(uint64, tag = "2")]
    pub to: u64,
    #[prost(uint64, tag = "3")]
    pub from: u64,
    #[prost(uint64, tag = "4")]
    pub term: u64,
    /// The term of the entry at `index` (MsgApp), or of the candidate's last entry (votes).
    #[prost(uint64, tag = "5")]
    pub log_term: u64,
    #[prost(uint64, tag = "6")]
    pub index: u64,
    #[prost(message, repeated, tag = "7")]
    pub entries: Vec<Entry>,
    #[prost(uint64, tag = "8")]
    pub commit: u64,
    /// Used by MsgStorageAppend to carry the vote of the HardState (etcd field 13).
    #[prost(uint64, tag = "13")]
    pub vote: u64,
    #[prost(message, optional, tag = "9")]
    pub snapshot: Option<Snapshot>,
    #[prost(bool, tag = "10")]
    pub reject: bool,
    #[prost(uint64, tag = "11")]
    pub reject_hint: u64,
    #[prost(bytes = "bytes", tag = "12")]
    pub context: Bytes,
    #[prost(message, repeated, tag = "14")]
    pub responses: Vec<Message>,
}

impl Message {
    /// A message of `msg_type` with every other field zero.
    pub fn new(msg_type: MessageType) -> Message {
        Message {
            msg_type: msg_type as i32,
            ..Default::default()
        }
    }

    /// The message type; unknown values read as [`MessageType::MsgHup`], like prost's default.
    pub fn kind(&self) -> MessageType {
        MessageType::try_from(self.msg_type).unwrap_or(MessageType::MsgHup)
    }
}

/// The state raft must persist before it sends the messages of a Ready.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HardState {
    #[prost(uint64, tag = "1")]
    pub term: u64,
    #[prost(uint64, tag = "2")]
    pub vote: u64,
    #[prost(uint64, tag = "3")]
    pub commit: u64,
}

impl HardState {
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// How a ConfChangeV2 moves through joint consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeTransition {
    /// Simple change when possible, otherwise joint consensus left automatically.
    ConfChangeTransitionAuto = 0,
    /// Always joint consensus, left automatically.
    ConfChangeTransitionJointImplicit = 1,
    /// Always joint consensus, left by an explicit empty ConfChangeV2.
    ConfChangeTransitionJointExplicit = 2,
}

/// The membership of a cluster.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ConfState {
    /// The voters of the incoming configuration.
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    /// The voters of the outgoing configuration while in a joint configuration.
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    /// Voters that become learners when the joint configuration is left.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    #[prost(bool, tag = "5")]
    pub auto_leave: bool,
}

impl ConfState {
    /// A configuration of `voters` only.
    pub fn with_voters(voters: impl IntoIterator<Item = u64>) -> ConfState {
        ConfState {
            voters: voters.into_iter().collect(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeType {
    ConfChangeAddNode = 0,
    ConfChangeRemoveNode = 1,
    ConfChangeUpdateNode = 2,
    ConfChangeAddLearnerNode = 3,
}

/// A single-step membership change (etcd's v1 format).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChange {
    #[prost(enumeration = "ConfChangeType", tag = "2")]
    pub change_type: i32,
    #[prost(uint64, tag = "3")]
    pub node_id: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub context: Bytes,
    /// Unused by raft; etcd's server stores a request id here.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// One change of a [`ConfChangeV2`].
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ConfChangeSingle {
    #[prost(enumeration = "ConfChangeType", tag = "1")]
    pub change_type: i32,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
}

impl ConfChangeSingle {
    pub fn new(change_type: ConfChangeType, node_id: u64) -> ConfChangeSingle {
        ConfChangeSingle {
            change_type: change_type as i32,
            node_id,
        }
    }

    /// The change type; unknown values read as [`ConfChangeType::ConfChangeAddNode`], like prost's default.
    pub fn kind(&self) -> ConfChangeType {
        ConfChangeType::try_from(self.change_type).unwrap_or(ConfChangeType::ConfChangeAddNode)
    }
}

/// A membership change of any number of nodes, possibly through joint consensus.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChangeV2 {
    #[prost(enumeration = "ConfChangeTransition", tag = "1")]
    pub transition: i32,
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<ConfChangeSingle>,
    #[prost(bytes = "bytes", tag = "3")]
    pub context: Bytes,
}

impl ConfChangeV2 {
    /// The transition; unknown values read as the automatic one, like prost's default.
    pub fn transition_kind(&self) -> ConfChangeTransition {
        ConfChangeTransition::try_from(self.transition)
            .unwrap_or(ConfChangeTransition::ConfChangeTransitionAuto)
    }

    /// `Some(auto_leave)` when this change must go through a joint configuration, as etcd's `EnterJoint`.
    pub fn enter_joint(&self) -> Option<bool> {
        let transition = self.transition_kind();
        if transition == ConfChangeTransition::ConfChangeTransitionAuto && self.changes.len() <= 1 {
            return None;
        }
        Some(transition != ConfChangeTransition::ConfChangeTransitionJointExplicit)
    }

    /// A change with nothing but (optionally) a context is the request to leave a joint configuration, as
    /// etcd's `LeaveJoint`.
    pub fn leave_joint(&self) -> bool {
        self.changes.is_empty() && self.transition == 0
    }
}

impl From<ConfChange> for ConfChangeV2 {
    fn from(cc: ConfChange) -> ConfChangeV2 {
        ConfChangeV2 {
            transition: ConfChangeTransition::ConfChangeTransitionAuto as i32,
            changes: vec![ConfChangeSingle {
                change_type: cc.change_type,
                node_id: cc.node_id,
            }],
            context: cc.context,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Bytes produced by etcd's gogoproto marshaller for
    /// `Entry{Term: 2, Index: 3, Type: EntryConfChange, Data: "ab"}`: fields in tag order 1, 2, 3, 4.
    #[test]
    fn decodes_etcd_entry_bytes() {
        let etcd = [0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x22, 0x02, b'a', b'b'];
        let e = Entry::decode(&etcd[..]).unwrap();
        assert_eq!(
            (e.term, e.index, e.kind(), &e.data[..]),
            (2, 3, EntryType::EntryConfChange, &b"ab"[..])
        );
    }

    /// etcd writes repeated uint64 of proto2 unpacked; we must write them the same way.
    #[test]
    fn conf_state_voters_are_unpacked_like_etcd() {
        let cs = ConfState {
            voters: vec![1, 2],
            auto_leave: true,
            ..Default::default()
        };
        assert_eq!(cs.encode_to_vec(), vec![0x08, 0x01, 0x08, 0x02, 0x28, 0x01]);
        assert_eq!(ConfState::decode(&cs.encode_to_vec()[..]).unwrap(), cs);
    }

    #[test]
    fn message_round_trips_with_snapshot_and_entries() {
        let m = Message {
            msg_type: MessageType::MsgSnap as i32,
            to: 2,
            from: 1,
            term: 7,
            entries: vec![Entry::normal(7, 11, &b"x"[..])],
            snapshot: Some(Snapshot {
                data: Bytes::from_static(b"state"),
                metadata: Some(SnapshotMetadata {
                    conf_state: Some(ConfState::with_voters([1, 2, 3])),
                    index: 10,
                    term: 6,
                }),
            }),
            context: Bytes::from_static(b"ctx"),
            ..Default::default()
        };
        let back = Message::decode(&m.encode_to_vec()[..]).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.kind(), MessageType::MsgSnap);
        assert_eq!(back.snapshot.unwrap().conf_state().voters, vec![1, 2, 3]);
    }

    #[test]
    fn message_type_numbers_match_etcd() {
        assert_eq!(MessageType::MsgPreVoteResp as i32, 18);
        assert_eq!(MessageType::MsgReadIndexResp as i32, 16);
        assert_eq!(MessageType::MsgForgetLeader as i32, 23);
    }

    #[test]
    fn conf_change_v2_joint_rules_follow_etcd() {
        let single: ConfChangeV2 = ConfChange {
            change_type: ConfChangeType::ConfChangeAddNode as i32,
            node_id: 4,
            ..Default::default()
        }
        .into();
        assert_eq!(single.enter_joint(), None);
        assert!(!single.leave_joint());
        let two = ConfChangeV2 {
            changes: vec![
                ConfChangeSingle::new(ConfChangeType::ConfChangeAddNode, 4),
                ConfChangeSingle::new(ConfChangeType::ConfChangeRemoveNode, 1),
            ],
            ..Default::default()
        };
        assert_eq!(two.enter_joint(), Some(true));
        let explicit = ConfChangeV2 {
            transition: ConfChangeTransition::ConfChangeTransitionJointExplicit as i32,
            ..two.clone()
        };
        assert_eq!(explicit.enter_joint(), Some(false));
        assert!(ConfChangeV2::default().leave_joint());
        let with_context = ConfChangeV2 {
            context: Bytes::from_static(b"why"),
            ..Default::default()
        };
        assert!(
            with_context.leave_joint(),
            "the context may carry an application payload"
        );
        assert!(!explicit.leave_joint());
    }
}
