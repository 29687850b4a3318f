//! Debian's etcdctl 3.4 and ours, side by side, against clusters booted from etcd's flags: membership,
//! endpoint status and health, put/get/del/txn/watch/compaction/defrag/snapshot save with the output
//! etcdctl prints, and bad requests with etcd's errors. Each test runs against etcd 3.4 and our `etcd`.

use crate::common;

use std::path::Path;

use common::*;
use integration::output::{digits_masked, sorted_lines, without_logs};
use integration::{server_tests, Cli, Cluster, CmdOutput, ServerBinary};

/// The etcdctl `bin` aimed at `endpoints` (comma-separated client URLs).
fn ctl(bin: &Path, endpoints: &str) -> Cli {
    Cli::new(bin).arg(format!("--endpoints={endpoints}"))
}

fn run(cli: Cli) -> CmdOutput {
    cli.run().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs and expects success; returns stdout.
fn ok(cli: Cli) -> String {
    cli.run_ok().unwrap_or_else(|e| panic!("{e}"))
}

/// What a run shows a user: exit code, stdout, stderr without the Go client's log lines.
fn shown(out: &CmdOutput) -> (Option<i32>, String, String) {
    (out.code(), out.stdout.clone(), without_logs(&out.stderr))
}

/// Runs `args` with both etcdctls against `endpoints`, asserts they show the same after `normalize`,
/// and returns our etcdctl's output.
fn same(endpoints: &str, args: &[&str], normalize: fn(&str) -> String) -> CmdOutput {
    let [(_, reference), (_, ours)] = etcdctls();
    let theirs = run(ctl(&reference, endpoints).args(args));
    let ours = run(ctl(&ours, endpoints).args(args));
    let view = |o: &CmdOutput| {
        (
            o.code(),
            normalize(&o.stdout),
            normalize(&without_logs(&o.stderr)),
        )
    };
    assert_eq!(
        view(&ours),
        view(&theirs),
        "etcdctl {args:?}: ours (left), etcdctl 3.4 (right)"
    );
    ours
}

fn as_is(text: &str) -> String {
    text.to_string()
}

/// Member ids by name, from `member list`, after checking its lines against the cluster's URLs.
fn check_member_list(cluster: &Cluster, out: &str) -> Vec<(String, String)> {
    let mut members: Vec<(String, String)> = out
        .lines()
        .map(|line| {
            // "<id>, started, <name>, <peer url>, <client url>, <is learner>"
            let fields: Vec<&str> = line.split(", ").collect();
            assert_eq!(fields.len(), 6, "{line}");
            let name = fields[2].to_string();
            let i: usize = name
                .trim_start_matches('m')
                .parse()
                .unwrap_or_else(|_| panic!("{line}"));
            assert_eq!(
                fields[1..],
                [
                    "started",
                    &name,
                    cluster.peer_url(i),
                    cluster.client_url(i),
                    "false"
                ],
                "{line}"
            );
            assert!(u64::from_str_radix(fields[0], 16).is_ok(), "{line}");
            (name, fields[0].to_string())
        })
        .collect();
    members.sort();
    let names: Vec<String> = members.iter().map(|(name, _)| name.clone()).collect();
    let expected: Vec<String> = (0..cluster.size())
        .map(|i| cluster.name(i).to_string())
        .collect();
    assert_eq!(names, expected);
    members
}

/// Membership, status and health as both etcdctls print them.
fn check_cluster_views(cluster: &Cluster) {
    let endpoints = cluster.endpoints();
    let first = cluster.client_url(0).to_string();
    let list = same(&first, &["member", "list"], as_is);
    let ids = check_member_list(cluster, &list.stdout);
    for format in ["json", "table", "fields"] {
        same(&first, &["member", "list", "-w", format], as_is);
    }

    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let status = same(
        &endpoints,
        &["endpoint", "status", "--cluster"],
        digits_masked,
    );
    let mut urls = Vec::new();
    let mut leaders = Vec::new();
    let mut terms = Vec::new();
    for line in status.stdout.lines() {
        // "<url>, <id>, <version>, <db size>, <is leader>, <is learner>, <term>, <index>, <applied>, <errors>"
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields.len(), 10, "{line}");
        let i = cluster
            .client_urls()
            .iter()
            .position(|u| u == fields[0])
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(fields[1], ids[i].1, "{line}");
        assert!(fields[2].starts_with("3."), "an etcd version: {line}");
        assert_eq!(fields[5], "false", "{line}");
        assert_eq!(fields[9], "", "{line}");
        urls.push(fields[0].to_string());
        if fields[4] == "true" {
            leaders.push(i);
        }
        terms.push(fields[6].to_string());
    }
    urls.sort();
    let mut expected_urls = cluster.client_urls();
    expected_urls.sort();
    assert_eq!(urls, expected_urls);
    assert_eq!(leaders, [leader], "{}", status.stdout);
    terms.dedup();
    assert_eq!(
        terms.len(),
        1,
        "every member in the same term: {}",
        status.stdout
    );
    for format in ["json", "table"] {
        same(
            &endpoints,
            &["endpoint", "status", "--cluster", "-w", format],
            digits_masked,
        );
    }

    for (label, bin) in etcdctls() {
        let out = run(ctl(&bin, &first).args(["endpoint", "health", "--cluster"]));
        assert_eq!(
            (out.code(), out.stdout.as_str()),
            (Some(0), ""),
            "{label}: {out:?}"
        );
        let mut healthy: Vec<String> = without_logs(&out.stderr)
            .lines()
            .map(|line| {
                let (url, took) = line
                    .split_once(" is healthy: successfully committed proposal: took = ")
                    .unwrap_or_else(|| panic!("{label}: {line}"));
                assert!(!took.is_empty(), "{label}: {line}");
                url.to_string()
            })
            .collect();
        healthy.sort();
        assert_eq!(healthy, expected_urls, "{label}");
    }
}

/// The store's revision, from the header of a get.
fn current_revision(endpoints: &str) -> i64 {
    let json = ok(ctl(&our_etcdctl(), endpoints).args(["get", "x", "-w", "json"]));
    let at = json.find("\"revision\":").expect("a header revision") + "\"revision\":".len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a revision number")
}

/// The last stderr line a failed run printed, and its exit code.
fn failure(out: &CmdOutput) -> (Option<i32>, String) {
    (
        out.code(),
        without_logs(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string(),
    )
}

server_tests! {
    fn one_member_cluster_is_listed_and_healthy_to_both_etcdctls;
    fn three_member_cluster_is_listed_and_healthy_to_both_etcdctls;
    fn kv_watch_and_maintenance_commands_print_etcdctls_output;
    fn bad_requests_through_etcdctl_get_etcds_errors;
}

/// A one-member cluster booted from flags: both etcdctls list it, report its status (leader,
/// version 3.x, no errors) and its health, and print the same.
fn one_member_cluster_is_listed_and_healthy_to_both_etcdctls(server: ServerBinary) {
    check_cluster_views(&start(server, 1));
}

/// A three-member cluster booted from flags: every member listed with its URLs, exactly one
/// leader (the one /metrics names) in `endpoint status --cluster`, every member healthy.
fn three_member_cluster_is_listed_and_healthy_to_both_etcdctls(server: ServerBinary) {
    check_cluster_views(&start(server, 3));
}

/// On a three-member cluster, each etcdctl in turn (writes through a follower) runs put, get, del,
/// txn, watch from a revision and live, compaction, defrag --cluster and snapshot save, each with
/// the exact output etcdctl 3.4 prints; read-only output is identical between the two.
fn kv_watch_and_maintenance_commands_print_etcdctls_output(server: ServerBinary) {
    let cluster = start(server, 3);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let follower = cluster.client_url((leader + 1) % 3).to_string();
    let other_follower = cluster.client_url((leader + 2) % 3).to_string();
    let endpoints = cluster.endpoints();
    let dir = tempfile::tempdir().expect("a temporary directory");

    for (n, (label, bin)) in etcdctls().into_iter().enumerate() {
        let at = |endpoints: &str, args: &[&str]| ctl(&bin, endpoints).args(args);
        let p = format!("t{n}");
        let k = |suffix: &str| format!("{p}/{suffix}");
        let start_revision = current_revision(&endpoints) + 1;
        let expect = |cli: Cli, expected: &str| {
            let shown = format!("{cli}");
            assert_eq!(ok(cli), expected, "{label}: {shown}");
        };

        expect(at(&follower, &["put", &k("a"), "1"]), "OK\n");
        expect(at(&follower, &["put", &k("b"), "2"]), "OK\n");
        expect(at(&endpoints, &["get", &k("a")]), &format!("{p}/a\n1\n"));
        expect(
            at(&endpoints, &["get", "--prefix", &k("")]),
            &format!("{p}/a\n1\n{p}/b\n2\n"),
        );
        expect(
            at(&endpoints, &["get", "--prefix", &k(""), "--keys-only"]),
            &format!("{p}/a\n\n{p}/b\n\n"),
        );
        expect(
            at(
                &endpoints,
                &[
                    "get",
                    "--prefix",
                    &k(""),
                    "--print-value-only",
                    "--order",
                    "DESCEND",
                ],
            ),
            "2\n1\n",
        );
        expect(
            at(&endpoints, &["get", &k("a"), "--consistency", "s"]),
            &format!("{p}/a\n1\n"),
        );
        expect(at(&endpoints, &["get", &k("nosuch")]), "");
        expect(
            at(&follower, &["put", &k("a"), "3", "--prev-kv"]),
            &format!("OK\n{p}/a\n1\n"),
        );
        expect(at(&follower, &["del", &k("b")]), "1\n");
        expect(at(&follower, &["del", &k("nosuch")]), "0\n");
        expect(
            at(
                &endpoints,
                &["get", &k("a"), "--rev", &start_revision.to_string()],
            ),
            &format!("{p}/a\n1\n"),
        );

        let txn = |script: String| at(&follower, &["txn"]).stdin(script);
        expect(
            txn(format!(
                "val(\"{p}/a\") = \"3\"\n\nput {p}/t yes\nget {p}/a\n\nget {p}/b\n\n"
            )),
            &format!("SUCCESS\n\nOK\n\n{p}/a\n3\n"),
        );
        expect(
            txn(format!(
                "val(\"{p}/a\") = \"nope\"\n\nput {p}/t no\n\nget {p}/t\n\n"
            )),
            &format!("FAILURE\n\n{p}/t\nyes\n"),
        );
        expect(
            at(&follower, &["del", "--prefix", &k(""), "--prev-kv"]),
            &format!("2\n{p}/a\n3\n{p}/t\nyes\n"),
        );

        // History from the first put of this round, on the other follower, then a live event.
        let mut watch = at(
            &other_follower,
            &[
                "watch",
                "--prefix",
                &k(""),
                "--rev",
                &start_revision.to_string(),
            ],
        )
        .spawn()
        .expect("spawn watch");
        let history = [
            "PUT",
            &k("a"),
            "1",
            "PUT",
            &k("b"),
            "2",
            "PUT",
            &k("a"),
            "3",
            "DELETE",
            &k("b"),
            "",
            "PUT",
            &k("t"),
            "yes",
            "DELETE",
            &k("a"),
            "",
            "DELETE",
            &k("t"),
            "",
        ]
        .map(String::from);
        let mut lines = Vec::new();
        while lines.len() < history.len() {
            match watch.next_line(WAIT) {
                Ok(Some(line)) => lines.push(line),
                other => panic!("{label}: watch after {lines:?}: {other:?}"),
            }
        }
        assert_eq!(lines, history, "{label}");
        expect(at(&follower, &["put", &k("live"), "now"]), "OK\n");
        for expected in ["PUT", &k("live"), "now"] {
            assert_eq!(
                watch.next_line(WAIT).expect("a live event").as_deref(),
                Some(expected),
                "{label}"
            );
        }
        drop(watch);

        let revision = current_revision(&endpoints);
        expect(
            at(&endpoints, &["compaction", &revision.to_string()]),
            &format!("compacted revision {revision}\n"),
        );
        let stale = run(at(
            &endpoints,
            &["get", &k("live"), "--rev", &(revision - 1).to_string()],
        ));
        assert_eq!(
            failure(&stale),
            (
                Some(1),
                "Error: etcdserver: mvcc: required revision has been compacted".into()
            ),
            "{label}: {stale:?}"
        );

        let defrag = ok(at(&endpoints, &["defrag", "--cluster"]));
        let mut expected: Vec<String> = cluster
            .client_urls()
            .iter()
            .map(|url| format!("Finished defragmenting etcd member[{url}]"))
            .collect();
        expected.sort();
        assert_eq!(sorted_lines(&defrag), expected, "{label}");

        let path = dir.path().join(format!("{n}.db"));
        let path_text = path.to_string_lossy().to_string();
        expect(
            at(&follower, &["snapshot", "save", &path_text]),
            &format!("Snapshot saved at {path_text}\n"),
        );
        let size = std::fs::metadata(&path).expect("the snapshot file").len();
        assert!(
            size > 32,
            "{label}: a database and its SHA-256, {size} bytes"
        );
        assert!(!dir.path().join(format!("{n}.db.part")).exists(), "{label}");
    }

    // Read-only output in every format is the same from both etcdctls.
    let first = cluster.client_url(0).to_string();
    for format in ["simple", "json", "fields", "protobuf"] {
        same(&first, &["get", "--prefix", "t", "-w", format], as_is);
    }
    same(&endpoints, &["endpoint", "hashkv", "--cluster"], as_is);
}

/// Bad requests through both etcdctls: an empty key, a value over 1.5 MiB, a txn of 129
/// operations or with a duplicate key, future and compacted revisions, a watch from a compacted
/// revision. Each fails with etcd's message, both etcdctls alike, and the cluster then serves.
fn bad_requests_through_etcdctl_get_etcds_errors(server: ServerBinary) {
    let cluster = start(server, 1);
    let endpoints = cluster.endpoints();
    let ours = our_etcdctl();
    for value in ["1", "2", "3"] {
        ok(ctl(&ours, &endpoints).args(["put", "k", value]));
    }
    let revision = current_revision(&endpoints);
    ok(ctl(&ours, &endpoints).args(["compaction", &(revision - 1).to_string()]));

    let too_many: String = (0..129).map(|i| format!("put many/{i} v\n")).collect();
    let cases: Vec<(Vec<String>, Option<String>, &str)> = vec![
        (
            vec!["put".into(), "".into(), "v".into()],
            None,
            "etcdserver: key is not provided",
        ),
        (
            vec!["get".into(), "".into()],
            None,
            "etcdserver: key is not provided",
        ),
        (
            vec!["put".into(), "big".into()],
            Some("x".repeat(1024 * 1024 * 3 / 2 + 1024)),
            "etcdserver: request is too large",
        ),
        (
            vec!["txn".into()],
            Some(format!("\n{too_many}\n\n")),
            "etcdserver: too many operations in txn request",
        ),
        (
            vec!["txn".into()],
            Some("\nput d 1\nput d 2\n\n\n".into()),
            "etcdserver: duplicate key given in txn request",
        ),
        (
            vec![
                "get".into(),
                "k".into(),
                "--rev".into(),
                (revision + 10).to_string(),
            ],
            None,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            vec![
                "get".into(),
                "k".into(),
                "--rev".into(),
                (revision - 2).to_string(),
            ],
            None,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            vec!["compaction".into(), (revision - 1).to_string()],
            None,
            "etcdserver: mvcc: required revision has been compacted",
        ),
    ];
    for (args, stdin, message) in cases {
        let outputs: Vec<CmdOutput> = etcdctls()
            .iter()
            .map(|(_, bin)| {
                let cli = ctl(bin, &endpoints).args(&args);
                run(match &stdin {
                    Some(input) => cli.stdin(input.clone()),
                    None => cli,
                })
            })
            .collect();
        assert_eq!(
            failure(&outputs[1]),
            (Some(1), format!("Error: {message}")),
            "{args:?}: {:?}",
            outputs[1]
        );
        assert_eq!(
            shown(&outputs[1]),
            shown(&outputs[0]),
            "{args:?}: ours (left), etcdctl 3.4 (right)"
        );
    }
    let watch = same(
        &endpoints,
        &["watch", "k", "--rev", &(revision - 2).to_string()],
        as_is,
    );
    assert_eq!(watch.code(), Some(5), "{watch:?}");
    assert_eq!(
        without_logs(&watch.stderr),
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
         Error: watch is canceled by the server\n",
        "{watch:?}"
    );

    // Nothing refused was applied, and the member serves.
    assert_eq!(current_revision(&endpoints), revision);
    for (label, bin) in etcdctls() {
        assert_eq!(
            ok(ctl(&bin, &endpoints).args(["put", "after", label])),
            "OK\n"
        );
        assert_eq!(
            ok(ctl(&bin, &endpoints).args(["get", "after", "--print-value-only"])),
            format!("{label}\n")
        );
        assert_eq!(
            ok(ctl(&bin, &endpoints).args(["get", "--prefix", "many/", "--keys-only"])),
            ""
        );
    }
}
