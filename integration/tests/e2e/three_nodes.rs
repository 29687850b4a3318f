//! Three-member clusters of the reference etcd: health, leader failover, rejoin after a crash, quorum loss.

use std::time::Duration;

use integration::{real_etcdctl, Cluster, ClusterSpec, Error};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn endpoint_health_cluster_reports_every_member() {
    let cluster = Cluster::start(ClusterSpec::new(3)).unwrap();
    let out = cluster
        .cli(real_etcdctl())
        .args(["endpoint", "health", "--cluster"])
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    // etcdctl 3.4 prints one "<url> is healthy: ..." line per member URL it found via MemberList.
    let report = format!("{}{}", out.stdout, out.stderr);
    for url in cluster.client_urls() {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("{url} is healthy"))),
            "{url} missing from {report}"
        );
    }
    assert!(!report.contains("unhealthy"), "{report}");

    let members = cluster
        .cli(real_etcdctl())
        .args(["member", "list"])
        .run()
        .unwrap();
    let mut names: Vec<&str> = members
        .stdout
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap_or_default())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["m0", "m1", "m2"], "{members:?}");
}

#[test]
fn killed_leader_is_replaced_and_rejoins_after_restart() {
    let mut cluster = Cluster::start(ClusterSpec::new(3)).unwrap();
    let old_leader = cluster.wait_for_leader(TIMEOUT).unwrap();
    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "before", "1"])
        .run()
        .unwrap();
    assert!(put.success(), "{put:?}");

    cluster.kill(old_leader).unwrap();
    assert!(!cluster.is_running(old_leader));
    assert_eq!(cluster.pid(old_leader), None);
    let new_leader = cluster.wait_for_leader(TIMEOUT).unwrap();
    assert_ne!(new_leader, old_leader);

    let survivors: Vec<&str> = (0..3)
        .filter(|&i| i != old_leader)
        .map(|i| cluster.client_url(i))
        .collect();
    let put = integration::Cli::new(real_etcdctl())
        .arg(format!("--endpoints={}", survivors.join(",")))
        .args(["put", "during", "2"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");

    cluster.restart(old_leader).unwrap();
    cluster.wait_healthy(old_leader, TIMEOUT).unwrap();
    // A serializable read is answered from the member's own store: it shows the write only once the
    // restarted member has caught up from the leader.
    wait_for_local_value(&cluster, old_leader, "during", "2");
    let log = std::fs::read_to_string(cluster.log_path(old_leader)).unwrap();
    assert_eq!(log.matches("=== etcd-rs harness: start #").count(), 2);
}

/// Polls a serializable read on member `i` alone until it returns `expected`.
fn wait_for_local_value(cluster: &Cluster, i: usize, key: &str, expected: &str) {
    testkit::poll(TIMEOUT, || {
        let get = integration::Cli::new(real_etcdctl())
            .arg(format!("--endpoints={}", cluster.client_url(i)))
            .args(["get", "--consistency=s", "--print-value-only", key])
            .run()
            .unwrap();
        if get.stdout == format!("{expected}\n") {
            Ok(())
        } else {
            Err(get)
        }
    })
    .unwrap_or_else(|get| panic!("member {i} never served {key}={expected}: {get:?}"));
}

#[test]
fn paused_leader_is_deposed_and_catches_up_when_resumed() {
    let mut cluster = Cluster::start(ClusterSpec::new(3)).unwrap();
    let old_leader = cluster.wait_for_leader(TIMEOUT).unwrap();
    cluster.pause(old_leader).unwrap();
    assert!(cluster.is_running(old_leader), "a paused process is alive");
    assert!(matches!(
        cluster.wait_healthy(old_leader, TIMEOUT),
        Err(Error::MemberPaused { .. })
    ));

    // The frozen leader still believes it leads; probes skip it, so the new leader is the only claim.
    let new_leader = cluster.wait_for_leader(TIMEOUT).unwrap();
    assert_ne!(new_leader, old_leader);
    let put = integration::Cli::new(real_etcdctl())
        .arg(format!("--endpoints={}", cluster.client_url(new_leader)))
        .args(["put", "while-paused", "yes"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");

    cluster.resume(old_leader).unwrap();
    cluster.wait_all_healthy(TIMEOUT).unwrap();
    wait_for_local_value(&cluster, old_leader, "while-paused", "yes");
    // Once resumed, the old leader learns of the newer term and stops claiming leadership.
    cluster.wait_for_leader(TIMEOUT).unwrap();
}

#[test]
fn health_wait_fails_with_log_tail_when_quorum_is_lost() {
    let mut cluster = Cluster::start(ClusterSpec::new(3)).unwrap();
    cluster.kill(1).unwrap();
    cluster.kill(2).unwrap();
    match cluster.wait_healthy(0, Duration::from_secs(3)) {
        Err(Error::NotHealthy {
            member,
            last,
            log_tail,
            ..
        }) => {
            assert_eq!(member, "m0");
            assert!(last.contains(r#""health":"false""#), "{last}");
            let log = std::fs::read_to_string(cluster.log_path(0)).unwrap();
            // The member keeps campaigning and logging, so the tail is somewhere in the log, not at its end.
            assert!(!log_tail.is_empty() && log.contains(&log_tail));
        }
        other => panic!("expected NotHealthy, got {other:?}"),
    }
    assert!(matches!(
        cluster.wait_healthy(1, Duration::from_secs(1)),
        Err(Error::MemberNotRunning { .. })
    ));
}
