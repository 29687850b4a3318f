//! Property tests of the decoder entry point the fuzz target drives (`wal::fuzzing::replay_single_segment`),
//! runnable on stable: arbitrary bytes never panic, a damaged log never yields anything but a prefix of what was
//! written, and random save sequences read back exactly as a simple model predicts.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use wal::fuzzing::replay_single_segment;
use wal::testing::raft_entry;
use wal::{HardState, SnapshotMarker, Wal, WalEntry, WalOptions};

/// A valid one-segment WAL and the entries in it.
fn reference() -> &'static (Vec<u8>, Vec<WalEntry>) {
    static REFERENCE: OnceLock<(Vec<u8>, Vec<WalEntry>)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let options = WalOptions {
            segment_size: 32 * 1024,
        };
        let mut wal = Wal::create_with_options(&dir, b"meta", &options).unwrap();
        let entries: Vec<WalEntry> = (1..=40)
            .map(|i| raft_entry(1, i, &vec![i as u8; (i as usize * 13) % 200]))
            .collect();
        for chunk in entries.chunks(3) {
            let state = HardState {
                term: 1,
                vote: 1,
                commit: chunk[0].index(),
            };
            wal.save(&state, chunk).unwrap();
        }
        drop(wal);
        let bytes = std::fs::read(common::segment_files(&dir)[0].clone()).unwrap();
        assert_eq!(replay_single_segment(&bytes).unwrap().entries, entries);
        (bytes, entries)
    })
}

fn used_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

#[derive(Debug, Clone)]
enum Damage {
    Set { at: usize, value: u8 },
    Truncate { at: usize },
    Zero { from: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    let len = used_len(&reference().0) + 64;
    prop_oneof![
        4 => (0..len, any::<u8>()).prop_map(|(at, value)| Damage::Set { at, value }),
        1 => (0..len).prop_map(|at| Damage::Truncate { at }),
        1 => (0..len, 1..600usize).prop_map(|(from, len)| Damage::Zero { from, len }),
        1 => (0..len, proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    match damage {
        Damage::Set { at, value } => {
            if let Some(byte) = bytes.get_mut(*at) {
                *byte = *value;
            }
        }
        Damage::Truncate { at } => bytes.truncate(*at),
        Damage::Zero { from, len } => {
            let end = (*from + *len).min(bytes.len());
            bytes[(*from).min(end)..end].fill(0);
        }
        Damage::Insert {
            at,
            bytes: inserted,
        } => {
            let at = (*at).min(bytes.len());
            bytes.splice(at..at, inserted.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // The same check as the cargo-fuzz target in `wal/fuzz`.
        if let Ok(contents) = replay_single_segment(&bytes) {
            for (position, entry) in contents.entries.iter().enumerate() {
                prop_assert_eq!(entry.index(), position as u64 + 1);
            }
        }
    }

    #[test]
    fn arbitrary_frames_never_panic(
        words in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8)
    ) {
        // Plausible-looking frames reach deeper into the decoder than uniform noise.
        let mut bytes = Vec::new();
        for (word, body) in words {
            bytes.extend_from_slice(&(word & 0xff00_0000_0000_00ff).to_le_bytes());
            bytes.extend_from_slice(&body);
        }
        let _ = replay_single_segment(&bytes);
    }

    #[test]
    fn a_damaged_log_reads_as_a_prefix_or_not_at_all(damages in proptest::collection::vec(damage(), 1..4)) {
        let (original, entries) = reference();
        let mut bytes = original.clone();
        for damage in &damages {
            apply(&mut bytes, damage);
        }
        if let Ok(contents) = replay_single_segment(&bytes) {
            let n = contents.entries.len();
            prop_assert!(n <= entries.len());
            prop_assert_eq!(&contents.entries[..], &entries[..n]);
            prop_assert_eq!(contents.metadata.as_ref(), b"meta");
        }
    }
}

#[derive(Debug, Clone)]
struct Save {
    /// How far before the next index the batch starts (0: append; more: overwrite an uncommitted suffix).
    back: u64,
    sizes: Vec<usize>,
    commit_only: bool,
}

fn saves() -> impl Strategy<Value = Vec<Save>> {
    proptest::collection::vec(
        (
            prop_oneof![6 => Just(0u64), 1 => 1..4u64],
            proptest::collection::vec(0..700usize, 0..6),
            any::<bool>(),
        )
            .prop_map(|(back, sizes, commit_only)| Save {
                back,
                sizes,
                commit_only,
            }),
        1..25,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_saves_read_back_as_the_model_predicts(saves in saves(), segment_kib in 1u64..6) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let options = WalOptions { segment_size: segment_kib * 1024 };
        let mut wal = Wal::create_with_options(&dir, b"m", &options).unwrap();
        let mut model: Vec<WalEntry> = Vec::new();
        let mut state = HardState { term: 1, vote: 1, commit: 0 };
        let mut saved_state = HardState::default();
        let mut term = 1;
        for save in &saves {
            if save.commit_only {
                state.commit = model.len() as u64;
                wal.save(&state, &[]).unwrap();
                saved_state = state;
                continue;
            }
            let first = (model.len() as u64 + 1).saturating_sub(save.back).max(1);
            if save.back > 0 {
                term += 1;
                state.term = term;
            }
            let batch: Vec<WalEntry> = save
                .sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| {
                    let index = first + i as u64;
                    raft_entry(term, index, &vec![(index % 251) as u8; size])
                })
                .collect();
            if batch.is_empty() {
                continue;
            }
            model.truncate(first as usize - 1);
            model.extend(batch.iter().cloned());
            wal.save(&state, &batch).unwrap();
            saved_state = state;
        }
        drop(wal);
        let (_, contents) = Wal::open_with_options(&dir, SnapshotMarker::default(), &options).unwrap();
        prop_assert_eq!(contents.entries, model);
        prop_assert_eq!(contents.hard_state, saved_state);
    }
}
