//! Behaviour of `Snapshotter`: save and load, broken files skipped and renamed, purge, database files.

use std::path::Path;

use proptest::prelude::*;
use snap::{Snapshot, Snapshotter};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn the_newest_snapshot_is_loaded_with_term_and_index_from_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path().join("member/snap")).unwrap();
    assert_eq!(snapshotter.load_newest().unwrap(), None);
    snapshotter.save_snap(1, 10, b"at ten").unwrap();
    snapshotter.save_snap(2, 0x20, b"at thirty-two").unwrap();
    snapshotter.save_snap(1, 15, b"at fifteen").unwrap();
    assert_eq!(
        names(snapshotter.dir()),
        vec![
            "0000000000000001-000000000000000a.snap",
            "0000000000000001-000000000000000f.snap",
            "0000000000000002-0000000000000020.snap",
        ]
    );
    let newest = snapshotter.load_newest().unwrap().unwrap();
    assert_eq!(
        newest,
        Snapshot {
            term: 2,
            index: 0x20,
            data: bytes::Bytes::from_static(b"at thirty-two")
        }
    );
}

#[test]
fn a_broken_newest_snapshot_is_renamed_and_the_next_one_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    snapshotter.save_snap(1, 1, b"first").unwrap();
    snapshotter.save_snap(1, 2, b"second").unwrap();
    let newest = snapshotter.save_snap(1, 3, b"third").unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&newest, &bytes).unwrap();
    // An empty file (a crash in etcd's in-place write) is broken too.
    let empty = tmp.path().join("0000000000000001-0000000000000004.snap");
    std::fs::write(&empty, b"").unwrap();

    let loaded = snapshotter.load_newest().unwrap().unwrap();
    assert_eq!((loaded.index, loaded.data.as_ref()), (2, &b"second"[..]));
    assert_eq!(
        names(tmp.path()),
        vec![
            "0000000000000001-0000000000000001.snap",
            "0000000000000001-0000000000000002.snap",
            "0000000000000001-0000000000000003.snap.broken",
            "0000000000000001-0000000000000004.snap.broken",
        ]
    );
}

#[test]
fn an_empty_snapshot_is_refused_rather_than_written_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    assert!(matches!(
        snapshotter.save_snap(1, 1, b""),
        Err(snap::Error::Empty(_))
    ));
    assert!(names(tmp.path()).is_empty());
}

#[test]
fn every_snapshot_broken_means_none() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    std::fs::write(
        tmp.path().join("0000000000000001-0000000000000001.snap"),
        b"\xff\xff",
    )
    .unwrap();
    assert_eq!(snapshotter.load_newest().unwrap(), None);
}

#[test]
fn load_newest_matching_skips_snapshots_the_wal_does_not_know() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    snapshotter.save_snap(1, 5, b"five").unwrap();
    snapshotter.save_snap(1, 9, b"nine").unwrap();
    let wal_markers = [(1u64, 5u64)];
    let loaded = snapshotter
        .load_newest_matching(|term, index| wal_markers.contains(&(term, index)))
        .unwrap()
        .unwrap();
    assert_eq!(loaded.index, 5);
    assert_eq!(
        names(tmp.path()).len(),
        2,
        "an unmatched snapshot is not broken"
    );
}

#[test]
fn purge_keeps_the_newest_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    for index in 1..=6 {
        snapshotter.save_snap(1, index, b"x").unwrap();
    }
    let removed = snapshotter.purge(2).unwrap();
    assert_eq!(removed.len(), 4);
    assert_eq!(
        names(tmp.path()),
        vec![
            "0000000000000001-0000000000000005.snap",
            "0000000000000001-0000000000000006.snap",
        ]
    );
    assert!(snapshotter.purge(2).unwrap().is_empty());
}

#[test]
fn a_received_database_is_saved_whole_under_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    let db: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let (path, received) = snapshotter.save_db(0x42, &mut db.as_slice()).unwrap();
    assert_eq!(received, db.len() as u64);
    assert_eq!(path.file_name().unwrap(), "0000000000000042.snap.db");
    assert_eq!(std::fs::read(&path).unwrap(), db);
    assert_eq!(snapshotter.db_path(0x42).unwrap(), path);
    assert!(matches!(
        snapshotter.db_path(0x43),
        Err(snap::Error::NoDbSnapshot(0x43))
    ));
    assert_eq!(
        names(tmp.path()),
        vec!["0000000000000042.snap.db"],
        "no temporary file left"
    );

    // A second copy for the same index leaves the first in place.
    let (_, again) = snapshotter.save_db(0x42, &mut &b"other"[..]).unwrap();
    assert_eq!(again, 5);
    assert_eq!(std::fs::read(&path).unwrap(), db);
}

#[test]
fn a_failed_database_transfer_leaves_no_file() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            self.0 -= 1;
            buf[0] = 7;
            Ok(1)
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    assert!(snapshotter.save_db(9, &mut Failing(100)).is_err());
    assert!(names(tmp.path()).is_empty());
    assert!(snapshotter.db_path(9).is_err());
}

#[test]
fn older_databases_are_released_and_leftover_temporary_files_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshotter = Snapshotter::new(tmp.path()).unwrap();
    for index in [3, 7, 9] {
        snapshotter.save_db(index, &mut &b"db"[..]).unwrap();
    }
    let removed = snapshotter.release_dbs_before(7).unwrap();
    assert_eq!(removed, vec![tmp.path().join("0000000000000003.snap.db")]);

    std::fs::write(
        tmp.path()
            .join("tmp.0000000000000001-0000000000000001.snap"),
        b"half",
    )
    .unwrap();
    std::fs::write(tmp.path().join("tmp123456"), b"half a db").unwrap();
    Snapshotter::new(tmp.path()).unwrap();
    assert_eq!(
        names(tmp.path()),
        vec!["0000000000000007.snap.db", "0000000000000009.snap.db"]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A snapshot file damaged at any byte is never loaded as data it does not hold.
    #[test]
    fn a_damaged_snapshot_is_never_misread(
        data in proptest::collection::vec(any::<u8>(), 1..600),
        at in any::<prop::sample::Index>(),
        mask in 1..=255u8,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let snapshotter = Snapshotter::new(tmp.path()).unwrap();
        snapshotter.save_snap(1, 1, b"older").unwrap();
        let path = snapshotter.save_snap(1, 2, &data).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        std::fs::write(&path, &bytes).unwrap();
        let loaded = snapshotter.load_newest().unwrap().unwrap();
        if loaded.index == 2 {
            prop_assert_eq!(loaded.data.as_ref(), data.as_slice());
        } else {
            prop_assert_eq!(loaded.data.as_ref(), b"older");
        }
    }
}
