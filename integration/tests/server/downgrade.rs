//! The cluster version and the Downgrade API (etcd 3.5) through our binaries on a three-member
//! cluster: the version the leader decides, `etcdctl downgrade validate|enable|cancel` (etcdctl
//! 3.6's command and output) with each of etcd's errors, the state kept across restarts, the
//! start check that refuses a member while a downgrade is enabled, and the peer endpoints. etcd
//! 3.4 has no Downgrade RPC: what it answers is pinned on it alone.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use client::api::etcdserverpb::downgrade_request::DowngradeAction;
use client::api::etcdserverpb::DowngradeRequest;
use client::go_code_name;
use common::*;
use integration::{server_tests, Cli, Cluster, CmdOutput, ServerBinary};
use testkit::{eventually, eventually_async};

/// One HTTP/1.1 exchange with `base` (`http://host:port`): status and body.
fn http(method: &str, base: &str, path: &str) -> (u16, String) {
    let host = base.strip_prefix("http://").expect("a plain http URL");
    let mut conn = TcpStream::connect(host).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("a status line"), body.to_string())
}

/// The string value of `"field":"..."` in a flat JSON object.
fn json_string(body: &str, field: &str) -> String {
    let start = format!("\"{field}\":\"");
    let rest = &body[body
        .find(&start)
        .unwrap_or_else(|| panic!("{field} in {body}"))
        + start.len()..];
    rest[..rest.find('"').expect("a closing quote")].to_string()
}

/// `/version`'s `etcdcluster` at `base`.
fn cluster_version_at(base: &str) -> String {
    let (status, body) = http("GET", base, "/version");
    assert_eq!(status, 200, "{base}/version: {body}");
    json_string(&body, "etcdcluster")
}

/// Waits until every member's client and peer `/version` report `expected` as the cluster version.
fn wait_cluster_version(cluster: &Cluster, expected: &str) {
    eventually(WAIT, &format!("cluster version {expected}"), || {
        (0..cluster.size()).all(|i| {
            cluster_version_at(cluster.client_url(i)) == expected
                && cluster_version_at(cluster.peer_url(i)) == expected
        })
    });
}

fn etcdctl(cluster: &Cluster, args: &[&str]) -> CmdOutput {
    let cli: Cli = cluster.cli(our_etcdctl()).args(args);
    cli.run().unwrap_or_else(|e| panic!("{e}"))
}

/// Exit code, stdout, stderr.
fn shown(out: &CmdOutput) -> (Option<i32>, String, String) {
    (out.code(), out.stdout.clone(), out.stderr.clone())
}

fn failed(message: &str) -> (Option<i32>, String, String) {
    (Some(1), String::new(), format!("Error: {message}\n"))
}

fn succeeded(line: &str) -> (Option<i32>, String, String) {
    (Some(0), format!("{line}\n"), String::new())
}

server_tests! {
    fn the_cluster_version_is_the_lowest_member_version;
}

/// Every member reports the cluster version the leader decided (the lowest member major.minor) on
/// its client and peer `/version`, beside its own server version.
fn the_cluster_version_is_the_lowest_member_version(server: ServerBinary) {
    let etcd34 = server.path() == ServerBinary::real_etcd().path();
    let cluster = start(server, 3);
    let expected = if etcd34 { "3.4.0" } else { "3.5.0" };
    wait_cluster_version(&cluster, expected);
    let (_, body) = http("GET", cluster.peer_url(0), "/version");
    let server_version = json_string(&body, "etcdserver");
    assert!(
        server_version.starts_with(&expected[..4]),
        "{server_version} vs {expected}"
    );
    assert_eq!(http("POST", cluster.peer_url(0), "/version").0, 405);
}

/// etcd 3.4 has no Downgrade RPC (gRPC answers Unimplemented) and no peer `/downgrade/enabled`.
#[test]
fn etcd34_has_no_downgrade() {
    let cluster = start(ServerBinary::real_etcd(), 1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let c = connect(&cluster.client_urls()).await;
        let e = c
            .downgrade(DowngradeRequest {
                action: DowngradeAction::Validate as i32,
                version: "3.3".into(),
            })
            .await
            .expect_err("etcd 3.4 does not downgrade");
        assert_eq!(e.code().map(go_code_name), Some("Unimplemented"), "{e:?}");
    });
    assert_eq!(
        http("GET", cluster.peer_url(0), "/downgrade/enabled").0,
        404
    );
}

/// VALIDATE, ENABLE and CANCEL with each of etcd's errors through our etcdctl and client; the
/// enabled downgrade refuses a restarted member (its major.minor is not the target's), CANCEL
/// lets members restart again, and the peer port tells whether a downgrade is enabled.
#[test]
fn downgrade_validate_enable_cancel_on_etcd_rs() {
    let mut cluster = start_with(
        integration::server_tests::etcd_rs_or_panic(),
        3,
        &["--experimental-downgrade-check-time", "1s"],
    );
    wait_cluster_version(&cluster, "3.5.0");

    // etcdctl's own checks, before any request.
    let no_target = etcdctl(&cluster, &["downgrade", "validate"]);
    assert_eq!(
        (no_target.code(), no_target.stderr.as_str()),
        (Some(128), "Error: TARGET_VERSION not provided\n")
    );
    let two = etcdctl(&cluster, &["downgrade", "enable", "3.4", "3.3"]);
    assert_eq!(
        (two.code(), two.stderr.as_str()),
        (Some(128), "Error: too many arguments\n")
    );
    let empty = etcdctl(&cluster, &["downgrade", "enable", ""]);
    assert_eq!(
        (empty.code(), empty.stderr.as_str()),
        (Some(128), "Error: target version not provided\n")
    );

    // The server's errors.
    for bad in ["3", "3.x", "v3.4", "3.4.0.1", "x.4"] {
        assert_eq!(
            shown(&etcdctl(&cluster, &["downgrade", "validate", bad])),
            failed("etcdserver: wrong downgrade target version format"),
            "{bad}"
        );
    }
    for wrong in ["3.3", "3.5", "3.6.0", "4.4"] {
        assert_eq!(
            shown(&etcdctl(&cluster, &["downgrade", "enable", wrong])),
            failed("etcdserver: invalid downgrade target version"),
            "{wrong}"
        );
    }
    assert_eq!(
        shown(&etcdctl(&cluster, &["downgrade", "cancel"])),
        failed("etcdserver: no inflight downgrade job")
    );
    for i in 0..3 {
        let (status, body) = http("GET", cluster.peer_url(i), "/downgrade/enabled");
        assert_eq!((status, body.as_str()), (200, "false"), "member {i}");
    }

    // VALIDATE passes for X.Y and X.Y.Z one minor below; the output formats as etcdctl 3.6's.
    for target in ["3.4", "3.4.23"] {
        assert_eq!(
            shown(&etcdctl(&cluster, &["downgrade", "validate", target])),
            succeeded("Downgrade validate success, cluster version 3.5.0")
        );
    }
    let json = etcdctl(&cluster, &["-w", "json", "downgrade", "validate", "3.4"]);
    assert_eq!(json_string(&json.stdout, "version"), "3.5.0");
    assert!(json.stdout.contains("\"cluster_id\":"), "{}", json.stdout);
    let table = etcdctl(&cluster, &["-w", "table", "downgrade", "validate", "3.4"]);
    assert_eq!(
        (table.code(), table.stderr.as_str()),
        (Some(4), "Error: table not supported as output format\n")
    );

    assert_eq!(
        shown(&etcdctl(&cluster, &["downgrade", "enable", "3.4.9"])),
        succeeded("Downgrade enable success, cluster version 3.5.0")
    );
    for args in [
        ["downgrade", "validate", "3.4"],
        ["downgrade", "enable", "3.4"],
    ] {
        assert_eq!(
            shown(&etcdctl(&cluster, &args)),
            failed("etcdserver: cluster has a downgrade job in progress"),
            "{args:?}"
        );
    }
    for i in 0..3 {
        let (status, body) = http("GET", cluster.peer_url(i), "/downgrade/enabled");
        assert_eq!((status, body.as_str()), (200, "true"), "member {i}");
    }
    assert_eq!(
        http("POST", cluster.peer_url(0), "/downgrade/enabled").0,
        405
    );
    // Every member still runs 3.5, so the leader's check (every second here) does not cancel.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        http("GET", cluster.peer_url(1), "/downgrade/enabled").1,
        "true"
    );

    // The enabled downgrade is on disk: a 3.5 member restarted now is refused, as etcd's
    // mustDetectDowngrade refuses it.
    cluster.restart(2).expect("restart member 2");
    eventually(WAIT, "member 2 refuses to start", || !cluster.is_running(2));
    let log = std::fs::read_to_string(cluster.log_path(2)).expect("member 2's log");
    assert!(
        log.contains(
            "invalid downgrade; server version is not allowed to join when downgrade is enabled"
        ) && log.contains("target-cluster-version: 3.4.0"),
        "{}",
        cluster.log_tail(2)
    );

    // CANCEL on the remaining quorum; then a member restarts again.
    let two_members = format!("{},{}", cluster.client_url(0), cluster.client_url(1));
    let cancel = Cli::new(our_etcdctl())
        .arg(format!("--endpoints={two_members}"))
        .args(["downgrade", "cancel"])
        .run()
        .expect("etcdctl");
    assert_eq!(
        shown(&cancel),
        succeeded("Downgrade cancel success, cluster version 3.5.0")
    );
    // A linearizable read on each: both have applied the cancel before member 1 stops.
    for i in 0..2 {
        assert_eq!(
            http("GET", cluster.peer_url(i), "/downgrade/enabled").1,
            "false"
        );
    }
    cluster.restart(1).expect("restart member 1");
    cluster
        .wait_healthy(1, WAIT)
        .expect("member 1 starts once the downgrade is canceled");
    assert_eq!(
        http("GET", cluster.peer_url(1), "/downgrade/enabled").1,
        "false"
    );
}

/// The gRPC codes of the Downgrade errors, and an unknown action.
#[tokio::test(flavor = "multi_thread")]
async fn downgrade_errors_carry_etcds_codes_on_etcd_rs() {
    let cluster = start(integration::server_tests::etcd_rs_or_panic(), 1);
    blocking(|| wait_cluster_version(&cluster, "3.5.0"));
    let c = connect(&cluster.client_urls()).await;
    let call = |action: i32, version: &str| {
        let c = c.clone();
        let version = version.to_string();
        async move { c.downgrade(DowngradeRequest { action, version }).await }
    };
    let expect = |result: client::Result<_>, code: &str, message: &str| match result {
        Err(e) => assert_eq!(
            (e.code().map(go_code_name), e.server_message()),
            (Some(code), Some(message)),
            "{e:?}"
        ),
        Ok(r) => panic!("expected {message}, got {r:?}"),
    };
    let (validate, enable, cancel) = (
        DowngradeAction::Validate as i32,
        DowngradeAction::Enable as i32,
        DowngradeAction::Cancel as i32,
    );
    expect(
        call(validate, "three").await,
        "InvalidArgument",
        "etcdserver: wrong downgrade target version format",
    );
    expect(
        call(validate, "3.3").await,
        "InvalidArgument",
        "etcdserver: invalid downgrade target version",
    );
    expect(
        call(cancel, "").await,
        "FailedPrecondition",
        "etcdserver: no inflight downgrade job",
    );
    expect(
        call(7, "3.4").await,
        "Unknown",
        "etcdserver: unknown method",
    );
    let ok = call(enable, "3.4").await.expect("enable");
    assert_eq!(ok.version, "3.5.0");
    assert!(ok.header.is_some_and(|h| h.member_id != 0));
    expect(
        call(enable, "3.4").await,
        "FailedPrecondition",
        "etcdserver: cluster has a downgrade job in progress",
    );
    let canceled = call(cancel, "").await.expect("cancel");
    assert_eq!(canceled.version, "3.5.0");
    eventually_async(WAIT, "validate passes again", || async {
        call(validate, "3.4").await.is_ok()
    })
    .await;
}
