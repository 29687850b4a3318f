//! Behaviour of `Wal`: create, save, open at a snapshot, overwrite, segments, locks, purge, repair, corruption.

mod common;

use common::*;
use wal::{purge_segments, Error, HardState, SnapshotMarker, Wal, WalOptions};

const SMALL: WalOptions = WalOptions { segment_size: 4096 };

fn open_all(dir: &std::path::Path) -> Result<(Wal, wal::WalContents), Error> {
    Wal::open_with_options(dir, SnapshotMarker::default(), &SMALL)
}

#[test]
fn reopen_returns_metadata_hard_state_and_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member/wal");
    let mut wal = Wal::create_with_options(&dir, b"node-1", &SMALL).unwrap();
    wal.save(&state(1, 0), &entries(1, 1..=3)).unwrap();
    wal.save(&state(1, 3), &entries(1, 4..=5)).unwrap();
    wal.close().unwrap();

    let (wal, contents) = open_all(&dir).unwrap();
    assert_eq!(contents.metadata.as_ref(), b"node-1");
    assert_eq!(contents.hard_state, state(1, 3));
    assert_eq!(checked_indexes(&contents), vec![1, 2, 3, 4, 5]);
    assert_eq!(wal.last_index(), 5);
    assert_eq!(
        segment_files(&dir)[0].file_name().unwrap(),
        "0000000000000000-0000000000000000.wal"
    );
}

#[test]
fn create_refuses_a_directory_that_holds_a_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    assert!(!wal::exists(&dir));
    Wal::create(&dir, b"").unwrap().close().unwrap();
    assert!(wal::exists(&dir));
    assert!(matches!(
        Wal::create(&dir, b""),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn create_accepts_an_existing_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with_options(tmp.path(), b"m", &SMALL).unwrap();
    wal.save(&state(1, 0), &entries(1, 1..=1)).unwrap();
    drop(wal);
    let (_, contents) = open_all(tmp.path()).unwrap();
    assert_eq!(checked_indexes(&contents), vec![1]);
}

#[test]
fn open_at_a_snapshot_returns_only_later_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    wal.save(&state(1, 10), &entries(1, 1..=10)).unwrap();
    wal.save_snapshot(SnapshotMarker::new(5, 1)).unwrap();
    wal.save(&state(1, 12), &entries(1, 11..=12)).unwrap();
    drop(wal);

    let (_, contents) = Wal::open_with_options(&dir, SnapshotMarker::new(5, 1), &SMALL).unwrap();
    assert_eq!(checked_indexes(&contents), (6..=12).collect::<Vec<_>>());
    assert_eq!(contents.hard_state, state(1, 12));
}

#[test]
fn open_refuses_a_missing_or_mismatched_snapshot_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    wal.save(&state(2, 4), &entries(2, 1..=4)).unwrap();
    wal.save_snapshot(SnapshotMarker::new(3, 2)).unwrap();
    drop(wal);
    assert!(matches!(
        Wal::open_with_options(&dir, SnapshotMarker::new(3, 1), &SMALL),
        Err(Error::SnapshotMismatch {
            index: 3,
            expected: 1,
            found: 2
        })
    ));
    assert!(matches!(
        Wal::open_with_options(&dir, SnapshotMarker::new(4, 2), &SMALL),
        Err(Error::SnapshotNotFound { index: 4, term: 2 })
    ));
}

#[test]
fn a_later_entry_overwrites_the_same_index_and_everything_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    wal.save(&state(1, 1), &entries(1, 1..=5)).unwrap();
    // A new leader in term 2 replaces the uncommitted suffix from index 3.
    wal.save(&state(2, 1), &entries(2, 3..=4)).unwrap();
    assert_eq!(wal.last_index(), 4);
    drop(wal);
    let (wal, contents) = open_all(&dir).unwrap();
    assert_eq!(checked_indexes(&contents), vec![1, 2, 3, 4]);
    let terms: Vec<u64> = contents.entries.iter().map(|e| e.term()).collect();
    assert_eq!(terms, vec![1, 1, 2, 2]);
    assert_eq!(wal.last_index(), 4);
}

#[test]
fn save_refuses_entries_that_would_leave_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create_with_options(tmp.path().join("wal"), b"m", &SMALL).unwrap();
    wal.save(&state(1, 0), &entries(1, 1..=2)).unwrap();
    assert!(matches!(
        wal.save(&state(1, 0), &entries(1, 4..=4)),
        Err(Error::NonContiguous {
            found: 4,
            max_expected: 3
        })
    ));
    let skipping = vec![entry(1, 3), entry(1, 5)];
    assert!(matches!(
        wal.save(&state(1, 0), &skipping),
        Err(Error::NonContiguous { found: 5, .. })
    ));
    // The refused calls wrote nothing: the WAL still takes the next entry.
    wal.save(&state(1, 0), &entries(1, 3..=3)).unwrap();
}

#[test]
fn a_commit_only_change_is_kept_after_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    wal.save(&state(1, 0), &entries(1, 1..=2)).unwrap();
    wal.save(&state(1, 2), &[]).unwrap();
    // An empty state without entries writes nothing at all.
    wal.save(&HardState::default(), &[]).unwrap();
    wal.close().unwrap();
    let (_, contents) = open_all(&dir).unwrap();
    assert_eq!(contents.hard_state, state(1, 2));
}

#[test]
fn segments_are_cut_at_the_size_named_after_the_next_index_and_preallocated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    for index in 1..=200 {
        wal.save(&state(1, index - 1), &entries(1, index..=index))
            .unwrap();
    }
    drop(wal);
    let files = segment_files(&dir);
    assert!(files.len() > 3, "{} segments", files.len());
    let (_, contents) = open_all(&dir).unwrap();
    assert_eq!(checked_indexes(&contents), (1..=200).collect::<Vec<_>>());

    for (seq, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let (seq_hex, index_hex) = name.strip_suffix(".wal").unwrap().split_once('-').unwrap();
        assert_eq!(u64::from_str_radix(seq_hex, 16).unwrap(), seq as u64);
        let len = std::fs::metadata(file).unwrap().len();
        if seq + 1 == files.len() {
            assert_eq!(len, SMALL.segment_size, "the tail is preallocated");
        } else {
            assert!(len >= SMALL.segment_size, "sealed at its used length {len}");
        }
        if seq > 0 {
            // Named after the first entry it holds, which follows the last entry of the previous segment.
            let first = u64::from_str_radix(index_hex, 16).unwrap();
            let here = std::fs::read(file).unwrap();
            let before = std::fs::read(&files[seq - 1]).unwrap();
            assert!(holds(&here, first) && !holds(&here, first - 1), "{name}");
            assert!(
                holds(&before, first - 1) && !holds(&before, first),
                "{name}"
            );
        }
    }
}

/// Whether a segment's bytes hold the record of entry `index` (records carry encoded entries verbatim).
fn holds(segment: &[u8], index: u64) -> bool {
    let needle = entry(1, index).into_encoded();
    segment.windows(needle.len()).any(|w| w == needle.as_ref())
}

#[test]
fn every_segment_carries_metadata_and_hard_state_for_opening_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"meta", &SMALL).unwrap();
    for index in 1..=100 {
        wal.save(&state(3, index), &entries(3, index..=index))
            .unwrap();
    }
    wal.save_snapshot(SnapshotMarker::new(100, 3)).unwrap();
    wal.release_lock_to(100);
    let purged = purge_segments(&dir, 1).unwrap();
    assert!(!purged.is_empty(), "old segments can be purged");
    wal.save(&state(3, 101), &entries(3, 101..=101)).unwrap();
    drop(wal);

    let (_, contents) = Wal::open_with_options(&dir, SnapshotMarker::new(100, 3), &SMALL).unwrap();
    assert_eq!(contents.metadata.as_ref(), b"meta");
    assert_eq!(contents.hard_state, state(3, 101));
    assert_eq!(checked_indexes(&contents), vec![101]);
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    assert!(matches!(open_all(&dir), Err(Error::Locked(_))));
    drop(wal);
    let (second, _) = open_all(&dir).unwrap();
    assert!(matches!(open_all(&dir), Err(Error::Locked(_))));
    drop(second);
}

#[test]
fn purge_stops_at_segments_still_locked_and_release_lock_to_frees_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    for index in 1..=150 {
        wal.save(&state(1, index), &entries(1, index..=index))
            .unwrap();
    }
    let before = segment_files(&dir);
    assert!(before.len() >= 4);
    assert!(purge_segments(&dir, 1).unwrap().is_empty(), "all locked");

    // Release up to the start of the third segment: the first is freed, the second may hold index - 1.
    let third_start = u64::from_str_radix(
        &before[2].file_name().unwrap().to_str().unwrap()[17..33],
        16,
    )
    .unwrap();
    wal.release_lock_to(third_start);
    let purged = purge_segments(&dir, 1).unwrap();
    assert_eq!(purged, vec![before[0].clone()]);
    assert_eq!(segment_files(&dir), before[1..].to_vec());

    wal.release_lock_to(u64::MAX);
    let purged = purge_segments(&dir, 1).unwrap();
    assert_eq!(purged.len(), before.len() - 2, "all but the tail");
    drop(wal);
}

#[test]
fn opening_with_a_missing_middle_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    for index in 1..=100 {
        wal.save(&state(1, index), &entries(1, index..=index))
            .unwrap();
    }
    drop(wal);
    let files = segment_files(&dir);
    std::fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        open_all(&dir),
        Err(Error::SequenceGap {
            expected: 1,
            found: 2,
            ..
        })
    ));
}

#[test]
fn a_torn_last_record_is_truncated_and_the_wal_stays_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    wal.save(&state(1, 0), &entries(1, 1..=3)).unwrap();
    let end_before_last = tail_end(&dir);
    wal.save(&state(1, 0), &entries(1, 4..=4)).unwrap();
    let end = tail_end(&dir);
    drop(wal);

    // Zero the second half of entry 4's record, as a write interrupted mid-way leaves it.
    let tail = segment_files(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&tail).unwrap();
    let middle = (end_before_last + end) / 2;
    bytes[middle..end].fill(0);
    std::fs::write(&tail, &bytes).unwrap();

    let (mut wal, contents) = open_all(&dir).unwrap();
    assert_eq!(checked_indexes(&contents), vec![1, 2, 3]);
    assert_eq!(wal.last_index(), 3);
    wal.save(&state(1, 4), &entries(2, 4..=5)).unwrap();
    drop(wal);
    let (_, contents) = open_all(&dir).unwrap();
    assert_eq!(checked_indexes(&contents), vec![1, 2, 3, 4, 5]);
    assert_eq!(contents.hard_state, state(1, 4));
}

#[test]
fn corruption_before_the_tail_is_refused_with_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    for index in 1..=60 {
        wal.save(&state(1, index), &entries(1, index..=index))
            .unwrap();
    }
    drop(wal);
    let first = segment_files(&dir)[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    match open_all(&dir) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, first);
            assert!(offset <= 1000 && 1000 - offset < 400, "offset {offset}");
            let message = Error::Corrupt {
                file,
                offset,
                reason: wal::Corruption::CrcMismatch,
            }
            .to_string();
            assert!(message.contains("0000000000000000-0000000000000000.wal"));
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupted record was read"),
    }
}

#[test]
fn stale_segment_temp_files_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    Wal::create_with_options(&dir, b"m", &SMALL).unwrap();
    let stale = dir.join("0000000000000001.wal.tmp");
    std::fs::write(&stale, b"half a segment").unwrap();
    let (_wal, _) = open_all(&dir).unwrap();
    assert!(!stale.exists());
}

/// Offset just past the last non-zero byte of the tail segment, rounded up to the 8-byte frame alignment.
fn tail_end(dir: &std::path::Path) -> usize {
    let tail = segment_files(dir).pop().unwrap();
    let bytes = std::fs::read(tail).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    (last + 8) / 8 * 8
}
