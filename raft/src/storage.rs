//! The read-only view raft has of the persisted log, and an in-memory implementation.
//!
//! Invariant of [`MemoryStorage`]: `entries[0]` is a dummy entry whose index and term are those of the last
//! snapshot (or 0/0), so `first_index() == entries[0].index + 1` and the term of the snapshot index stays known.

use std::sync::Arc;

use parking_lot::RwLock;
use raftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::error::StorageError;

pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// What raft restores on start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
}

/// The persisted log as raft reads it. Raft never writes through this trait: the application persists each
/// `Ready` and then makes the result visible here.
pub trait Storage {
    fn initial_state(&self) -> StorageResult<RaftState>;
    /// Entries in `[low, high)`, at most `max_size` bytes but always at least one entry if any is in range.
    fn entries(&self, low: u64, high: u64, max_size: u64) -> StorageResult<Vec<Entry>>;
    /// The term of entry `index`, which must be in `[first_index() - 1, last_index()]`.
    fn term(&self, index: u64) -> StorageResult<u64>;
    fn first_index(&self) -> StorageResult<u64>;
    fn last_index(&self) -> StorageResult<u64>;
    /// The most recent snapshot; `SnapshotTemporarilyUnavailable` tells raft to retry later.
    fn snapshot(&self) -> StorageResult<Snapshot>;
}

/// Total encoded size of `entries`, the measure of every byte limit.
pub(crate) fn entries_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| prost::Message::encoded_len(e) as u64)
        .sum()
}

/// Keeps the first entry and then as many as fit in `max_size` bytes.
pub(crate) fn limit_size(entries: &mut Vec<Entry>, max_size: u64) {
    if entries.len() <= 1 || max_size == u64::MAX {
        return;
    }
    let mut size = 0u64;
    let keep = entries
        .iter()
        .take_while(|e| {
            size += prost::Message::encoded_len(*e) as u64;
            size <= max_size
        })
        .count()
        .max(1);
    entries.truncate(keep);
}

#[derive(Debug)]
struct MemoryCore {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl MemoryCore {
    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last_index(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }
}

/// The log since the last snapshot, in memory, as etcd's `MemoryStorage`. Clones share the same log, so the
/// application can keep a handle for writes while raft owns another for reads.
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    core: Arc<RwLock<MemoryCore>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage {
            core: Arc::new(RwLock::new(MemoryCore {
                hard_state: HardState::default(),
                snapshot: Snapshot::default(),
                entries: vec![Entry::default()],
            })),
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.core.read().hard_state
    }

    pub fn set_hard_state(&self, hard_state: HardState) {
        self.core.write().hard_state = hard_state;
    }

    /// The snapshot this storage was last reset to (index 0 when none).
    pub fn current_snapshot(&self) -> Snapshot {
        self.core.read().snapshot.clone()
    }

    /// Replaces the whole log with `snapshot`; refuses one older than the current snapshot.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> StorageResult<()> {
        let mut core = self.core.write();
        if snapshot.index() < core.snapshot.index() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        core.entries = vec![Entry {
            term: snapshot.term(),
            index: snapshot.index(),
            ..Default::default()
        }];
        core.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the state machine at applied index `index` (which must still be in the log), for
    /// slow followers; the log itself is only shortened by [`MemoryStorage::compact`].
    pub fn create_snapshot(
        &self,
        index: u64,
        conf_state: Option<ConfState>,
        data: bytes::Bytes,
    ) -> StorageResult<Snapshot> {
        let mut core = self.core.write();
        if index <= core.snapshot.index() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        if index > core.last_index() {
            return Err(StorageError::Unavailable);
        }
        let term = core.entries[(index - core.offset()) as usize].term;
        let conf_state = conf_state.or_else(|| {
            core.snapshot
                .metadata
                .as_ref()
                .and_then(|m| m.conf_state.clone())
        });
        core.snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state,
                index,
                term,
            }),
        };
        Ok(core.snapshot.clone())
    }

    /// Discards the entries before `compact_index`; that entry becomes the dummy entry.
    pub fn compact(&self, compact_index: u64) -> StorageResult<()> {
        let mut core = self.core.write();
        let offset = core.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted);
        }
        if compact_index > core.last_index() {
            return Err(StorageError::Unavailable);
        }
        let keep_from = (compact_index - offset) as usize;
        core.entries.drain(..keep_from);
        let dummy = &mut core.entries[0];
        dummy.data = bytes::Bytes::new();
        dummy.entry_type = 0;
        Ok(())
    }

    /// Appends `entries`, replacing any conflicting suffix. Entries already compacted away are skipped. Given a
    /// `Vec`, the entries are moved in; given a slice, they are cloned.
    pub fn append(&self, entries: impl Into<Vec<Entry>>) -> StorageResult<()> {
        let mut entries = entries.into();
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let mut core = self.core.write();
        let first = core.offset() + 1;
        let last_new = first_new + entries.len() as u64 - 1;
        if last_new < first {
            return Ok(());
        }
        if first > first_new {
            entries.drain(..(first - first_new) as usize);
        }
        let start = entries[0].index;
        if start > core.last_index() + 1 {
            return Err(StorageError::MissingEntries {
                last_index: core.last_index(),
                appending_at: start,
            });
        }
        let keep = (start - core.offset()) as usize;
        core.entries.truncate(keep);
        core.entries.append(&mut entries);
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn initial_state(&self) -> StorageResult<RaftState> {
        let core = self.core.read();
        Ok(RaftState {
            hard_state: core.hard_state,
            conf_state: core.snapshot.conf_state(),
        })
    }

    fn entries(&self, low: u64, high: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        let core = self.core.read();
        let offset = core.offset();
        if low <= offset {
            return Err(StorageError::Compacted);
        }
        if high > core.last_index() + 1 || low > high {
            return Err(StorageError::Unavailable);
        }
        let mut out = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        let core = self.core.read();
        let offset = core.offset();
        if index < offset {
            return Err(StorageError::Compacted);
        }
        core.entries
            .get((index - offset) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> StorageResult<u64> {
        Ok(self.core.read().offset() + 1)
    }

    fn last_index(&self) -> StorageResult<u64> {
        Ok(self.core.read().last_index())
    }

    fn snapshot(&self) -> StorageResult<Snapshot> {
        Ok(self.core.read().snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::normal(*t, from + i as u64, vec![i as u8]))
            .collect()
    }

    fn storage_3_to_5() -> MemoryStorage {
        let s = MemoryStorage::new();
        s.apply_snapshot(Snapshot {
            metadata: Some(SnapshotMetadata {
                index: 3,
                term: 3,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        s.append(ents(4, &[4, 5])).unwrap();
        s
    }

    #[test]
    fn term_and_bounds_follow_the_dummy_entry() {
        let s = storage_3_to_5();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (4, 5));
        assert_eq!(s.term(2), Err(StorageError::Compacted));
        assert_eq!(s.term(3), Ok(3));
        assert_eq!(s.term(5), Ok(5));
        assert_eq!(s.term(6), Err(StorageError::Unavailable));
        assert_eq!(s.entries(3, 5, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(4, 7, u64::MAX), Err(StorageError::Unavailable));
    }

    #[test]
    fn entries_respect_max_size_but_return_at_least_one() {
        let s = storage_3_to_5();
        assert_eq!(s.entries(4, 6, 0).unwrap().len(), 1);
        assert_eq!(s.entries(4, 6, u64::MAX).unwrap().len(), 2);
        let one = prost::Message::encoded_len(&s.entries(4, 5, u64::MAX).unwrap()[0]) as u64;
        assert_eq!(s.entries(4, 6, one).unwrap().len(), 1);
    }

    #[test]
    fn append_truncates_conflicts_and_skips_compacted_prefix() {
        let s = storage_3_to_5();
        s.append(ents(2, &[2, 3, 9])).unwrap(); // 2..3 already compacted, 4 conflicts
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(4), Ok(9));
        assert!(s.append(ents(7, &[9])).is_err(), "a gap must be refused");
    }

    #[test]
    fn compact_and_create_snapshot() {
        let s = storage_3_to_5();
        assert_eq!(s.compact(3), Err(StorageError::Compacted));
        assert_eq!(s.compact(6), Err(StorageError::Unavailable));
        let snap = s
            .create_snapshot(
                5,
                Some(ConfState::with_voters([1])),
                bytes::Bytes::from_static(b"d"),
            )
            .unwrap();
        assert_eq!((snap.index(), snap.term()), (5, 5));
        s.compact(5).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap(), s.term(5)),
            (6, 5, Ok(5))
        );
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1]);
        assert_eq!(
            s.apply_snapshot(Snapshot {
                metadata: Some(SnapshotMetadata {
                    index: 4,
                    term: 4,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Err(StorageError::SnapshotOutOfDate)
        );
    }
}
