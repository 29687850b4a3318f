//! Raft's durable state on disk (etcd's `storage.Storage` plus its bootstrap code): the WAL and the
//! snapshot files, with the in-memory log raft reads from.
//!
//! Order of writes, as etcd's raft node: a snapshot file and its WAL marker before the entries
//! that follow it; entries and HardState with one fsync per Ready; a locally taken snapshot
//! only after the backend committed everything up to its index, so a restart never needs an
//! entry older than the newest snapshot.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;
use raft::MemoryStorage;
use raftpb::{Entry, HardState, Snapshot};
use wal::{SnapshotMarker, Wal, WalEntry};

/// WAL segments and snapshot files kept besides the newest (etcd: `--max-wals` 5,
/// `--max-snapshots` 5).
const KEEP_WAL_SEGMENTS: usize = 5;
const KEEP_SNAPSHOTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("wal: {0}")]
    Wal(#[from] wal::Error),
    #[error("snap: {0}")]
    Snap(#[from] snap::Error),
    #[error("raft storage: {0}")]
    Raft(#[from] raft::StorageError),
    #[error("{0}")]
    Corrupt(String),
}

/// etcd's `etcdserverpb.Metadata`, written once at the head of the WAL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalMetadata {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(uint64, tag = "2")]
    pub cluster_id: u64,
}

pub struct Dirs {
    pub wal: PathBuf,
    pub snap: PathBuf,
    pub db: PathBuf,
}

impl Dirs {
    /// `<data-dir>/member/{wal,snap,snap/db}`, as etcd lays them out.
    pub fn new(data_dir: &Path) -> Dirs {
        let member = data_dir.join("member");
        Dirs {
            wal: member.join("wal"),
            snap: member.join("snap"),
            db: member.join("snap").join("db"),
        }
    }
}

/// The durable raft log of this member.
pub struct DiskStorage {
    wal: Wal,
    wal_dir: PathBuf,
    pub snapshotter: snap::Snapshotter,
    /// Shared with the `RawNode`: raft reads it, only this type writes it.
    pub mem: MemoryStorage,
}

/// What a restart found on disk.
pub struct Recovered {
    pub storage: DiskStorage,
    pub metadata: WalMetadata,
    /// The newest snapshot the WAL has a marker for (index 0 when none).
    pub snapshot: Snapshot,
}

fn to_wal_state(hs: &HardState) -> wal::HardState {
    wal::HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

impl DiskStorage {
    /// Whether `data_dir` holds a member's state already.
    pub fn exists(dirs: &Dirs) -> bool {
        wal::exists(&dirs.wal)
    }

    /// A fresh log for a new member.
    pub fn create(dirs: &Dirs, metadata: &WalMetadata) -> Result<DiskStorage, StorageError> {
        std::fs::create_dir_all(&dirs.snap).map_err(|e| {
            StorageError::Corrupt(format!("cannot create {}: {e}", dirs.snap.display()))
        })?;
        let wal = Wal::create(&dirs.wal, &metadata.encode_to_vec())?;
        Ok(DiskStorage {
            wal,
            wal_dir: dirs.wal.clone(),
            snapshotter: snap::Snapshotter::new(&dirs.snap)?,
            mem: MemoryStorage::new(),
        })
    }

    /// Reopens the log: the newest snapshot with a WAL marker, then every entry after it.
    pub fn open(dirs: &Dirs) -> Result<Recovered, StorageError> {
        let snapshotter = snap::Snapshotter::new(&dirs.snap)?;
        let markers = wal::snapshot_markers(&dirs.wal)?;
        let found = snapshotter.load_newest_matching(|term, index| {
            markers.iter().any(|m| m.term == term && m.index == index)
        })?;
        let snapshot = match found {
            Some(s) => Snapshot::decode(s.data.as_ref())
                .map_err(|e| StorageError::Corrupt(format!("snapshot {}: {e}", s.index)))?,
            None => Snapshot::default(),
        };
        let marker = SnapshotMarker::new(snapshot.index(), snapshot.term());
        let (wal, contents) = Wal::open(&dirs.wal, marker)?;
        let metadata = WalMetadata::decode(contents.metadata.as_ref())
            .map_err(|e| StorageError::Corrupt(format!("WAL metadata: {e}")))?;
        let mem = MemoryStorage::new();
        if !snapshot.is_empty() {
            mem.apply_snapshot(snapshot.clone())?;
        }
        mem.set_hard_state(HardState {
            term: contents.hard_state.term,
            vote: contents.hard_state.vote,
            commit: contents.hard_state.commit,
        });
        let mut entries = Vec::with_capacity(contents.entries.len());
        for e in contents.entries {
            let index = e.index();
            // Decoding from the record's own `Bytes` lets the entry's data share them instead of copying.
            let entry = Entry::decode(e.into_encoded())
                .map_err(|err| StorageError::Corrupt(format!("WAL entry {index}: {err}")))?;
            entries.push(entry);
        }
        mem.append(entries)?;
        Ok(Recovered {
            storage: DiskStorage {
                wal,
                wal_dir: dirs.wal.clone(),
                snapshotter,
                mem,
            },
            metadata,
            snapshot,
        })
    }

    /// Persists one Ready's snapshot, entries and HardState (fsynced when raft needs it), then
    /// makes them visible to raft.
    pub fn save_ready(
        &mut self,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        snapshot: Option<Snapshot>,
    ) -> Result<(), StorageError> {
        if let Some(snap) = &snapshot {
            self.save_snapshot_files(snap)?;
        }
        // Index and term come from the entries raft hands us; the WAL does not decode them again.
        let wal_entries: Vec<WalEntry> = entries
            .iter()
            .map(|e| WalEntry::new(e.index, e.term, Bytes::from(e.encode_to_vec())))
            .collect();
        let state = hard_state.as_ref().map(to_wal_state).unwrap_or_default();
        self.wal.save(&state, &wal_entries)?;
        if let Some(snap) = snapshot {
            self.mem.apply_snapshot(snap)?;
        }
        if let Some(hs) = hard_state {
            self.mem.set_hard_state(hs);
        }
        self.mem.append(entries)?;
        Ok(())
    }

    /// Takes a snapshot of the applied state at `index` and compacts the in-memory log so that
    /// `catch_up_entries` entries stay for slow followers. The caller has committed the backend
    /// up to `index`.
    pub fn snapshot_at(
        &mut self,
        index: u64,
        conf_state: raftpb::ConfState,
        data: Bytes,
        catch_up_entries: u64,
    ) -> Result<(), StorageError> {
        let snap = match self.mem.create_snapshot(index, Some(conf_state), data) {
            Ok(s) => s,
            // A newer snapshot arrived from the leader meanwhile.
            Err(raft::StorageError::SnapshotOutOfDate) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.save_snapshot_files(&snap)?;
        let compact_to = index.saturating_sub(catch_up_entries);
        if compact_to > 0 {
            match self.mem.compact(compact_to) {
                Ok(()) | Err(raft::StorageError::Compacted) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(
            index,
            compact_to,
            "saved snapshot and compacted the raft log"
        );
        Ok(())
    }

    fn save_snapshot_files(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.snapshotter
            .save_snap(snap.term(), snap.index(), &snap.encode_to_vec())?;
        self.wal
            .save_snapshot(SnapshotMarker::new(snap.index(), snap.term()))?;
        self.wal.release_lock_to(snap.index());
        let _ = wal::purge_segments(&self.wal_dir, KEEP_WAL_SEGMENTS);
        let _ = self.snapshotter.purge(KEEP_SNAPSHOTS);
        Ok(())
    }
}
