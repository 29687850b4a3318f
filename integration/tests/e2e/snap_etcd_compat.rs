//! The `snap` crate's compatibility with etcd itself (Debian's etcd 3.4, which CI installs): a `.snap` file
//! written by etcd loads with it, and etcd restarts from a `.snap` file written by it without calling it
//! broken. The harness runs etcd on reserved 127.0.0.1 ports and kills it when the test ends. (It lives here
//! so that `snap` does not depend on the harness.)

use std::path::Path;
use std::time::Duration;

use crate::common;

use common::real_etcdctl_ok;
use integration::{Cluster, ClusterSpec};
use snap::Snapshotter;

/// Bound on etcd writing its first snapshot, and on becoming healthy again after a restart.
const WAIT: Duration = Duration::from_secs(30);

fn snap_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".snap") && !n.ends_with(".snap.db"))
        .collect();
    names.sort();
    names
}

#[test]
fn loads_etcd_snapshots_and_etcd_loads_ours() {
    let spec = ClusterSpec {
        size: 1,
        extra_args: vec!["--snapshot-count".into(), "5".into()],
        ..ClusterSpec::new(1)
    };
    let mut cluster = Cluster::start(spec).expect("start a one-member etcd");
    let snap_dir = cluster.data_dir(0).join("member/snap");

    for i in 1..=12 {
        real_etcdctl_ok(&cluster, &["put", &format!("snap-key-{i}"), "v"]);
    }
    // etcd writes its snapshot file asynchronously after the apply that crossed --snapshot-count.
    testkit::eventually(WAIT, "etcd to write a snapshot", || {
        !snap_files(&snap_dir).is_empty()
    });
    real_etcdctl_ok(&cluster, &["put", "snap-key-last", "v"]);
    cluster.kill(0).unwrap();

    let snapshotter = Snapshotter::new(&snap_dir).unwrap();
    let snapshot = snapshotter
        .load_newest()
        .unwrap()
        .expect("etcd's snapshot loads");
    assert!(snapshot.index >= 5 && snapshot.term >= 1);
    assert!(!snapshot.data.is_empty());

    // Replace etcd's files with one written by this crate from the same bytes.
    for name in snap_files(&snap_dir) {
        std::fs::remove_file(snap_dir.join(name)).unwrap();
    }
    let ours = snapshotter
        .save_snap(snapshot.term, snapshot.index, &snapshot.data)
        .unwrap();
    let our_name = ours.file_name().unwrap().to_str().unwrap().to_owned();

    cluster.restart(0).unwrap();
    cluster
        .wait_healthy(0, WAIT)
        .expect("etcd restarts from our snapshot");
    let got = real_etcdctl_ok(&cluster, &["get", "snap-key-last"]);
    assert!(got.contains("snap-key-last"), "etcd restarted: {got}");
    cluster.kill(0).unwrap();
    let files = snap_files(&snap_dir);
    assert!(
        files.contains(&our_name),
        "etcd kept our snapshot: {files:?}"
    );
    assert!(
        !files.iter().any(|n| n.ends_with(".broken")),
        "etcd found nothing broken: {files:?}"
    );
}
