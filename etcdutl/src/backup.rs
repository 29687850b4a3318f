//! `etcdutl backup` (etcd 3.5's legacy offline backup): copies a stopped member's data dir into
//! a new one that belongs to a one-member cluster of its own (random member and cluster ids, the
//! member `etcdctl-v2-backup`), meant to be started with `--force-new-cluster`. Membership
//! changes and member attribute updates in the WAL become empty entries, so replaying it
//! cannot bring the old members back.

use std::path::{Path, PathBuf};

use api::etcdserverpb::InternalRaftRequest;
use backend::{Backend, BackendConfig};
use bytes::Bytes;
use etcdserver::restore as server;
use prost::Message as _;
use raftpb::{ConfState, Entry, EntryType};
use wal::{SnapshotMarker, Wal, WalEntry};

/// Flags of `etcdutl backup`.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub backup_dir: PathBuf,
    pub backup_wal_dir: Option<PathBuf>,
    /// Copy the v3 backend too (etcd's default); without it the backup has an empty one.
    pub with_v3: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}", .0.display())]
    NotADataDir(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Snap(#[from] snap::Error),
    #[error("{0}")]
    Wal(#[from] wal::Error),
    #[error("decoding {what}: {source}")]
    Decode {
        what: String,
        source: prost::DecodeError,
    },
    #[error("{0}")]
    Backend(#[from] backend::Error),
    #[error("{0}")]
    Storage(#[from] server::StorageError),
}

/// The one-member cluster a backup belongs to.
struct Desired {
    member: server::Member,
    cluster_id: u64,
}

impl Desired {
    fn new() -> Desired {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut rng = pkg::rand::SplitMix64::new(nanos ^ u64::from(std::process::id()));
        let member = server::Member {
            id: rng.next_u64(),
            peer_urls: vec!["http://use-flag--force-new-cluster:2080".into()],
            name: "etcdctl-v2-backup".into(),
            ..Default::default()
        };
        Desired {
            member,
            cluster_id: rng.next_u64(),
        }
    }

    fn conf_state(&self) -> ConfState {
        ConfState {
            voters: vec![self.member.id],
            ..Default::default()
        }
    }
}

/// Backs `cfg.data_dir` up into `cfg.backup_dir` (see the module comment).
pub fn backup(cfg: &BackupConfig) -> Result<(), BackupError> {
    let src_member = cfg.data_dir.join("member");
    if !src_member.is_dir() {
        return Err(BackupError::NotADataDir(src_member));
    }
    let src_wal = cfg
        .wal_dir
        .clone()
        .unwrap_or_else(|| src_member.join("wal"));
    let dest_member = cfg.backup_dir.join("member");
    let dest_wal = cfg
        .backup_wal_dir
        .clone()
        .unwrap_or_else(|| dest_member.join("wal"));
    let dest_snap = dest_member.join("snap");
    std::fs::create_dir_all(&dest_snap).map_err(io_err(&dest_snap))?;
    let desired = Desired::new();

    let marker = save_snap(&src_member.join("snap"), &dest_snap, &desired)?;
    let (metadata, hard_state, entries) = translate_wal(&src_wal, marker)?;
    save_db(
        &src_member.join("snap").join("db"),
        &dest_snap.join("db"),
        &desired,
        (hard_state.commit, hard_state.term),
        cfg.with_v3,
    )?;
    let mut wal = Wal::create(&dest_wal, &metadata)?;
    // The marker first: our WAL takes entries only right after the last index it holds.
    if marker.index > 0 {
        wal.save_snapshot(marker)?;
    }
    wal.save(&hard_state, &entries)?;
    wal.close()?;
    tracing::info!(
        member = format!("{:x}", desired.member.id),
        cluster = format!("{:x}", desired.cluster_id),
        entries = entries.len(),
        "backed up"
    );
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        what: path.display().to_string(),
        source,
    }
}

/// Copies the newest raft snapshot with the desired membership; returns its WAL marker
/// (index 0 when there is none).
fn save_snap(src: &Path, dest: &Path, desired: &Desired) -> Result<SnapshotMarker, BackupError> {
    let Some(found) = snap::Snapshotter::new(src)?.load_newest()? else {
        return Ok(SnapshotMarker::new(0, 0));
    };
    let mut snapshot =
        raftpb::Snapshot::decode(found.data.as_ref()).map_err(|source| BackupError::Decode {
            what: format!("snapshot {}", found.index),
            source,
        })?;
    let metadata = snapshot.metadata.get_or_insert_with(Default::default);
    metadata.conf_state = Some(desired.conf_state());
    snapshot.data =
        Bytes::from(serde_json::to_vec(&[&desired.member]).expect("a member serializes"));
    snap::Snapshotter::new(dest)?.save_snap(found.term, found.index, &snapshot.encode_to_vec())?;
    Ok(SnapshotMarker::new(found.index, found.term))
}

/// The WAL after `marker` with membership changes and member attribute updates made empty.
fn translate_wal(
    dir: &Path,
    marker: SnapshotMarker,
) -> Result<(Bytes, wal::HardState, Vec<WalEntry>), BackupError> {
    let (wal, contents) = Wal::open(dir, marker)?;
    wal.close()?;
    let mut entries = Vec::with_capacity(contents.entries.len());
    for record in contents.entries {
        let (index, term) = (record.index(), record.term());
        let entry =
            Entry::decode(record.encoded().clone()).map_err(|source| BackupError::Decode {
                what: format!("WAL entry {index}"),
                source,
            })?;
        let keep = match EntryType::try_from(entry.entry_type) {
            Ok(EntryType::EntryConfChange | EntryType::EntryConfChangeV2) => false,
            _ => InternalRaftRequest::decode(entry.data.as_ref())
                .map_or(true, |r| r.cluster_member_attr_set.is_none()),
        };
        entries.push(if keep {
            record
        } else {
            let noop = Entry::normal(term, index, Bytes::new());
            WalEntry::new(index, term, Bytes::from(noop.encode_to_vec()))
        });
    }
    Ok((contents.metadata, contents.hard_state, entries))
}

/// The backend with the desired membership: a copy of the member's with `with_v3`, else an
/// empty one at the WAL's commit.
fn save_db(
    src: &Path,
    dest: &Path,
    desired: &Desired,
    (commit, term): (u64, u64),
    with_v3: bool,
) -> Result<(), BackupError> {
    if with_v3 {
        std::fs::copy(src, dest).map_err(io_err(src))?;
    }
    let backend = Backend::open(dest, BackendConfig::default(), &server::TABLES)?;
    server::replace_membership(&backend, std::slice::from_ref(&desired.member))?;
    if !with_v3 {
        let mut tx = backend.batch_tx();
        mvcc::offline::write_consistent_index(&mut tx, commit, term);
        drop(tx);
        backend.force_commit()?;
    }
    backend.close()?;
    Ok(())
}
