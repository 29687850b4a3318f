//! The corruption checks through the binaries. On both servers: the flags parse as etcd 3.4's and
//! the peer port's `/members/hashkv` answers as etcd's. On a 3-member etcd-rs cluster whose
//! member 2 had one value rewritten offline (`integration::corrupt`): the initial check refuses
//! to start it with etcd's message, and the periodic and compaction hash checks raise CORRUPT,
//! after which writes fail with `etcdserver: corrupt cluster` and reads still work. (etcd 3.4
//! cannot be the control there: its data is a bbolt file our tool does not write.)

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use integration::{corrupt, real_etcdctl, server_tests, Cluster, ServerBinary};
use testkit::eventually;

/// The damaged member.
const DAMAGED: usize = 2;

server_tests! {
    fn corruption_check_flags_parse_as_etcds;
    fn members_hashkv_answers_as_etcds;
}

/// A raw HTTP/1.1 exchange with a peer URL (etcd's hashkv request is a GET with a body, which
/// ordinary clients do not send): status, headers (lower-cased names) and body.
fn peer_request(
    peer_url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let authority = peer_url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the peer port");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "{method} /members/hashkv HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// etcdctl 3.4 through member 0 (never the damaged one, and etcdctl given a stopped member
/// among its endpoints may time out on it).
fn etcdctl(cluster: &Cluster, args: &[&str]) -> integration::CmdOutput {
    cluster
        .cli(real_etcdctl())
        .args(["--endpoints", cluster.client_url(0)])
        .args(args)
        .run()
        .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
}

fn etcdctl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = etcdctl(cluster, args);
    assert!(out.status.success(), "etcdctl {args:?}: {}", out.stderr);
    out.stdout
}

/// `etcdctl endpoint hashkv` of member `i` at `rev`, as etcdctl 3.4 prints it in JSON (the hash
/// only).
fn grpc_hash(cluster: &Cluster, i: usize, rev: i64) -> u64 {
    let out = cluster
        .cli(real_etcdctl())
        .args([
            "--endpoints",
            cluster.client_url(i),
            "endpoint",
            "hashkv",
            "--rev",
            &rev.to_string(),
            "-w",
            "json",
        ])
        .run()
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let at = out.stdout.find("\"hash\":").expect("a hash") + "\"hash\":".len();
    out.stdout[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn corruption_check_flags_parse_as_etcds(server: ServerBinary) {
    let bin = server.path().to_path_buf();
    let refused = |args: &[&str]| {
        let out = integration::run(&bin, args, &[]).unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        out.stderr
    };
    let e = refused(&["--experimental-corrupt-check-time", "bogus"]);
    assert!(
        e.contains(
            "invalid value \"bogus\" for flag -experimental-corrupt-check-time: parse error"
        ),
        "{e}"
    );
    let e = refused(&["--experimental-initial-corrupt-check=maybe"]);
    assert!(e.contains("-experimental-initial-corrupt-check"), "{e}");
    // Accepted with a member serving: both flags, in both spellings.
    let cluster = start_with(
        server,
        1,
        &[
            "--experimental-initial-corrupt-check=true",
            "--experimental-corrupt-check-time=1s",
        ],
    );
    etcdctl_ok(&cluster, &["put", "k", "v"]);
    // A restart with data runs the initial check (no peers: nothing to compare) and serves.
    let mut cluster = cluster;
    cluster.restart(0).unwrap();
    cluster.wait_healthy(0, WAIT).unwrap();
    assert_eq!(
        etcdctl_ok(&cluster, &["get", "k", "--print-value-only"]),
        "v\n"
    );
}

fn members_hashkv_answers_as_etcds(server: ServerBinary) {
    // etcd 3.4 answers the error cases only with the zap logger: with capnslog its handler logs
    // through a nil logger and the connection is dropped.
    let is_etcd34 = server.path() == ServerBinary::real_etcd().path();
    let cluster = start_with(server, 1, &["--logger=zap"]);
    for i in 0..4 {
        etcdctl_ok(&cluster, &["put", &format!("k{i}"), "v"]);
    }
    let peer = cluster.peer_url(0).to_owned();
    // The current revision is 5: four puts on a fresh store.
    let (status, headers, body) = peer_request(&peer, "GET", &[], r#"{"revision":0}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(header(&headers, "x-etcd-cluster-id").is_some());
    let hash = grpc_hash(&cluster, 0, 0);
    assert_eq!(
        body,
        format!(r#"{{"header":{{"revision":5}},"hash":{hash},"compact_revision":-1}}"#)
    );
    let (status, _, body) = peer_request(&peer, "GET", &[], r#"{"revision":3}"#);
    assert_eq!(status, 200);
    let hash3 = grpc_hash(&cluster, 0, 3);
    assert_eq!(
        body,
        format!(r#"{{"header":{{"revision":5}},"hash":{hash3},"compact_revision":-1}}"#)
    );

    let (status, headers, body) = peer_request(&peer, "POST", &[], r#"{"revision":0}"#);
    assert_eq!((status, body.as_str()), (405, "Method Not Allowed\n"));
    assert_eq!(header(&headers, "allow"), Some("GET"));
    let (status, _, body) = peer_request(&peer, "GET", &[], "not json");
    assert_eq!(
        (status, body.as_str()),
        (400, "error unmarshalling request\n")
    );
    let (status, _, body) = peer_request(&peer, "GET", &[], r#"{"revision":100}"#);
    assert_eq!(
        (status, body.as_str()),
        (400, "mvcc: required revision is a future revision\n")
    );
    etcdctl_ok(&cluster, &["compact", "4"]);
    let (status, _, body) = peer_request(&peer, "GET", &[], r#"{"revision":2}"#);
    assert_eq!(
        (status, body.as_str()),
        (400, "mvcc: required revision has been compacted\n")
    );
    // At the compaction revision itself 3.4 answers "compacted"; 3.5 (and we) answer with the
    // hash the compaction recorded, which the compaction hash check asks for.
    let (status, _, body) = peer_request(&peer, "GET", &[], r#"{"revision":4}"#);
    if is_etcd34 {
        assert_eq!(
            (status, body.as_str()),
            (400, "mvcc: required revision has been compacted\n")
        );
    } else {
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with(r#","compact_revision":-1}"#), "{body}");
    }
    let (status, _, body) = peer_request(&peer, "GET", &[], r#"{"revision":0}"#);
    assert_eq!(status, 200);
    assert!(body.ends_with(r#","compact_revision":4}"#), "{body}");
}

/// A 3-member etcd-rs cluster with `extra_args`, some keys written, and member 2 stopped with
/// the newest value of `key-3` rewritten in its backend.
fn cluster_with_a_damaged_member(extra_args: &[&str]) -> Cluster {
    let server = ServerBinary::etcd_rs().expect("build the workspace's etcd first");
    let mut cluster = start_with(server, 3, extra_args);
    for i in 0..10 {
        etcdctl_ok(
            &cluster,
            &["put", &format!("key-{i}"), &format!("value-{i}")],
        );
    }
    // Every member has applied everything before one is stopped.
    let rev = 11;
    eventually(WAIT, "every member at revision 11", || {
        (0..3).all(|i| {
            let out = cluster
                .cli(real_etcdctl())
                .args([
                    "--endpoints",
                    cluster.client_url(i),
                    "get",
                    "key-9",
                    "--consistency=s",
                    "-w",
                    "json",
                ])
                .run()
                .unwrap();
            out.stdout.contains(&format!("\"revision\":{rev}"))
        })
    });
    cluster.stop(DAMAGED).unwrap();
    let damaged =
        corrupt::damage_latest_value(cluster.data_dir(DAMAGED), b"key-3", b"bit rot").unwrap();
    assert_eq!(damaged.revision, 5);
    // The stopped member may have been the leader: a request proposed before the other two
    // elect a new one is lost and times out (as in etcd), so wait for a linearizable read.
    eventually(
        WAIT,
        "the two running members serve a linearizable read",
        || etcdctl(&cluster, &["get", "key-0"]).status.success(),
    );
    cluster
}

fn wait_for_corrupt_alarm(cluster: &Cluster) {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let out = etcdctl(cluster, &["alarm", "list"]);
        // etcdctl 3.4 prints the AlarmMember in protobuf's compact text, which leaves out
        // a zero field: member 0 shows as no memberID at all.
        if out.stdout == "alarm:CORRUPT \n" {
            return;
        }
        last = format!("{}{}", out.stdout, out.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no CORRUPT in alarm list after 30 s; last answer: {last}");
}

/// What CORRUPT blocks, as etcd's corrupt applier: writes; reads go on.
fn check_corrupt_cluster_refuses_writes(cluster: &Cluster) {
    for i in 0..3 {
        let out = cluster
            .cli(real_etcdctl())
            .args(["--endpoints", cluster.client_url(i), "put", "after", "x"])
            .run()
            .unwrap();
        assert!(!out.status.success(), "a put through member {i} must fail");
        assert!(
            out.stderr
                .trim_end()
                .ends_with("Error: etcdserver: corrupt cluster"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        etcdctl_ok(cluster, &["get", "key-1", "--print-value-only"]),
        "value-1\n"
    );
}

#[test]
fn the_initial_check_refuses_to_start_a_member_whose_data_diverged() {
    let mut cluster = cluster_with_a_damaged_member(&[
        "--experimental-initial-corrupt-check",
        "--experimental-corrupt-check-time=0",
    ]);
    cluster.restart(DAMAGED).unwrap();
    eventually(WAIT, "the damaged member exits", || {
        !cluster.is_running(DAMAGED)
    });
    let log = std::fs::read_to_string(cluster.log_path(DAMAGED)).unwrap();
    assert!(
        log.contains("found data inconsistency with peers"),
        "{}",
        cluster.log_tail(DAMAGED)
    );
    // The others serve on, without any alarm.
    assert_eq!(etcdctl_ok(&cluster, &["alarm", "list"]), "");
    etcdctl_ok(&cluster, &["put", "after", "x"]);
}

#[test]
fn an_undamaged_member_passes_the_initial_check() {
    let mut cluster = start_with(
        ServerBinary::etcd_rs().expect("build the workspace's etcd first"),
        3,
        &["--experimental-initial-corrupt-check"],
    );
    etcdctl_ok(&cluster, &["put", "k", "v"]);
    cluster.restart(DAMAGED).unwrap();
    cluster.wait_healthy(DAMAGED, WAIT).unwrap();
    let log = std::fs::read_to_string(cluster.log_path(DAMAGED)).unwrap();
    assert!(
        log.contains("initial corruption checking passed; no corruption"),
        "{}",
        cluster.log_tail(DAMAGED)
    );
}

#[test]
fn the_periodic_check_raises_corrupt_and_writes_are_refused() {
    let mut cluster = cluster_with_a_damaged_member(&["--experimental-corrupt-check-time=1s"]);
    assert_eq!(etcdctl_ok(&cluster, &["alarm", "list"]), "");
    // Not waited healthy: once CORRUPT is raised /health says so.
    cluster.restart(DAMAGED).unwrap();
    wait_for_corrupt_alarm(&cluster);
    check_corrupt_cluster_refuses_writes(&cluster);
}

#[test]
fn the_compaction_hash_check_raises_corrupt() {
    let mut cluster = cluster_with_a_damaged_member(&[
        "--experimental-corrupt-check-time=0",
        "--experimental-compact-hash-check-enabled",
        "--experimental-compact-hash-check-time=1s",
    ]);
    cluster.restart(DAMAGED).unwrap();
    // Nothing compared yet: no compaction recorded a hash.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(etcdctl_ok(&cluster, &["alarm", "list"]), "");
    etcdctl_ok(&cluster, &["compact", "11"]);
    wait_for_corrupt_alarm(&cluster);
    check_corrupt_cluster_refuses_writes(&cluster);
}
