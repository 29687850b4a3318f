//! The `wal` crate's byte compatibility with etcd itself (Debian's etcd 3.4, which CI installs): it reads a WAL
//! written by a real etcd that was killed with SIGKILL, appends to it, and etcd then restarts from the appended
//! WAL, which proves that it accepts our frames and CRC chain. The harness runs etcd on reserved 127.0.0.1
//! ports and kills it when the test ends. (It lives here so that `wal` does not depend on the harness.)

use std::time::Duration;

use crate::common;

use common::real_etcdctl_ok;
use integration::{Cluster, ClusterSpec};
use wal::{SnapshotMarker, Wal};

/// Bound on etcd becoming healthy again after a restart.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn reads_etcd_wal_and_etcd_reads_ours() {
    let mut cluster = Cluster::start(ClusterSpec::new(1)).expect("start a one-member etcd");
    let wal_dir = cluster.data_dir(0).join("member/wal");

    for i in 1..=3 {
        let put = real_etcdctl_ok(
            &cluster,
            &[
                "put",
                &format!("compat-key-{i}"),
                &format!("compat-value-{i}"),
            ],
        );
        assert_eq!(put, "OK\n");
    }
    // Acknowledged puts were fsynced to the WAL; SIGKILL gives no chance to tidy up.
    cluster.kill(0).unwrap();

    let (mut wal, contents) =
        Wal::open(&wal_dir, SnapshotMarker::default()).expect("open etcd's WAL");
    assert!(!contents.metadata.is_empty(), "etcd's member metadata");
    let last = contents.entries.last().expect("etcd wrote entries").clone();
    for (position, entry) in contents.entries.iter().enumerate() {
        assert_eq!(entry.index(), position as u64 + 1);
    }
    assert!(contents.hard_state.term >= 1 && contents.hard_state.commit >= 4);
    for i in 1..=3 {
        let value = format!("compat-value-{i}");
        assert!(
            contents
                .entries
                .iter()
                .any(|e| contains(e.encoded(), value.as_bytes())),
            "the put of {value} is in the WAL"
        );
    }

    // Append an empty normal entry (what a new leader proposes) in etcd's current term.
    let appended = wal::testing::raft_entry(last.term(), last.index() + 1, b"");
    wal.save(&contents.hard_state, std::slice::from_ref(&appended))
        .unwrap();
    wal.close().unwrap();

    cluster.restart(0).unwrap();
    cluster
        .wait_healthy(0, RESTART_TIMEOUT)
        .expect("etcd restarts from our WAL");
    let got = real_etcdctl_ok(&cluster, &["get", "compat-key-3"]);
    assert!(
        got.contains("compat-value-3"),
        "etcd restarted from our WAL: {got}"
    );
    cluster.kill(0).unwrap();

    let (_, reread) = Wal::open(&wal_dir, SnapshotMarker::default()).unwrap();
    let position = appended.index() as usize - 1;
    assert_eq!(
        reread.entries[position], appended,
        "etcd kept the entry we appended"
    );
}
