//! lock and elect (the client-side recipes) between etcdctl processes, and check perf.

use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn lock_is_mutually_exclusive_between_processes() {
    let cluster = single();
    let mut first = ctl(&cluster).args(["lock", "L"]).spawn().unwrap();
    let key = first.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(key.starts_with("L/"), "{key}");
    assert_eq!(first.next_line(LINE_TIMEOUT).unwrap().unwrap(), "");
    // The reference etcdctl queues behind ours, and ours behind it.
    let mut second = cluster
        .cli(reference())
        .args(["lock", "L"])
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the second locker to queue",
        || {
            ok(&cluster, &["get", "--prefix", "L/", "--keys-only"])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
                == 2
        },
    );
    assert!(
        second.next_line(Duration::from_millis(300)).is_err(),
        "second acquired a held lock"
    );
    first.interrupt().unwrap();
    let out = first.wait(LINE_TIMEOUT).unwrap();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let second_key = second.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(
        second_key.starts_with("L/") && second_key != key,
        "{second_key}"
    );
    let mut third = ctl(&cluster).args(["lock", "L"]).spawn().unwrap();
    assert!(
        third.next_line(Duration::from_millis(300)).is_err(),
        "third acquired a held lock"
    );
    second.interrupt().unwrap();
    second.wait(LINE_TIMEOUT).unwrap();
    assert!(third
        .next_line(LINE_TIMEOUT)
        .unwrap()
        .unwrap()
        .starts_with("L/"));
    // Interrupted while waiting: gives up and leaves the queue.
    let mut waiting = ctl(&cluster).args(["lock", "L"]).spawn().unwrap();
    eventually(Duration::from_secs(10), "the waiter to queue", || {
        ok(&cluster, &["get", "--prefix", "L/", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
            == 2
    });
    waiting.interrupt().unwrap();
    let out = waiting.wait(LINE_TIMEOUT).unwrap();
    assert_eq!(
        (out.code(), out.stderr.as_str()),
        (Some(1), "Error: context canceled\n")
    );
    assert_eq!(
        ok(&cluster, &["get", "--prefix", "L/", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        1
    );
}

#[test]
fn lock_runs_a_command_while_holding_it() {
    let cluster = single();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!(
        "echo \"start $ETCD_LOCK_KEY $ETCD_LOCK_REV\" >> {0}; sleep 0.3; echo end >> {0}",
        log.display()
    );
    // Two holders in parallel: their critical sections never overlap.
    let a = ctl(&cluster)
        .args(["lock", "X", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let b = cluster
        .cli(reference())
        .args(["lock", "X", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    assert!(a.wait(LINE_TIMEOUT).unwrap().success());
    assert!(b.wait(LINE_TIMEOUT).unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("start X/") && lines[1] == "end",
        "{text}"
    );
    assert!(
        lines[2].starts_with("start X/") && lines[3] == "end",
        "{text}"
    );
    // The revision given is the one at which the lock was taken.
    let revision: i64 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(revision > 1);
    // The lock is released after the command, and a failing command is reported.
    assert_eq!(ok(&cluster, &["get", "--prefix", "X/"]), "");
    let out = run(ctl(&cluster).args(["lock", "X", "false"]));
    assert_eq!(
        (out.code(), out.stderr.as_str()),
        (Some(1), "Error: exit status 1\n")
    );
    for args in [
        &["lock"][..],
        &["elect"],
        &["elect", "E"],
        &["elect", "-l", "E", "p"],
        &["elect", "a", "b", "c"],
    ] {
        same(&cluster, args);
    }
}

#[test]
fn elect_hands_leadership_over_when_the_leader_resigns() {
    let cluster = single();
    let mut observer = ctl(&cluster).args(["elect", "-l", "E"]).spawn().unwrap();
    let mut reference_observer = cluster
        .cli(reference())
        .args(["elect", "-l", "E"])
        .spawn()
        .unwrap();
    let mut leader = ctl(&cluster).args(["elect", "E", "first"]).spawn().unwrap();
    let key = leader.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(key.starts_with("E/"), "{key}");
    assert_eq!(leader.next_line(LINE_TIMEOUT).unwrap().unwrap(), "first");
    assert_eq!(lines(&mut observer, 2), [key.clone(), "first".to_string()]);
    assert_eq!(
        lines(&mut reference_observer, 2),
        [key.clone(), "first".to_string()]
    );
    // A second candidate (the reference etcdctl) waits for the first to go.
    let mut candidate = cluster
        .cli(reference())
        .args(["elect", "E", "second"])
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "the candidate to queue", || {
        ok(&cluster, &["get", "--prefix", "E/", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
            == 2
    });
    assert!(
        candidate.next_line(Duration::from_millis(300)).is_err(),
        "two leaders"
    );
    leader.interrupt().unwrap();
    assert_eq!(leader.wait(LINE_TIMEOUT).unwrap().code(), Some(0));
    let new_key = candidate.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert_eq!(
        candidate.next_line(LINE_TIMEOUT).unwrap().unwrap(),
        "second"
    );
    assert_ne!(new_key, key);
    assert_eq!(
        lines(&mut observer, 2),
        [new_key.clone(), "second".to_string()]
    );
    assert_eq!(
        lines(&mut reference_observer, 2),
        [new_key, "second".to_string()]
    );
    // Ours takes over from the reference in turn.
    let mut third = ctl(&cluster).args(["elect", "E", "third"]).spawn().unwrap();
    assert!(
        third.next_line(Duration::from_millis(300)).is_err(),
        "two leaders"
    );
    candidate.interrupt().unwrap();
    candidate.wait(LINE_TIMEOUT).unwrap();
    let third_key = third.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert_eq!(lines(&mut observer, 2), [third_key, "third".to_string()]);
    observer.interrupt().unwrap();
    assert_eq!(observer.wait(LINE_TIMEOUT).unwrap().code(), Some(0));
}

#[test]
fn check_perf_writes_for_a_minute_then_cleans_up() {
    let cluster = single();
    ok(&cluster, &["put", "/busy/x", "1"]);
    let out = same(&cluster, &["check", "perf", "--prefix", "/busy/"]);
    assert_eq!(out.code(), Some(3));
    same(&cluster, &["check", "perf", "--load", "huge"]);
    let out = run(ctl(&cluster)
        .args([
            "check",
            "perf",
            "--load",
            "s",
            "--auto-compact",
            "--auto-defrag",
        ])
        .timeout(Duration::from_secs(120)));
    let lines: Vec<&str> = out.stdout.lines().collect();
    // Whether this machine is fast enough is not ours to assert; the verdict must match the figures.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Compacted with revision ")),
        "{out:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Defragmented \"")),
        "{out:?}"
    );
    assert!(lines.iter().any(|l| l.contains("Throughput")), "{out:?}");
    assert!(
        lines.iter().any(|l| l.contains("Slowest request took")),
        "{out:?}"
    );
    assert!(lines.iter().any(|l| l.contains("Stddev")), "{out:?}");
    let verdict = *lines.last().unwrap();
    let passed = lines
        .iter()
        .all(|l| !l.contains("FAIL") && !l.contains("too long") && !l.contains("too high"));
    assert_eq!(
        (verdict, out.code()),
        if passed {
            ("PASS", Some(0))
        } else {
            ("FAIL", Some(1))
        },
        "{out:?}"
    );
    let throughput: u64 = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("PASS: Throughput is ")
                .or(l.strip_prefix("FAIL: Throughput too low: "))
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a throughput figure");
    assert!(
        throughput > 0 && throughput <= 160,
        "{throughput} writes/s for a 150/s load"
    );
    assert_eq!(
        ok(
            &cluster,
            &["get", "--prefix", "/etcdctl-check-perf/", "--keys-only"]
        ),
        ""
    );
}
