//! A writer process killed with SIGKILL at a random moment loses nothing it acknowledged: every index it printed
//! after `save` returned is present and intact when the WAL is reopened, round after round.

mod common;

use std::time::Duration;

use common::checked_indexes;
use testkit::Cli;
use wal::{SnapshotMarker, Wal, WalOptions};

const SEGMENT_SIZE: u64 = 64 * 1024;
/// Bound on the writer acknowledging its next save. The harness kills the writer if the test fails.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn entries_acknowledged_before_sigkill_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member/wal");
    let mut acknowledged = 0u64;
    // Vary how long each child runs so the kill lands at different points of the write loop and across cuts.
    for (round, wait_for) in [40u64, 170, 23, 260, 95, 7].into_iter().enumerate() {
        let mut child = Cli::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(&dir)
            .arg(SEGMENT_SIZE.to_string())
            .spawn()
            .expect("spawn writer");
        for _ in 0..wait_for {
            let line = child
                .next_line(LINE_TIMEOUT)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: writer exited early"));
            acknowledged = acknowledged.max(line.parse().unwrap());
        }
        let killed = child.kill().expect("SIGKILL the writer");
        // Lines printed before the kill landed were acknowledged too.
        for line in killed.stdout.lines() {
            acknowledged = acknowledged.max(line.parse().unwrap());
        }
        assert!(!killed.success(), "round {round}: the writer was killed");

        let options = WalOptions {
            segment_size: SEGMENT_SIZE,
        };
        let (wal, contents) = Wal::open_with_options(&dir, SnapshotMarker::default(), &options)
            .unwrap_or_else(|err| panic!("round {round}: reopen failed: {err}"));
        let indexes = checked_indexes(&contents);
        let last = indexes.last().copied().unwrap_or(0);
        assert_eq!(
            indexes,
            (1..=last).collect::<Vec<_>>(),
            "round {round}: contiguous"
        );
        assert!(
            last >= acknowledged,
            "round {round}: acknowledged {acknowledged}, found only {last}"
        );
        assert_eq!(contents.metadata.as_ref(), b"crash-test");
        assert!(contents.hard_state.commit <= last);
        drop(wal);
    }
    let segments = common::segment_files(&dir).len();
    assert!(
        segments > 1,
        "the rounds crossed segment cuts ({segments} segments)"
    );
}
