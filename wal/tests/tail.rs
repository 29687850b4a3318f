//! The end of a WAL cut, zeroed or bit-flipped at every offset of its last records: each damaged copy is either
//! repaired (a prefix of what was written, still writable) or refused, never read as something else.

mod common;

use std::path::Path;

use common::segment_files;
use wal::{HardState, SnapshotMarker, Wal, WalContents, WalEntry, WalOptions};

const OPTIONS: WalOptions = WalOptions {
    segment_size: 16 * 1024,
};

fn small_entry(index: u64) -> WalEntry {
    // Never-zero payloads: damage to any byte of an entry changes it.
    wal::testing::raft_entry(1, index, &[index as u8 | 1; 24])
}

struct Reference {
    segment: Vec<u8>,
    entries: Vec<WalEntry>,
    states: Vec<HardState>,
    /// Frames in file order: (start, end of the protobuf, end of the padding, record type).
    frames: Vec<(usize, usize, usize, u8)>,
}

fn reference() -> Reference {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut wal = Wal::create_with_options(&dir, b"meta", &OPTIONS).unwrap();
    let entries: Vec<WalEntry> = (1..=9).map(small_entry).collect();
    let mut states = Vec::new();
    for (batch, with_state) in [
        (0..3, true),
        (3..4, false),
        (4..6, true),
        (6..7, true),
        (7..9, true),
    ] {
        let state = HardState {
            term: 1,
            vote: 1,
            commit: batch.end as u64,
        };
        if with_state {
            states.push(state);
            wal.save(&state, &entries[batch]).unwrap();
        } else {
            wal.save(&HardState::default(), &entries[batch]).unwrap();
        }
    }
    // A commit-only state as the very last record.
    let last_state = HardState {
        term: 1,
        vote: 1,
        commit: 9,
    };
    states.push(last_state);
    wal.save(&last_state, &[]).unwrap();
    wal.close().unwrap();
    let segment = std::fs::read(&segment_files(&dir)[0]).unwrap();
    let frames = frames(&segment);
    Reference {
        segment,
        entries,
        states,
        frames,
    }
}

/// Walks the frames with etcd's layout, independently of the crate's decoder.
fn frames(segment: &[u8]) -> Vec<(usize, usize, usize, u8)> {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let word = u64::from_le_bytes(segment[at..at + 8].try_into().unwrap());
        if word == 0 {
            return frames;
        }
        let len = (word & ((1 << 56) - 1)) as usize;
        let top = (word >> 56) as usize;
        let pad = if top & 0x80 != 0 { top & 7 } else { 0 };
        assert_eq!(segment[at + 8], 0x08, "record starts with its type field");
        frames.push((at, at + 8 + len, at + 8 + len + pad, segment[at + 9]));
        at += 8 + len + pad;
    }
}

enum Outcome {
    Repaired(usize),
    Refused,
}

/// Opens the damaged `segment` and checks that what comes back, if anything, is a true prefix; a repaired WAL
/// must then take the next entry and return everything on the following open.
fn open_damaged(dir: &Path, segment: &[u8], reference: &Reference, append: bool) -> Outcome {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("0000000000000000-0000000000000000.wal"), segment).unwrap();
    let (mut wal, contents) = match Wal::open_with_options(dir, SnapshotMarker::default(), &OPTIONS)
    {
        Ok(opened) => opened,
        Err(_) => return Outcome::Refused,
    };
    let count = check_prefix(&contents, reference);
    if append {
        let next = small_entry(count as u64 + 1);
        wal.save(&HardState::default(), std::slice::from_ref(&next))
            .unwrap();
        drop(wal);
        let (_, reopened) = Wal::open_with_options(dir, SnapshotMarker::default(), &OPTIONS)
            .expect("a repaired WAL reopens after a write");
        assert_eq!(reopened.entries[..count], reference.entries[..count]);
        assert_eq!(reopened.entries[count..], [next]);
    }
    Outcome::Repaired(count)
}

fn check_prefix(contents: &WalContents, reference: &Reference) -> usize {
    let count = contents.entries.len();
    assert!(count <= reference.entries.len());
    assert_eq!(
        contents.entries[..],
        reference.entries[..count],
        "entries are a prefix"
    );
    assert_eq!(contents.metadata.as_ref(), b"meta");
    let state = contents.hard_state;
    assert!(
        state.is_empty() || reference.states.contains(&state),
        "a state that was written: {state:?}"
    );
    assert!(
        state.commit <= count as u64,
        "a state is never read without its entries"
    );
    count
}

/// Entries whose record ends (protobuf or frame, per `end`) at or before `cut`.
fn entries_before(
    reference: &Reference,
    cut: usize,
    end: impl Fn(&(usize, usize, usize, u8)) -> usize,
) -> usize {
    reference
        .frames
        .iter()
        .filter(|f| f.3 == 2 && end(f) <= cut)
        .count()
}

/// Start of the region under test: the last six records.
fn region_start(reference: &Reference) -> usize {
    reference.frames[reference.frames.len() - 6].0
}

fn used_len(reference: &Reference) -> usize {
    reference.frames.last().unwrap().2
}

#[test]
fn a_cut_at_every_offset_keeps_exactly_the_whole_records() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let header_end = reference.frames[2].2;
    for cut in region_start(&reference)..=used_len(&reference) {
        let outcome = open_damaged(&dir, &reference.segment[..cut], &reference, true);
        let expected = entries_before(&reference, cut, |f| f.2);
        match outcome {
            Outcome::Repaired(count) => assert_eq!(count, expected, "cut at {cut}"),
            Outcome::Refused => panic!("cut at {cut} (header ends at {header_end}) was refused"),
        }
    }
    // Inside the first segment's header records the WAL is unusable and must say so.
    for cut in 0..header_end {
        assert!(matches!(
            open_damaged(&dir, &reference.segment[..cut], &reference, false),
            Outcome::Refused
        ));
    }
}

#[test]
fn zeros_from_every_offset_keep_exactly_the_whole_records() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    for cut in region_start(&reference)..=used_len(&reference) {
        let mut segment = reference.segment.clone();
        segment[cut..].fill(0);
        // Zeroed padding is still valid, so a record survives once its protobuf is whole.
        let expected = entries_before(&reference, cut, |f| f.1);
        match open_damaged(&dir, &segment, &reference, true) {
            Outcome::Repaired(count) => assert_eq!(count, expected, "zeros from {cut}"),
            Outcome::Refused => panic!("zeros from {cut} were refused"),
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_records_is_repaired_or_refused_never_misread() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let last = *reference.frames.last().unwrap();
    let (mut repaired, mut refused) = (0, 0);
    for offset in region_start(&reference)..used_len(&reference) + 16 {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut segment = reference.segment.clone();
            segment[offset] ^= mask;
            match open_damaged(&dir, &segment, &reference, false) {
                Outcome::Repaired(_) => repaired += 1,
                Outcome::Refused => {
                    refused += 1;
                    continue;
                }
            }
            // Damage inside a protobuf before the last record is never taken for a tear.
            let in_earlier_record = reference
                .frames
                .iter()
                .any(|f| f.0 < last.0 && offset >= f.0 + 8 && offset < f.1);
            assert!(
                !in_earlier_record,
                "flip {mask:#x} at {offset} was not refused"
            );
        }
    }
    assert!(
        repaired > 0 && refused > 0,
        "{repaired} repaired, {refused} refused"
    );
}
