//! A process applying raft entries is killed with SIGKILL; after reopening, every committed
//! entry is there exactly once and re-applying the log is a no-op up to the consistent index.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendConfig};
use mvcc::*;
use testkit::Cli;

const CHILD_ENV: &str = "MVCC_KILL9_CHILD_DIR";
/// Bound on the child acknowledging its next commit. The harness kills the child if the test fails.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn open(dir: &std::path::Path, batch_interval: Duration) -> Store {
    let config = BackendConfig {
        batch_interval,
        batch_limit: 100,
    };
    let backend = Arc::new(Backend::open(dir.join("db"), config, common::TEST_TABLES).unwrap());
    Store::open(backend, common::fast_config()).unwrap()
}

fn counter(s: &Store) -> u64 {
    s.range(&RangeRequest::key("counter"))
        .unwrap()
        .kvs
        .first()
        .map_or(0, |kv| String::from_utf8_lossy(&kv.value).parse().unwrap())
}

/// Entry `index` increments the counter (not idempotent) and records itself.
fn apply_entry(s: &Store, index: u64) -> Option<i64> {
    s.apply(index, 1, |txn| {
        let current = txn
            .range(&RangeRequest::key("counter"))
            .unwrap()
            .kvs
            .first()
            .map_or(0u64, |kv| {
                String::from_utf8_lossy(&kv.value).parse().unwrap()
            });
        txn.put(PutRequest::new("counter", (current + 1).to_string()))
            .unwrap();
        txn.put(PutRequest::new(format!("entry/{index:08}"), "applied"))
            .unwrap();
        txn.begin_revision() + 1
    })
}

#[test]
#[ignore = "run as a child process by kill9_then_replay_applies_every_entry_exactly_once"]
fn kill9_child_applier() {
    let dir = std::env::var(CHILD_ENV).expect("child run without its directory");
    let s = open(std::path::Path::new(&dir), Duration::from_millis(3));
    let start = s.consistent_index().0 + 1;
    for index in start.. {
        apply_entry(&s, index).expect("fresh entry applied");
        if index % 5 == 0 {
            s.commit().unwrap();
            println!("ACK {index}");
        }
    }
}

#[test]
fn kill9_then_replay_applies_every_entry_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let mut child = Cli::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "kill9_child_applier",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .spawn()
            .unwrap();
        let mut acked = 0;
        while let Some(line) = child.next_line(LINE_TIMEOUT).unwrap() {
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.trim().parse().unwrap();
                if acked >= 150 * (round + 1) + 7 * round {
                    break;
                }
            }
        }
        // Let it run on a little (a different while each round), so the kill also lands
        // between acknowledgements and during background commits.
        std::thread::sleep(Duration::from_millis(2 * round));
        child.kill().expect("SIGKILL the child");

        let s = open(dir.path(), Duration::from_secs(3600));
        let (ci, _) = s.consistent_index();
        println!("round {round}: acknowledged {acked}, recovered consistent index {ci}");
        assert!(
            ci >= acked,
            "lost acknowledged entries: index {ci} < {acked}"
        );
        assert_eq!(
            counter(&s),
            ci,
            "every entry up to the consistent index applied once"
        );
        let entries = s
            .range(&RangeRequest::range("entry/", prefix_range_end(b"entry/")))
            .unwrap();
        assert_eq!(entries.count as u64, ci);
        // The raft log is replayed from an older point: nothing is applied twice.
        let before = s.current_revision();
        for index in ci.saturating_sub(40).max(1)..=ci {
            assert_eq!(apply_entry(&s, index), None);
        }
        assert_eq!(s.current_revision(), before);
        for index in ci + 1..=ci + 3 {
            assert!(apply_entry(&s, index).is_some());
        }
        assert_eq!(counter(&s), ci + 3);
        s.commit().unwrap();
    }
}
