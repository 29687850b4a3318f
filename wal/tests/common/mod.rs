//! Shared helpers of the WAL integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wal::testing::{pattern_payload, raft_entry, raft_entry_data};
use wal::{HardState, WalContents, WalEntry};

pub fn entry(term: u64, index: u64) -> WalEntry {
    raft_entry(term, index, &pattern_payload(index))
}

pub fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<WalEntry> {
    indexes.map(|index| entry(term, index)).collect()
}

pub fn state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
    }
}

/// The indexes of `contents`, checking that every entry carries the payload written for its index.
pub fn checked_indexes(contents: &WalContents) -> Vec<u64> {
    contents
        .entries
        .iter()
        .map(|e| {
            assert_eq!(
                raft_entry_data(e).as_deref(),
                Some(pattern_payload(e.index()).as_slice()),
                "entry {} payload",
                e.index()
            );
            e.index()
        })
        .collect()
}

/// Segment files of a WAL directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}
