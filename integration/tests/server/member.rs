//! Runtime membership through Debian's etcdctl 3.4 and ours, against etcd 3.4 and our `etcd`:
//! member add (learner), the learner limit, promote refused for a learner not in sync, update,
//! remove; each with etcd's output and errors.

use crate::common;

use std::path::Path;

use common::*;
use integration::output::without_logs;
use integration::{server_tests, Cli, CmdOutput, ServerBinary};
use testkit::eventually;

fn ctl(bin: &Path, endpoints: &str) -> Cli {
    Cli::new(bin).arg(format!("--endpoints={endpoints}"))
}

fn run(cli: Cli) -> CmdOutput {
    cli.run().unwrap_or_else(|e| panic!("{e}"))
}

/// The id etcdctl prints in "Member <id> added to cluster <cid>".
fn added_id(out: &CmdOutput) -> String {
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let line = out.stdout.lines().next().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"Member"), "{line}");
    assert_eq!(words.get(2..4), Some(&["added", "to"][..]), "{line}");
    words[1].to_string()
}

fn refused_with(out: &CmdOutput, message: &str) {
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    let stderr = without_logs(&out.stderr);
    assert!(
        stderr.contains(message),
        "expected {message:?} in {stderr:?}"
    );
}

server_tests! {
    fn learner_is_added_limited_not_promoted_before_sync_updated_and_removed;
    fn move_leader_hands_leadership_to_the_named_member;
}

/// Member ids by index (names are `m<i>`), from `member list`.
fn member_ids(bin: &Path, endpoints: &str, size: usize) -> Vec<String> {
    let out = run(ctl(bin, endpoints).args(["member", "list"]));
    let mut ids = vec![String::new(); size];
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.split(", ").collect();
        let i: usize = fields[2].trim_start_matches('m').parse().expect(line);
        ids[i] = fields[0].to_string();
    }
    ids
}

fn move_leader_hands_leadership_to_the_named_member(server: ServerBinary) {
    let cluster = start(server, 3);
    let endpoints = cluster.endpoints();
    let [(_, reference), (_, ours)] = etcdctls();
    let ids = member_ids(&reference, &endpoints, 3);
    for bin in [&reference, &ours] {
        let leader = cluster.wait_for_leader(WAIT).expect("leader");
        let target = (leader + 1) % 3;
        let out = run(ctl(bin, &endpoints).args(["move-leader", &ids[target]]));
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        assert!(
            out.stdout.contains(&format!(
                "Leadership transferred from {} to {}",
                ids[leader], ids[target]
            )),
            "{}",
            out.stdout
        );
        eventually(WAIT, "leadership to move", || {
            cluster.leader_index() == Some(target)
        });
        // A follower refuses: etcdctl finds no leader among the endpoints it was given.
        let follower = (target + 1) % 3;
        let out = run(ctl(bin, cluster.client_url(follower)).args(["move-leader", &ids[leader]]));
        assert_ne!(out.code(), Some(0), "{}", out.stdout);
    }
}

fn learner_is_added_limited_not_promoted_before_sync_updated_and_removed(server: ServerBinary) {
    let cluster = start(server, 1);
    cluster.wait_for_leader(WAIT).expect("leader");
    let endpoints = cluster.endpoints();
    let [(_, reference), (_, ours)] = etcdctls();
    // The learner is never started: its peer URL is one of the cluster's own ports, which
    // answers raft's dials with an error.
    let learner_url = cluster.client_url(0).to_string();
    let out = run(ctl(&ours, &endpoints).args([
        "member",
        "add",
        "newbie",
        "--learner",
        &format!("--peer-urls={learner_url}"),
    ]));
    let id = added_id(&out);
    assert!(
        out.stdout
            .contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{}",
        out.stdout
    );
    let list = run(ctl(&reference, &endpoints).args(["member", "list"]));
    assert!(
        list.stdout
            .contains(&format!("{id}, unstarted, , {learner_url}, , true")),
        "{}",
        list.stdout
    );
    for bin in [&reference, &ours] {
        let second = format!("--peer-urls=http://localhost:{}", port_of(&learner_url));
        let out = run(ctl(bin, &endpoints).args(["member", "add", "other", "--learner", &second]));
        refused_with(&out, "etcdserver: too many learner members in cluster");
        let out = run(ctl(bin, &endpoints).args([
            "member",
            "add",
            "dup",
            &format!("--peer-urls={}", cluster.peer_url(0)),
        ]));
        refused_with(&out, "etcdserver: Peer URLs already exists");
        let out = run(ctl(bin, &endpoints).args(["member", "promote", &id]));
        refused_with(
            &out,
            "etcdserver: can only promote a learner member which is in sync with leader",
        );
    }
    let updated_url = format!("http://localhost:{}", port_of(&learner_url));
    let out = run(ctl(&reference, &endpoints).args([
        "member",
        "update",
        &id,
        &format!("--peer-urls={updated_url}"),
    ]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    says(&out, &["Member", &id, "updated", "in", "cluster"]);
    let list = run(ctl(&ours, &endpoints).args(["member", "list"]));
    assert!(list.stdout.contains(&updated_url), "{}", list.stdout);
    // And back, with our etcdctl.
    let out = run(ctl(&ours, &endpoints).args([
        "member",
        "update",
        &id,
        &format!("--peer-urls={learner_url}"),
    ]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    says(&out, &["Member", &id, "updated", "in", "cluster"]);
    let list = run(ctl(&reference, &endpoints).args(["member", "list"]));
    assert!(
        list.stdout.contains(&format!(", {learner_url}, ")),
        "{}",
        list.stdout
    );
    let out = run(ctl(&ours, &endpoints).args(["member", "remove", &id]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    says(&out, &["Member", &id, "removed", "from", "cluster"]);
    let list = run(ctl(&reference, &endpoints).args(["member", "list"]));
    assert_eq!(list.stdout.lines().count(), 1, "{}", list.stdout);
}

/// The first words of stdout (etcd pads ids to 16 columns).
fn says(out: &CmdOutput, words: &[&str]) {
    let said: Vec<&str> = out.stdout.split_whitespace().take(words.len()).collect();
    assert_eq!(said, words, "{}", out.stdout);
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}
