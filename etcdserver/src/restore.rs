//! What `snapshot restore` (etcdutl, etcdctl) needs of the server to turn a database into a
//! member of a new cluster that this server boots as a restarted member: the member and
//! cluster ids, the membership tables, and a WAL and raft snapshot written as etcd writes them.

use std::path::Path;

use backend::Backend;
use bytes::Bytes;
use prost::Message as _;
use raftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState};

pub use crate::config::{initial_cluster_for, ClusterError};
pub use crate::server::membership::{cluster_id, Member, Membership};
use crate::server::membership::{MEMBERS_REMOVED_TABLE, MEMBERS_TABLE};
pub use crate::server::schema::TABLES;
pub use crate::server::storage::StorageError;
use crate::server::storage::{Dirs, DiskStorage, WalMetadata};

/// The founding members of a new cluster as etcd's `NewClusterFromURLsMap` makes them
/// (no timestamp in the ids), sorted by id, and the cluster id.
pub fn new_cluster(members: &[(String, Vec<String>)], token: &str) -> (Vec<Member>, u64) {
    let mut members: Vec<Member> = members
        .iter()
        .map(|(name, urls)| Member::new(name, urls, token, None))
        .collect();
    members.sort_by_key(|m| m.id);
    let cid = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    (members, cid)
}

/// Drops the old cluster's members and removed members and writes `members` (etcd's
/// `TrimMembershipFromBackend` then `AddMember` for each).
pub fn replace_membership(backend: &Backend, members: &[Member]) -> Result<(), backend::Error> {
    let mut old = Vec::new();
    {
        let read = backend.read();
        for table in [MEMBERS_TABLE, MEMBERS_REMOVED_TABLE] {
            read.scan(table, &[], None, |k: &[u8], _: &[u8]| {
                old.push((table, k.to_vec()));
                true
            })?;
        }
    }
    let mut tx = backend.batch_tx();
    for (table, key) in old {
        tx.delete(table, key);
    }
    for m in members {
        Membership::save_member(&mut tx, m);
    }
    drop(tx);
    backend.force_commit()
}

/// Writes a restored member's raft state as etcd's `saveWALAndSnap`: a WAL whose metadata
/// names `member_id` of `cluster_id`, one `ConfChangeAddNode` per member (term 1, index 1..N,
/// the member's JSON as context), HardState `{term 1, vote first member, commit N}`, then the
/// raft snapshot at N with every member a voter and its WAL marker. Returns (N, term).
pub fn write_raft_state(
    wal_dir: &Path,
    snap_dir: &Path,
    members: &[Member],
    member_id: u64,
    cluster_id: u64,
) -> Result<(u64, u64), StorageError> {
    const TERM: u64 = 1;
    let dirs = Dirs {
        wal: wal_dir.to_path_buf(),
        snap: snap_dir.to_path_buf(),
        db: snap_dir.join("db"),
    };
    let mut storage = DiskStorage::create(
        &dirs,
        &WalMetadata {
            node_id: member_id,
            cluster_id,
        },
    )?;
    let entries: Vec<Entry> = members
        .iter()
        .zip(1u64..)
        .map(|(m, index)| {
            let cc = ConfChange {
                change_type: ConfChangeType::ConfChangeAddNode as i32,
                node_id: m.id,
                context: Bytes::from(serde_json::to_vec(m).expect("a member serializes")),
                id: 0,
            };
            Entry {
                entry_type: EntryType::EntryConfChange as i32,
                term: TERM,
                index,
                data: Bytes::from(cc.encode_to_vec()),
            }
        })
        .collect();
    let commit = entries.len() as u64;
    let hard_state = HardState {
        term: TERM,
        vote: members.first().map_or(0, |m| m.id),
        commit,
    };
    storage.save_ready(Some(hard_state), entries, None)?;
    let conf_state = ConfState {
        voters: members.iter().map(|m| m.id).collect(),
        ..Default::default()
    };
    let data = serde_json::to_vec(members).expect("members serialize");
    storage.snapshot_at(commit, conf_state, Bytes::from(data), commit)?;
    Ok((commit, TERM))
}
