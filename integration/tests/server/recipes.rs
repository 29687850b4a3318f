//! `etcdctl lock` and `etcdctl elect` (clientv3's concurrency recipes, run by the CLI against the
//! KV, lease and watch services) with Debian's etcdctl 3.4 and ours taking turns, against etcd 3.4
//! and our `etcd`.

use crate::common;

use std::time::Duration;

use common::*;
use integration::{server_tests, Background, Cluster, ProcessError, ServerBinary};

server_tests! {
    fn lock_passes_between_both_etcdctls_in_turn;
    fn elect_passes_leadership_between_both_etcdctls_and_observers_follow;
}

const LINE: Duration = Duration::from_secs(20);

fn spawn(cluster: &Cluster, bin: &std::path::Path, args: &[&str]) -> Background {
    cluster
        .cli(bin)
        .args(args)
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn line(process: &mut Background) -> String {
    process
        .next_line(LINE)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ended early: {}", process.stderr()))
}

/// The process prints nothing for a while: it is waiting (not a timing assertion on the server,
/// which must keep it waiting however long).
fn still_waiting(process: &mut Background, what: &str) {
    match process.next_line(Duration::from_millis(500)) {
        Err(ProcessError::LineTimedOut { .. }) => {}
        other => panic!("{what}: {other:?}"),
    }
}

fn lock_passes_between_both_etcdctls_in_turn(server: ServerBinary) {
    let cluster = start(server, 3);
    let [(first_label, first), (second_label, second)] = etcdctls();
    let mut holder = spawn(&cluster, &first, &["lock", "L"]);
    let key = line(&mut holder);
    assert!(key.starts_with("L/"), "{first_label}: {key}");
    let mut waiter = spawn(&cluster, &second, &["lock", "L"]);
    still_waiting(&mut waiter, &format!("{second_label} locked a held lock"));
    let mut third = spawn(&cluster, &first, &["lock", "L"]);

    holder.interrupt().expect("interrupt the holder");
    holder.wait(LINE).expect("the holder exits");
    let second_key = line(&mut waiter);
    assert!(
        second_key.starts_with("L/") && second_key != key,
        "{second_label}: {second_key}"
    );
    still_waiting(&mut third, "a third locker got a held lock");
    waiter.interrupt().expect("interrupt the second holder");
    waiter.wait(LINE).expect("the second holder exits");
    let third_key = line(&mut third);
    assert!(
        third_key.starts_with("L/") && third_key != second_key,
        "{third_key}"
    );
}

fn elect_passes_leadership_between_both_etcdctls_and_observers_follow(server: ServerBinary) {
    let cluster = start(server, 3);
    let [(_, reference), (_, ours)] = etcdctls();
    let mut observers = [
        spawn(&cluster, &reference, &["elect", "-l", "E"]),
        spawn(&cluster, &ours, &["elect", "-l", "E"]),
    ];
    let mut leader = spawn(&cluster, &ours, &["elect", "E", "first"]);
    let key = line(&mut leader);
    assert!(key.starts_with("E/"), "{key}");
    assert_eq!(line(&mut leader), "first");
    for observer in &mut observers {
        assert_eq!(
            [line(observer), line(observer)],
            [key.clone(), "first".into()]
        );
    }

    let mut candidate = spawn(&cluster, &reference, &["elect", "E", "second"]);
    still_waiting(&mut candidate, "two leaders");
    leader.interrupt().expect("interrupt the leader");
    leader.wait(LINE).expect("the leader exits");
    let new_key = line(&mut candidate);
    assert_ne!(new_key, key);
    assert_eq!(line(&mut candidate), "second");
    for observer in &mut observers {
        assert_eq!(
            [line(observer), line(observer)],
            [new_key.clone(), "second".into()]
        );
        observer.interrupt().expect("interrupt an observer");
    }
    candidate.interrupt().expect("interrupt the candidate");
}
