//! A writer process killed with SIGKILL at a random moment loses nothing it acknowledged: every index it printed
//! after `save` returned is present and intact when the WAL is reopened, round after round.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::checked_indexes;
use wal::{SnapshotMarker, Wal, WalOptions};

const SEGMENT_SIZE: u64 = 64 * 1024;

/// Makes sure a failing assertion never leaves a writer running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn entries_acknowledged_before_sigkill_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member/wal");
    let mut acknowledged = 0u64;
    // Vary how long each child runs so the kill lands at different points of the write loop and across cuts.
    for (round, wait_for) in [40u64, 170, 23, 260, 95, 7].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(&dir)
            .arg(SEGMENT_SIZE.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let mut child = KillOnDrop(child);
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < wait_for {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("round {round}: writer exited early"))
                .unwrap();
            acknowledged = acknowledged.max(line.parse().unwrap());
            seen += 1;
        }
        child.0.kill().expect("SIGKILL");
        // Lines printed before the kill landed were acknowledged too.
        for line in lines {
            acknowledged = acknowledged.max(line.unwrap().parse().unwrap());
        }
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "round {round}: the writer was killed");

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
