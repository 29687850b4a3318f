//! member, endpoint, alarm, defrag, snapshot and move-leader against a three-member etcd,
//! compared with the reference etcdctl.

use crate::common;

use std::time::Duration;

use api::etcdserverpb::alarm_request::AlarmAction;
use api::etcdserverpb::{AlarmRequest, AlarmType};
use common::*;

fn three() -> Cluster {
    Cluster::start(ClusterSpec::new(3)).expect("start a three-member etcd")
}

/// Digits replaced by `#`, keeping widths, for output with indexes and sizes that move.
fn digits_masked(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[test]
fn member_list_and_endpoint_commands_print_like_the_reference() {
    let cluster = three();
    let first = cluster.client_url(0).to_string();
    for format in ["simple", "json", "fields", "table", "protobuf"] {
        same_at(&first, &["member", "list", "-w", format]);
        same(&cluster, &["endpoint", "hashkv", "-w", format]);
        same(&cluster, &["endpoint", "hashkv", "--cluster", "-w", format]);
        if format != "fields" {
            same_at(&first, &["alarm", "list", "-w", format]);
        }
        for cluster_flag in [false, true] {
            let mut args = vec!["endpoint", "status", "-w", format];
            if cluster_flag {
                args.push("--cluster");
            }
            let theirs = run(cluster.cli(reference()).args(&args));
            let ours = run(ctl(&cluster).args(&args));
            assert_eq!(
                (
                    ours.code(),
                    digits_masked(&ours.stdout),
                    without_logs(&ours.stderr)
                ),
                (
                    theirs.code(),
                    digits_masked(&theirs.stdout),
                    without_logs(&theirs.stderr)
                ),
                "{args:?}"
            );
        }
    }
    same(&cluster, &["endpoint", "hashkv", "--rev", "1"]);
    // The reference crashes on the header etcd 3.4 leaves out of an alarm list; we print zeros.
    assert_eq!(
        ok(&cluster, &["alarm", "list", "-w", "fields"]),
        "\"ClusterID\" : 0\n\"MemberID\" : 0\n\"Revision\" : 0\n\"RaftTerm\" : 0\n"
    );
    // Health: the duration varies, the rest does not.
    for format in ["simple", "json", "fields", "table"] {
        let out = run(ctl(&cluster).args(["endpoint", "health", "--cluster", "-w", format]));
        assert_eq!(out.code(), Some(0), "{out:?}");
        let shown = if format == "simple" {
            &out.stderr
        } else {
            &out.stdout
        };
        for url in cluster.client_urls() {
            assert!(shown.contains(&url), "{format}: {shown}");
        }
    }
    let out = run(Cli::new(ours()).args(["--endpoints", &first, "endpoint", "health"]));
    let prefix = format!("{first} is healthy: successfully committed proposal: took = ");
    assert!(
        out.stderr.starts_with(&prefix) && out.stdout.is_empty(),
        "{out:?}"
    );
    let out =
        run(Cli::new(ours()).args(["--endpoints", &first, "endpoint", "health", "-w", "json"]));
    assert!(
        out.stdout.starts_with(&format!(
            "[{{\"endpoint\":\"{first}\",\"health\":true,\"took\":\""
        )),
        "{out:?}"
    );
    // A dead endpoint: reported, the others still shown, exit 1.
    for command in ["status", "hashkv"] {
        let args = [
            &format!("--endpoints={first},127.0.0.1:1"),
            "--command-timeout=1s",
            "endpoint",
            command,
        ];
        let theirs = run(Cli::new(reference()).args(args));
        let ours = run(Cli::new(ours()).args(args));
        assert_eq!(
            (
                ours.code(),
                digits_masked(&ours.stdout),
                without_logs(&ours.stderr)
            ),
            (
                theirs.code(),
                digits_masked(&theirs.stdout),
                without_logs(&theirs.stderr)
            ),
            "{args:?}"
        );
    }
    // A dead endpoint is unhealthy, and the command fails.
    let out = run(Cli::new(ours()).args([
        "--endpoints",
        &format!("{first},127.0.0.1:1"),
        "--command-timeout=1s",
        "endpoint",
        "health",
    ]));
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains(
            "127.0.0.1:1 is unhealthy: failed to commit proposal: context deadline exceeded\n"
        ),
        "{out:?}"
    );
    assert!(
        out.stderr.ends_with("Error: unhealthy cluster\n"),
        "{out:?}"
    );
}

#[test]
fn alarms_list_and_disarm_like_the_reference() {
    let cluster = single();
    let member_id = {
        let json = ok(&cluster, &["member", "list", "-w", "json"]);
        let at = json.find("\"ID\":").unwrap() + 5;
        json[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let activate = || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let client = client::Client::connect(&[cluster.client_url(0)], Default::default())
                .await
                .unwrap();
            client
                .alarm(AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id,
                    alarm: AlarmType::Nospace as i32,
                })
                .await
                .unwrap();
        })
    };
    activate();
    for format in ["simple", "json", "protobuf"] {
        same(&cluster, &["alarm", "list", "-w", format]);
    }
    assert_eq!(
        ok(&cluster, &["alarm", "list"]),
        format!("memberID:{member_id} alarm:NOSPACE \n")
    );
    let out = run(ctl(&cluster).args(["put", "k", "v"]));
    assert_eq!(
        out.stderr,
        "Error: etcdserver: mvcc: database space exceeded\n"
    );
    for format in ["simple", "json"] {
        let theirs = run(cluster
            .cli(reference())
            .args(["alarm", "disarm", "-w", format]));
        activate();
        let ours = run(ctl(&cluster).args(["alarm", "disarm", "-w", format]));
        assert_eq!(shown(&ours), shown(&theirs), "{format}");
        activate();
    }
    assert_eq!(
        ok(&cluster, &["alarm", "disarm"]),
        format!("memberID:{member_id} alarm:NOSPACE \n")
    );
    same(&cluster, &["alarm", "list", "extra"]);
    assert_eq!(ok(&cluster, &["alarm", "list"]), "");
    assert_eq!(ok(&cluster, &["put", "k", "v"]), "OK\n");
}

#[test]
fn defrag_snapshot_and_move_leader() {
    let cluster = three();
    let first = cluster.client_url(0).to_string();
    same(&cluster, &["defrag"]);
    same(&cluster, &["defrag", "--cluster"]);
    let out = run(Cli::new(ours()).args([
        "--endpoints",
        &format!("{first},127.0.0.1:1"),
        "--command-timeout=1s",
        "defrag",
    ]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stdout,
        format!("Finished defragmenting etcd member[{first}]\n")
    );
    assert!(
        out.stderr
            .starts_with("Failed to defragment etcd member[127.0.0.1:1] ("),
        "{out:?}"
    );

    // Snapshots come from one member; the file is a bbolt database plus a SHA-256.
    for i in 0..20 {
        ok(&cluster, &["put", &format!("key{i}"), "value"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    let path_text = path.to_string_lossy().to_string();
    let out = run(Cli::new(ours()).args(["--endpoints", &first, "snapshot", "save", &path_text]));
    assert_eq!(
        out.stdout,
        format!("Snapshot saved at {path_text}\n"),
        "{out:?}"
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size % 512, 32, "snapshot size {size}");
    assert!(!dir.path().join("snap.db.part").exists());
    let theirs = run(Cli::new(reference()).args([
        "--endpoints",
        &first,
        "snapshot",
        "save",
        &format!("{path_text}.ref"),
    ]));
    assert!(theirs.success());
    // Both captured the same database (the reference's snapshot is the same size).
    assert_eq!(
        std::fs::metadata(format!("{path_text}.ref")).unwrap().len(),
        size
    );
    same(&cluster, &["snapshot", "save", "/nonexistent-dir/x.db"]);
    same(&cluster, &["snapshot", "save"]);

    // move-leader: to a follower, found through the leader's endpoint.
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).unwrap();
    let ids: Vec<String> = ok(&cluster, &["member", "list"])
        .lines()
        .map(|l| l.split(", ").next().unwrap().to_string())
        .collect();
    let names: Vec<String> = ok(&cluster, &["member", "list"])
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap().to_string())
        .collect();
    let leader_id = &ids[names
        .iter()
        .position(|n| n == cluster.name(leader))
        .unwrap()];
    let target = ids.iter().find(|id| *id != leader_id).unwrap().clone();
    let out = run(ctl(&cluster).args(["move-leader", &target]));
    assert_eq!(
        out.stdout,
        format!("Leadership transferred from {leader_id} to {target}\n"),
        "{out:?}"
    );
    eventually(Duration::from_secs(10), "the new leader", || {
        ok(
            &cluster,
            &["endpoint", "status", "--cluster", "-w", "fields"],
        )
        .contains(&format!(
            "\"Leader\" : {}",
            u64::from_str_radix(&target, 16).unwrap()
        ))
    });
    for args in [
        &["move-leader"][..],
        &["move-leader", "zz"],
        &["move-leader", "1234"],
    ] {
        same(&cluster, args);
    }
    // Only followers given: no leader to ask.
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).unwrap();
    let follower = (0..3).find(|i| *i != new_leader).unwrap();
    let args = [
        "--endpoints",
        cluster.client_url(follower),
        "move-leader",
        &target,
    ];
    let theirs = run(Cli::new(reference()).args(args));
    let ours_out = run(Cli::new(ours()).args(args));
    assert_eq!(shown(&ours_out), shown(&theirs));
}

#[test]
fn member_add_update_promote_remove() {
    let cluster = single();
    let out = run(ctl(&cluster).args([
        "member",
        "add",
        "newbie",
        "--learner",
        "--peer-urls=http://127.0.0.1:1,http://127.0.0.1:2",
    ]));
    assert!(out.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let id = lines[0].split_whitespace().nth(1).unwrap().to_string();
    let cluster_id = ok(&cluster, &["member", "list", "-w", "fields"])
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("\"ClusterID\" : ")
        .parse::<u64>()
        .unwrap();
    assert_eq!(
        lines[0],
        format!("Member {id:>16} added to cluster {cluster_id:16x}")
    );
    assert_eq!(lines[1..3], ["", "ETCD_NAME=\"newbie\""]);
    // Members come in no fixed order.
    let mut initial: Vec<&str> = lines[3]
        .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .split(',')
        .collect();
    initial.sort_unstable();
    let existing = format!("{}={}", cluster.name(0), cluster.peer_url(0));
    assert_eq!(
        initial,
        [
            existing.as_str(),
            "newbie=http://127.0.0.1:1",
            "newbie=http://127.0.0.1:2"
        ]
    );
    assert_eq!(
        lines[4..],
        [
            "ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.1:1,http://127.0.0.1:2\"",
            "ETCD_INITIAL_CLUSTER_STATE=\"existing\"",
        ]
    );
    let id = id.trim().to_string();
    for format in ["simple", "json", "fields", "table"] {
        same(&cluster, &["member", "list", "-w", format]);
    }
    // The learner never started, so it cannot be promoted.
    same(&cluster, &["member", "promote", &id]);
    let out = run(ctl(&cluster).args(["member", "update", &id, "--peer-urls=http://127.0.0.1:3"]));
    assert_eq!(
        out.stdout,
        format!("Member {id:>16} updated in cluster {cluster_id:16x}\n")
    );
    let out = run(ctl(&cluster).args([
        "member",
        "update",
        &id,
        "--peer-urls=http://127.0.0.1:4",
        "-w",
        "json",
    ]));
    assert!(
        out.stdout.contains("\"peerURLs\":[\"http://127.0.0.1:4\"]"),
        "{out:?}"
    );
    same(
        &cluster,
        &[
            "member",
            "update",
            &id,
            "--peer-urls=http://127.0.0.1:4",
            "-w",
            "fields",
        ],
    );
    let out = run(ctl(&cluster).args(["member", "remove", &id]));
    assert_eq!(
        out.stdout,
        format!("Member {id:>16} removed from cluster {cluster_id:16x}\n")
    );
    for args in [
        &["member", "remove", &id][..],
        &["member", "remove", "zz"],
        &["member", "remove"],
        &["member", "add"],
        &["member", "add", "x"],
        &["member", "add", "x", "http://127.0.0.1:5"],
        &["member", "update", "1234"],
        &["member", "promote"],
    ] {
        same(&cluster, args);
    }
    assert_eq!(ok(&cluster, &["member", "list"]).lines().count(), 1);
}
