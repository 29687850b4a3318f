//! The raft log: the persisted part (read through [`Storage`]) followed by the unstable part that the next
//! `Ready` hands to the application for persistence.
//!
//! Invariants: `applied <= committed`; `committed <= last_index()`; entries are handed out for applying only up to
//! `min(committed, persisted)`, so nothing is applied that a crash could take back; `persisted` never exceeds the
//! last index and drops back when a conflicting append truncates the unstable tail.

use raftpb::{Entry, Snapshot};
use tracing::{error, warn};

use crate::error::{Result, StorageError};
use crate::storage::{limit_size, Storage};

/// Entries and an optional snapshot not yet persisted. `entries[i]` has index `offset + i`.
#[derive(Debug, Default)]
pub(crate) struct Unstable {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub offset: u64,
}

impl Unstable {
    fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.index() + 1)
    }

    fn maybe_last_index(&self) -> Option<u64> {
        match self.entries.len() {
            0 => self.snapshot.as_ref().map(|s| s.index()),
            n => Some(self.offset + n as u64 - 1),
        }
    }

    fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.index() == index)
                .map(|s| s.term());
        }
        let last = self.maybe_last_index()?;
        if index > last {
            return None;
        }
        if self.entries.is_empty() {
            return self.snapshot.as_ref().map(|s| s.term());
        }
        Some(self.entries[(index - self.offset) as usize].term)
    }

    fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset || self.maybe_term(index) != Some(term) || self.entries.is_empty() {
            return;
        }
        self.entries.drain(..(index + 1 - self.offset) as usize);
        self.offset = index + 1;
    }

    fn stable_snap(&mut self, index: u64) {
        if self.snapshot.as_ref().is_some_and(|s| s.index() == index) {
            self.snapshot = None;
        }
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.offset = snapshot.index() + 1;
        self.snapshot = Some(snapshot);
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let after = entries[0].index;
        let end = self.offset + self.entries.len() as u64;
        if after == end {
            self.entries.extend_from_slice(entries);
        } else if after <= self.offset {
            // Replaces every unstable entry; the caller lowers `persisted` for the storage part it overrides.
            self.offset = after;
            self.entries = entries.to_vec();
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(entries);
        }
    }

    fn slice(&self, low: u64, high: u64) -> &[Entry] {
        &self.entries[(low - self.offset) as usize..(high - self.offset) as usize]
    }
}

pub(crate) struct RaftLog<S: Storage> {
    pub store: S,
    pub unstable: Unstable,
    pub committed: u64,
    /// The highest index the application has told us is durable.
    pub persisted: u64,
    pub applied: u64,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(store: S) -> Result<RaftLog<S>> {
        let first = store.first_index()?;
        let last = store.last_index()?;
        Ok(RaftLog {
            store,
            unstable: Unstable {
                offset: last + 1,
                ..Default::default()
            },
            committed: first - 1,
            persisted: last,
            applied: first - 1,
        })
    }

    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.store.first_index().unwrap_or(1))
    }

    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.store.last_index().unwrap_or(0))
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// The term of entry `index`: 0 outside `[first_index() - 1, last_index()]`, an error if storage lost it.
    pub fn term(&self, index: u64) -> std::result::Result<u64, StorageError> {
        let dummy = self.first_index() - 1;
        if index < dummy || index > self.last_index() {
            return Ok(0);
        }
        if let Some(t) = self.unstable.maybe_term(index) {
            return Ok(t);
        }
        self.store.term(index)
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        let our_term = self.last_term();
        term > our_term || (term == our_term && last_index >= self.last_index())
    }

    /// The first index in `entries` whose term differs from ours (or that we lack); 0 if all match.
    fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// The largest index `<= index` whose term is `<= term`, with its term: the follower's hint (and the leader's
    /// probe) that lets a rejected append skip a whole term at once (etcd's findConflictByTerm).
    pub fn find_conflict_by_term(&self, mut index: u64, term: u64) -> (u64, u64) {
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > 0 => index -= 1,
                Ok(t) => return (index, t),
                Err(_) => return (index, 0),
            }
        }
    }

    /// Appends the entries of a MsgApp that follows entry `(index, log_term)`; returns the new last index, or
    /// `None` when our log does not contain that entry.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            if conflict <= self.committed {
                error!(
                    conflict,
                    committed = self.committed,
                    "entry conflicts with a committed entry; ignoring"
                );
                return None;
            }
            self.append(&entries[(conflict - (index + 1)) as usize..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        if first.index <= self.committed {
            error!(
                index = first.index,
                committed = self.committed,
                "refusing to overwrite committed entries"
            );
            return self.last_index();
        }
        if first.index <= self.persisted {
            self.persisted = first.index - 1;
        }
        self.unstable.truncate_and_append(entries);
        self.last_index()
    }

    pub fn commit_to(&mut self, to: u64) {
        if to > self.committed {
            if to > self.last_index() {
                warn!(
                    to,
                    last = self.last_index(),
                    "commit index beyond the log; ignoring"
                );
                return;
            }
            self.committed = to;
        }
    }

    pub fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    pub fn applied_to(&mut self, index: u64) {
        if index > self.applied && index <= self.committed {
            self.applied = index;
        }
    }

    pub fn stable_to(&mut self, index: u64, term: u64) {
        let matches = self.match_term(index, term);
        self.unstable.stable_to(index, term);
        if index > self.persisted && matches {
            self.persisted = index;
        }
    }

    pub fn stable_snap(&mut self, index: u64) {
        self.unstable.stable_snap(index);
        if index > self.persisted {
            self.persisted = index;
        }
    }

    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.index();
        self.persisted = self.persisted.min(index);
        self.committed = index;
        self.applied = self.applied.min(index);
        self.unstable.restore(snapshot);
    }

    pub fn snapshot(&self) -> std::result::Result<Snapshot, StorageError> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.store.snapshot(),
        }
    }

    /// Entries in `[low, high)` up to `max_size` bytes (at least one).
    pub fn slice(
        &self,
        low: u64,
        high: u64,
        max_size: u64,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let offset = self.unstable.offset;
        if low < offset {
            out = self.store.entries(low, high.min(offset), max_size)?;
            if (out.len() as u64) < high.min(offset) - low {
                return Ok(out); // storage stopped at the size limit
            }
        }
        if high > offset {
            out.extend_from_slice(self.unstable.slice(low.max(offset), high));
        }
        limit_size(&mut out, max_size);
        Ok(out)
    }

    pub fn entries_from(
        &self,
        low: u64,
        max_size: u64,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        self.slice(low, self.last_index() + 1, max_size)
    }

    /// The committed, durable, not yet applied entries.
    pub fn next_committed_entries(&self, max_size: u64) -> Vec<Entry> {
        let low = (self.applied + 1).max(self.first_index());
        let high = self.committed.min(self.persisted) + 1;
        if self.unstable.snapshot.is_some() || low >= high {
            return Vec::new();
        }
        self.slice(low, high, max_size).unwrap_or_else(|e| {
            error!(%e, low, high, "cannot read committed entries");
            Vec::new()
        })
    }

    pub fn has_next_committed_entries(&self) -> bool {
        let low = (self.applied + 1).max(self.first_index());
        self.unstable.snapshot.is_none() && low <= self.committed.min(self.persisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::normal(*t, from + i as u64, Vec::new()))
            .collect()
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemoryStorage> {
        let s = MemoryStorage::new();
        s.append(ents(1, terms)).unwrap();
        RaftLog::new(s).unwrap()
    }

    #[test]
    fn maybe_append_truncates_only_the_conflicting_suffix() {
        let mut log = log_with(&[1, 2, 3]);
        assert_eq!(log.maybe_append(1, 1, 0, &ents(2, &[2, 4])), Some(3));
        assert_eq!((log.term(2), log.term(3), log.persisted), (Ok(2), Ok(4), 2));
        assert_eq!(
            log.maybe_append(3, 9, 0, &ents(4, &[4])),
            None,
            "prev entry must match"
        );
    }

    #[test]
    fn maybe_append_never_rewrites_committed_entries() {
        let mut log = log_with(&[1, 2, 3]);
        log.commit_to(3);
        assert_eq!(log.maybe_append(1, 1, 3, &ents(2, &[5])), None);
        assert_eq!(log.term(2), Ok(2));
    }

    #[test]
    fn find_conflict_by_term_skips_a_term_at_a_time() {
        let log = log_with(&[1, 1, 2, 2, 5, 5]);
        assert_eq!(log.find_conflict_by_term(6, 3), (4, 2));
        assert_eq!(log.find_conflict_by_term(6, 5), (6, 5));
        assert_eq!(log.find_conflict_by_term(6, 0), (0, 0));
    }

    #[test]
    fn committed_entries_wait_for_persistence() {
        let mut log = log_with(&[1]);
        log.append(&ents(2, &[1, 1]));
        log.commit_to(3);
        assert_eq!(
            log.next_committed_entries(u64::MAX).len(),
            1,
            "only entry 1 is durable"
        );
        log.store.append(ents(2, &[1, 1])).unwrap();
        log.stable_to(3, 1);
        assert_eq!(log.next_committed_entries(u64::MAX).len(), 3);
        log.applied_to(3);
        assert!(!log.has_next_committed_entries());
    }

    #[test]
    fn up_to_date_compares_last_term_then_index() {
        let log = log_with(&[1, 2, 2]);
        assert!(log.is_up_to_date(1, 3));
        assert!(log.is_up_to_date(3, 2));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(9, 1));
    }

    #[test]
    fn slice_spans_storage_and_unstable_with_size_limit() {
        let mut log = log_with(&[1, 1]);
        log.append(&ents(3, &[2, 2]));
        assert_eq!(log.slice(1, 5, u64::MAX).unwrap().len(), 4);
        assert_eq!(log.slice(2, 4, 0).unwrap().len(), 1);
        assert_eq!(log.slice(1, 6, u64::MAX), Err(StorageError::Unavailable));
    }
}
