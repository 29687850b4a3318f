//! Permission checks on every RPC outside the Auth service, on real processes: etcd 3.4 and our
//! `etcd` answer the same etcdctl 3.4 commands with the same outputs and exit codes (read-only and
//! write-only roles on a prefix, range and from-key grants, permission changes, leases, admin-only
//! RPCs, no token at all, Lock and Election, a three-member cluster across a leader change).
//!
//! Where etcd 3.4.23 and the later 3.4/3.5 patch releases differ (Compact, MoveLeader, Alarm,
//! Status, MemberList and the lease listings became checked), ours follows the later releases;
//! those checks are pinned on our server only, at the end of the file.

use crate::common;

use std::time::Duration;

use client::api::etcdserverpb::alarm_request::AlarmAction;
use client::api::etcdserverpb::auth_client::AuthClient;
use client::api::etcdserverpb::kv_client::KvClient;
use client::api::etcdserverpb::maintenance_client::MaintenanceClient;
use client::api::etcdserverpb::request_op::Request as Op;
use client::api::etcdserverpb::watch_client::WatchClient;
use client::api::etcdserverpb::watch_request::RequestUnion;
use client::api::etcdserverpb::{
    AlarmRequest, AlarmType, AuthenticateRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use client::api::v3electionpb::election_client::ElectionClient;
use client::api::v3electionpb::CampaignRequest;
use client::api::v3lockpb::lock_client::LockClient;
use client::api::v3lockpb::LockRequest;
use common::*;
use integration::output::without_logs;
use integration::{real_etcdctl, server_tests, Cluster, ServerBinary};
use tonic::transport::Channel;
use tonic::{Code, Status};

server_tests! {
    fn a_read_only_role_reads_its_prefix_and_nothing_else;
    fn a_write_only_role_writes_without_reading;
    fn range_grants_cover_only_what_they_name;
    fn permission_changes_take_effect_at_once;
    async fn an_old_simple_token_keeps_working_after_a_permission_change;
    fn a_lease_is_revoked_only_by_who_may_write_its_keys;
    fn admin_rpcs_are_refused_to_a_user_without_the_root_role;
    fn without_a_token_the_user_name_is_empty;
    fn etcdctl_lock_and_elect_need_the_lock_prefix;
    async fn the_lock_and_election_services_act_as_the_caller;
    async fn a_denied_watch_is_canceled_with_permission_denied;
    fn three_members_keep_enforcing_after_a_leader_change;
}

const ROOT: &str = "root:rootpw";
const READER: &str = "ro:ropw";
const WRITER: &str = "wo:wopw";
const DENIED: &str = "Error: etcdserver: permission denied\n";
const USER_EMPTY: &str = "Error: etcdserver: user name is empty\n";

/// etcdctl 3.4's exit code, stdout and stderr (without the client's log lines).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn answer(cluster: &Cluster, user: Option<&str>, args: &[&str]) -> Answer {
    let mut cli = cluster.cli(real_etcdctl());
    if let Some(user) = user {
        cli = cli.arg(format!("--user={user}"));
    }
    let out = cli
        .args(args)
        .run()
        .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    Answer {
        code: out.code(),
        stdout: out.stdout,
        stderr: without_logs(&out.stderr),
    }
}

fn ok(cluster: &Cluster, user: Option<&str>, args: &[&str]) -> String {
    let a = answer(cluster, user, args);
    assert_eq!(a.code, Some(0), "etcdctl --user={user:?} {args:?}: {a:?}");
    a.stdout
}

fn refused(cluster: &Cluster, user: Option<&str>, args: &[&str], code: i32, stderr: &str) {
    let a = answer(cluster, user, args);
    let expected = Answer {
        code: Some(code),
        stdout: String::new(),
        stderr: stderr.to_owned(),
    };
    assert_eq!(a, expected, "etcdctl --user={user:?} {args:?}");
}

fn denied(cluster: &Cluster, user: &str, args: &[&str]) {
    refused(cluster, Some(user), args, 1, DENIED);
}

fn root(cluster: &Cluster, args: &[&str]) -> String {
    ok(cluster, Some(ROOT), args)
}

/// Users `root` (role root), `ro` (READ on `/a/`), `wo` (WRITE on `/a/`), then auth on; the keys
/// `/a/x` = 1 and `/b/y` = 2 exist.
fn secured(server: ServerBinary, size: usize) -> Cluster {
    let cluster = start(server, size);
    for args in [
        &["user", "add", ROOT][..],
        &["user", "add", READER],
        &["user", "add", WRITER],
        &["role", "add", "r"],
        &["role", "add", "w"],
        &["role", "grant-permission", "r", "read", "/a/", "--prefix"],
        &["role", "grant-permission", "w", "write", "/a/", "--prefix"],
        &["user", "grant-role", "ro", "r"],
        &["user", "grant-role", "wo", "w"],
        &["put", "/a/x", "1"],
        &["put", "/b/y", "2"],
    ] {
        ok(&cluster, None, args);
    }
    // etcdctl grants root the root role itself when the server asks for it.
    assert_eq!(
        ok(&cluster, None, &["auth", "enable"]),
        "Authentication Enabled\n"
    );
    cluster
}

fn a_read_only_role_reads_its_prefix_and_nothing_else(server: ServerBinary) {
    let c = secured(server, 1);
    let ro = Some(READER);
    assert_eq!(ok(&c, ro, &["get", "/a/x"]), "/a/x\n1\n");
    assert_eq!(ok(&c, ro, &["get", "/a/", "--prefix"]), "/a/x\n1\n");
    assert_eq!(ok(&c, ro, &["get", "/a/nothing"]), "");
    denied(&c, READER, &["put", "/a/x", "2"]);
    denied(&c, READER, &["del", "/a/x"]);
    denied(&c, READER, &["get", "/b/y"]);
    // A range reaching past the grant is refused as a whole.
    denied(&c, READER, &["get", "/", "--prefix"]);
    denied(&c, READER, &["get", "/a/", "/c"]);
    // A txn whose compare reads outside the prefix, even with ops inside it.
    let txn = |compare: &str| {
        answer_with_stdin(
            &c,
            READER,
            &["txn"],
            &format!("{compare}\n\nget /a/x\n\nget /a/x\n\n"),
        )
    };
    assert_eq!(
        txn(r#"value("/b/y") = "2""#),
        Answer {
            code: Some(1),
            stdout: String::new(),
            stderr: DENIED.into()
        }
    );
    assert_eq!(txn(r#"value("/a/x") = "1""#).stdout, "SUCCESS\n\n/a/x\n1\n");
    // Nothing was written by the refused requests.
    assert_eq!(root(&c, &["get", "/a/x"]), "/a/x\n1\n");
    assert_eq!(root(&c, &["get", "/b/y"]), "/b/y\n2\n");
}

fn answer_with_stdin(cluster: &Cluster, user: &str, args: &[&str], stdin: &str) -> Answer {
    let out = cluster
        .cli(real_etcdctl())
        .arg(format!("--user={user}"))
        .args(args)
        .stdin(stdin)
        .run()
        .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    Answer {
        code: out.code(),
        stdout: out.stdout,
        stderr: without_logs(&out.stderr),
    }
}

fn a_write_only_role_writes_without_reading(server: ServerBinary) {
    let c = secured(server, 1);
    let wo = Some(WRITER);
    assert_eq!(ok(&c, wo, &["put", "/a/x", "5"]), "OK\n");
    assert_eq!(ok(&c, wo, &["put", "/a/new", "6"]), "OK\n");
    denied(&c, WRITER, &["get", "/a/x"]);
    // The previous value is a read.
    denied(&c, WRITER, &["put", "/a/x", "7", "--prev-kv"]);
    denied(&c, WRITER, &["del", "/a/x", "--prev-kv"]);
    denied(&c, WRITER, &["put", "/b/y", "8"]);
    assert_eq!(ok(&c, wo, &["del", "/a/new"]), "1\n");
    assert_eq!(root(&c, &["get", "/a/", "--prefix"]), "/a/x\n5\n");
    assert_eq!(root(&c, &["get", "/b/y"]), "/b/y\n2\n");
}

fn range_grants_cover_only_what_they_name(server: ServerBinary) {
    let c = secured(server, 1);
    for args in [
        &["role", "add", "span"][..],
        &["role", "grant-permission", "span", "read", "/r/a", "/r/m"],
        &["user", "add", "spanner:pw"],
        &["user", "grant-role", "spanner", "span"],
        &["role", "add", "from"],
        &[
            "role",
            "grant-permission",
            "from",
            "read",
            "/f",
            "--from-key",
        ],
        &["user", "add", "fromer:pw"],
        &["user", "grant-role", "fromer", "from"],
        &["put", "/r/b", "rb"],
        &["put", "/zzz", "z"],
    ] {
        root(&c, args);
    }
    let span = Some("spanner:pw");
    assert_eq!(ok(&c, span, &["get", "/r/a", "/r/m"]), "/r/b\nrb\n");
    assert_eq!(ok(&c, span, &["get", "/r/b"]), "/r/b\nrb\n");
    // The end of a grant is excluded; a request past it is refused.
    denied(&c, "spanner:pw", &["get", "/r/m"]);
    denied(&c, "spanner:pw", &["get", "/r/a", "/r/z"]);
    denied(&c, "spanner:pw", &["get", "/r/", "--prefix"]);

    let from = Some("fromer:pw");
    assert_eq!(ok(&c, from, &["get", "/zzz"]), "/zzz\nz\n");
    assert_eq!(ok(&c, from, &["get", "/f", "/g"]), "");
    assert_eq!(
        ok(&c, from, &["get", "/f", "--from-key", "--keys-only"]),
        "/r/b\n\n/zzz\n\n"
    );
    denied(&c, "fromer:pw", &["get", "/e"]);
    denied(&c, "fromer:pw", &["get", "/e", "--from-key"]);
    denied(&c, "fromer:pw", &["get", "/e", "/g"]);
}

fn permission_changes_take_effect_at_once(server: ServerBinary) {
    let c = secured(server, 1);
    let ro = Some(READER);
    assert_eq!(ok(&c, ro, &["get", "/a/x"]), "/a/x\n1\n");
    root(&c, &["role", "revoke-permission", "r", "/a/", "--prefix"]);
    denied(&c, READER, &["get", "/a/x"]);
    root(
        &c,
        &["role", "grant-permission", "r", "read", "/a/", "--prefix"],
    );
    assert_eq!(ok(&c, ro, &["get", "/a/x"]), "/a/x\n1\n");
    // Revoking the role from the user, then deleting the role.
    root(&c, &["user", "revoke-role", "ro", "r"]);
    denied(&c, READER, &["get", "/a/x"]);
    root(&c, &["user", "grant-role", "ro", "r"]);
    assert_eq!(ok(&c, ro, &["get", "/a/x"]), "/a/x\n1\n");
    root(&c, &["role", "delete", "r"]);
    denied(&c, READER, &["get", "/a/x"]);
    // A role of the same name created again does not come back to the user.
    root(&c, &["role", "add", "r"]);
    root(
        &c,
        &["role", "grant-permission", "r", "read", "/a/", "--prefix"],
    );
    denied(&c, READER, &["get", "/a/x"]);
}

/// A client of `url` sending `token` with every request.
async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("a client URL")
        .connect()
        .await
        .expect("connect")
}

async fn token(url: &str, user: &str) -> String {
    let (name, password) = user.split_once(':').expect("user:password");
    AuthClient::new(channel(url).await)
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .expect("authenticate")
        .into_inner()
        .token
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("an ASCII token"));
    request
}

fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn code_and_message<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    (status.code(), status.message().to_owned())
}

/// A simple token stands for its user at the auth store's current revision: a permission change
/// after the token was issued applies to it at once, and does not make it stale.
async fn an_old_simple_token_keeps_working_after_a_permission_change(server: ServerBinary) {
    let c = blocking(|| secured(server, 1));
    let url = c.client_url(0).to_owned();
    let token = token(&url, READER).await;
    let mut kv = KvClient::new(channel(&url).await);
    let got = kv
        .range(with_token(range("/a/x"), &token))
        .await
        .expect("range");
    assert_eq!(got.into_inner().kvs[0].value, b"1");
    blocking(|| {
        root(
            &c,
            &["role", "grant-permission", "r", "read", "/b/", "--prefix"],
        )
    });
    let got = kv
        .range(with_token(range("/b/y"), &token))
        .await
        .expect("range with the token from before the grant");
    assert_eq!(got.into_inner().kvs[0].value, b"2");
    blocking(|| root(&c, &["role", "revoke-permission", "r", "/a/", "--prefix"]));
    assert_eq!(
        code_and_message(kv.range(with_token(range("/a/x"), &token)).await),
        (
            Code::PermissionDenied,
            "etcdserver: permission denied".into()
        )
    );
    // Writes are checked at apply with the same identity.
    let put = PutRequest {
        key: "/a/x".into(),
        value: "9".into(),
        ..Default::default()
    };
    assert_eq!(
        code_and_message(kv.put(with_token(put, &token)).await),
        (
            Code::PermissionDenied,
            "etcdserver: permission denied".into()
        )
    );
    // Our client with the same user sees the same.
    let ours = client::Client::connect(
        &[url.as_str()],
        client::ClientOptions {
            credentials: Some(("ro".into(), "ropw".into())),
            ..Default::default()
        },
    )
    .await
    .expect("connect with credentials");
    assert_eq!(ours.get("/b/y").await.expect("get").unwrap().value, b"2");
    let err = ours.get("/a/x").await.expect_err("refused");
    assert!(err.is_message("etcdserver: permission denied"), "{err}");
}

fn a_lease_is_revoked_only_by_who_may_write_its_keys(server: ServerBinary) {
    let c = secured(server, 1);
    let granted = root(&c, &["lease", "grant", "100"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    root(&c, &["put", "/b/leased", "v", &format!("--lease={lease}")]);
    refused(
        &c,
        Some(WRITER),
        &["lease", "revoke", &lease],
        1,
        "Error: failed to revoke lease (etcdserver: permission denied)\n",
    );
    // Attaching a writable key to that lease is refused too: the user could not revoke it.
    denied(
        &c,
        WRITER,
        &["put", "/a/y", "v", &format!("--lease={lease}")],
    );
    assert_eq!(root(&c, &["get", "/b/leased"]), "/b/leased\nv\n");
    assert_eq!(root(&c, &["get", "/a/y"]), "");

    // The user's own lease, on keys it may write.
    let own = ok(&c, Some(WRITER), &["lease", "grant", "100"]);
    let own = own
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    ok(
        &c,
        Some(WRITER),
        &["put", "/a/z", "v", &format!("--lease={own}")],
    );
    assert_eq!(
        ok(&c, Some(WRITER), &["lease", "revoke", &own]),
        format!("lease {own} revoked\n")
    );
    assert_eq!(root(&c, &["get", "/a/z"]), "");
    assert_eq!(
        root(&c, &["lease", "revoke", &lease]),
        format!("lease {lease} revoked\n")
    );
    assert_eq!(root(&c, &["get", "/b/leased"]), "");
}

fn admin_rpcs_are_refused_to_a_user_without_the_root_role(server: ServerBinary) {
    let c = secured(server, 1);
    let url = c.client_url(0).to_owned();
    refused(
        &c,
        Some(READER),
        &["member", "add", "extra", "--peer-urls=http://127.0.0.1:1"],
        1,
        DENIED,
    );
    let members = root(&c, &["member", "list"]);
    let id = members.split(',').next().expect("a member id").to_owned();
    refused(&c, Some(READER), &["member", "remove", &id], 1, DENIED);
    refused(
        &c,
        Some(READER),
        &["member", "update", &id, "--peer-urls=http://127.0.0.1:1"],
        1,
        DENIED,
    );
    refused(&c, Some(READER), &["member", "promote", &id], 1, DENIED);
    // Defragment, Snapshot and HashKV answer with the auth store's own error, code Unknown.
    let raw = "rpc error: code = Unknown desc = auth: permission denied";
    refused(
        &c,
        Some(READER),
        &["defrag"],
        1,
        &format!("Failed to defragment etcd member[{url}] ({raw})\n"),
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("snap.db");
    let db = db.to_str().expect("a UTF-8 path");
    refused(
        &c,
        Some(READER),
        &["snapshot", "save", db],
        5,
        &format!("Error: {raw}\n"),
    );
    refused(
        &c,
        Some(READER),
        &["endpoint", "hashkv"],
        1,
        &format!("Failed to get the hash of endpoint {url} ({raw})\nError: {raw}\n"),
    );
    // Root may.
    assert!(root(&c, &["defrag"]).starts_with("Finished defragmenting etcd member["));
    assert!(root(&c, &["endpoint", "hashkv"]).starts_with(&url));
    root(&c, &["snapshot", "save", db]);
    assert_eq!(root(&c, &["member", "list"]), members);
}

fn without_a_token_the_user_name_is_empty(server: ServerBinary) {
    let c = secured(server, 1);
    let url = c.client_url(0).to_owned();
    refused(&c, None, &["get", "/a/x"], 1, USER_EMPTY);
    refused(&c, None, &["put", "/a/x", "2"], 1, USER_EMPTY);
    refused(&c, None, &["del", "/a/x"], 1, USER_EMPTY);
    refused(
        &c,
        None,
        &["member", "add", "x", "--peer-urls=http://127.0.0.1:1"],
        1,
        USER_EMPTY,
    );
    refused(
        &c,
        None,
        &["defrag"],
        1,
        &format!(
            "Failed to defragment etcd member[{url}] (rpc error: code = Unknown desc = auth: user name is empty)\n"
        ),
    );
    let a = answer(&c, None, &["watch", "/a/x"]);
    assert_eq!(
        (a.code, a.stderr.as_str()),
        (
            Some(5),
            "watch was canceled (rpc error: code = InvalidArgument desc = etcdserver: user name is empty)\nError: watch is canceled by the server\n"
        )
    );
    assert_eq!(root(&c, &["get", "/a/x"]), "/a/x\n1\n");
}

/// etcdctl's `lock` and `elect` run clientv3's recipes: their puts, ranges and watches on the
/// lock prefix are checked as the user's own.
fn etcdctl_lock_and_elect_need_the_lock_prefix(server: ServerBinary) {
    let c = secured(server, 1);
    root(&c, &["role", "add", "lk"]);
    root(
        &c,
        &[
            "role",
            "grant-permission",
            "lk",
            "readwrite",
            "/lk/",
            "--prefix",
        ],
    );
    root(&c, &["user", "add", "locker:pw"]);
    root(&c, &["user", "grant-role", "locker", "lk"]);
    let locker = Some("locker:pw");
    assert_eq!(ok(&c, locker, &["lock", "/lk/m", "echo", "held"]), "held\n");
    denied(&c, "locker:pw", &["lock", "/other", "echo", "held"]);
    denied(&c, READER, &["lock", "/a/m", "echo", "held"]);
    denied(&c, READER, &["elect", "/a/e", "v1"]);
    // A candidate that may write waits as the leader until stopped.
    let mut elect = c
        .cli(real_etcdctl())
        .args(["--user=locker:pw", "elect", "/lk/e", "v1"])
        .spawn()
        .expect("start etcdctl elect");
    let line = elect
        .wait_for_line(WAIT, |l| l == "v1")
        .unwrap_or_else(|e| panic!("elected: {e}"));
    assert_eq!(line, "v1");
    drop(elect);
}

/// The Lock and Election services run their recipes with the caller's token, so the caller
/// needs READ and WRITE on the lock's keys. Refusals come as etcd's in-process client
/// returns them: code Unknown with the server's message.
async fn the_lock_and_election_services_act_as_the_caller(server: ServerBinary) {
    let c = blocking(|| secured(server, 1));
    blocking(|| {
        root(&c, &["role", "add", "lk"]);
        root(
            &c,
            &[
                "role",
                "grant-permission",
                "lk",
                "readwrite",
                "/lk/",
                "--prefix",
            ],
        );
        root(&c, &["user", "add", "locker:pw"]);
        root(&c, &["user", "grant-role", "locker", "lk"]);
    });
    let url = c.client_url(0).to_owned();
    let locker = token(&url, "locker:pw").await;
    let reader = token(&url, READER).await;
    let lease = blocking(|| ok(&c, Some("locker:pw"), &["lease", "grant", "60"]));
    let lease = i64::from_str_radix(lease.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let mut locks = LockClient::new(channel(&url).await);
    let lock = |name: &str| LockRequest {
        name: name.into(),
        lease,
    };
    let held = locks
        .lock(with_token(lock("/lk/m"), &locker))
        .await
        .expect("lock on the user's prefix")
        .into_inner();
    assert!(held.key.starts_with(b"/lk/m/"), "{:?}", held.key);
    let denied = (Code::Unknown, "etcdserver: permission denied".to_owned());
    assert_eq!(
        code_and_message(locks.lock(with_token(lock("/other"), &locker)).await),
        denied
    );
    assert_eq!(
        code_and_message(locks.lock(with_token(lock("/lk/m"), &reader)).await),
        denied
    );
    let mut elections = ElectionClient::new(channel(&url).await);
    let campaign = |name: &str| CampaignRequest {
        name: name.into(),
        lease,
        value: "v".into(),
    };
    let elected = elections
        .campaign(with_token(campaign("/lk/e"), &locker))
        .await
        .expect("campaign on the user's prefix")
        .into_inner();
    assert!(elected.leader.is_some());
    assert_eq!(
        code_and_message(
            elections
                .campaign(with_token(campaign("/other"), &locker))
                .await
        ),
        denied
    );
}

async fn a_denied_watch_is_canceled_with_permission_denied(server: ServerBinary) {
    let c = blocking(|| secured(server, 1));
    let url = c.client_url(0).to_owned();
    let reader = token(&url, READER).await;
    let (requests, inbound) = tokio::sync::mpsc::channel(4);
    let create = |key: &str, range_end: &str| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        })),
    };
    requests.send(create("/b/y", "")).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(inbound);
    let mut responses = WatchClient::new(channel(&url).await)
        .watch(with_token(stream, &reader))
        .await
        .expect("watch stream")
        .into_inner();
    let next = |r: Option<client::api::etcdserverpb::WatchResponse>| r.expect("a response");
    let first = next(responses.message().await.expect("receive"));
    assert!(first.created && first.canceled, "{first:?}");
    assert_eq!(first.watch_id, -1);
    assert_eq!(
        first.cancel_reason,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    // The stream stays: a permitted watch on it works.
    requests.send(create("/a/x", "")).await.unwrap();
    let second = next(responses.message().await.expect("receive"));
    assert!(second.created && !second.canceled, "{second:?}");
    blocking(|| root(&c, &["put", "/a/x", "changed"]));
    let event = next(responses.message().await.expect("receive"));
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"changed");
    // A range wider than the grant.
    requests.send(create("/a/", "/c")).await.unwrap();
    let third = next(responses.message().await.expect("receive"));
    assert!(third.canceled, "{third:?}");
}

fn three_members_keep_enforcing_after_a_leader_change(server: ServerBinary) {
    let mut c = secured(server, 3);
    let check_everywhere = |c: &Cluster| {
        for i in 0..3 {
            let url = c.client_url(i).to_owned();
            let one = |args: &[&str], user: &str| {
                c.cli(real_etcdctl())
                    .arg(format!("--endpoints={url}"))
                    .arg(format!("--user={user}"))
                    .args(args)
                    .run()
                    .expect("etcdctl")
            };
            let put = one(&["put", "/a/x", "w"], READER);
            assert_eq!(
                (put.code(), without_logs(&put.stderr)),
                (Some(1), DENIED.to_owned()),
                "member {i}"
            );
            let get = one(&["get", "/a/x"], READER);
            assert_eq!(get.stdout, "/a/x\n1\n", "member {i}");
        }
    };
    check_everywhere(&c);
    let leader = c.wait_for_leader(WAIT).expect("a leader");
    c.kill(leader).expect("kill the leader");
    let next = (leader + 1) % 3;
    c.wait_healthy(next, WAIT).expect("a new leader");
    denied(&c, READER, &["put", "/a/x", "w"]);
    assert_eq!(ok(&c, Some(WRITER), &["put", "/a/x", "2"]), "OK\n");
    c.restart(leader).expect("restart the old leader");
    c.wait_all_healthy(WAIT).expect("healthy");
    // The restarted member replayed the log: the same decisions, from the same headers.
    for i in 0..3 {
        let url = format!("--endpoints={}", c.client_url(i));
        let got = c
            .cli(real_etcdctl())
            .args([url.as_str(), "--user=root:rootpw", "get", "/a/x"])
            .run_ok()
            .expect("get");
        assert_eq!(got, "/a/x\n2\n", "member {i}");
    }
}

// ---- The checks of the later 3.4/3.5 patch releases, which etcd 3.4.23 does not make.

fn ours_secured() -> Cluster {
    secured(integration::server_tests::etcd_rs_or_panic(), 1)
}

#[test]
fn compact_move_leader_and_alarm_changes_are_for_admins() {
    let c = ours_secured();
    denied(&c, READER, &["compact", "2"]);
    refused(&c, None, &["compact", "2"], 1, USER_EMPTY);
    assert_eq!(root(&c, &["compact", "2"]), "compacted revision 2\n");
    let members = root(&c, &["member", "list"]);
    let id = members.split(',').next().unwrap().to_owned();
    denied(&c, READER, &["move-leader", &id]);
    assert_eq!(ok(&c, Some(READER), &["alarm", "list"]), "");
    // etcdctl's `alarm disarm` deactivates only the alarms it lists: ask directly.
    let url = c.client_url(0).to_owned();
    integration::server_tests::block_on(async move {
        let deactivate = || AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: 0,
            alarm: AlarmType::Nospace as i32,
        };
        let reader = token(&url, READER).await;
        let root = token(&url, ROOT).await;
        let mut maintenance = MaintenanceClient::new(channel(&url).await);
        assert_eq!(
            code_and_message(maintenance.alarm(with_token(deactivate(), &reader)).await),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied".into()
            )
        );
        maintenance
            .alarm(with_token(deactivate(), &root))
            .await
            .expect("root deactivates");
    });
}

#[test]
fn status_member_list_and_alarm_list_need_a_user() {
    let c = ours_secured();
    refused(&c, None, &["member", "list"], 1, USER_EMPTY);
    refused(&c, None, &["alarm", "list"], 1, USER_EMPTY);
    let status = answer(&c, None, &["endpoint", "status"]);
    assert_eq!(status.code, Some(1));
    assert!(
        status.stderr.contains("etcdserver: user name is empty"),
        "{status:?}"
    );
    assert!(ok(&c, Some(READER), &["member", "list"]).contains("started"));
    assert!(ok(&c, Some(READER), &["endpoint", "status"]).contains(c.client_url(0)));
}

#[test]
fn lease_listings_show_keys_only_to_who_may_read_them() {
    let c = ours_secured();
    let granted = root(&c, &["lease", "grant", "100"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    root(&c, &["put", "/b/leased", "v", &format!("--lease={lease}")]);
    // etcdctl exits 2 when these fail.
    refused(
        &c,
        Some(READER),
        &["lease", "timetolive", &lease, "--keys"],
        2,
        DENIED,
    );
    assert!(ok(&c, Some(READER), &["lease", "timetolive", &lease]).contains("granted with TTL"));
    refused(&c, Some(READER), &["lease", "list"], 2, DENIED);
    refused(
        &c,
        None,
        &["lease", "grant", "10"],
        1,
        "Error: failed to grant lease (etcdserver: user name is empty)\n",
    );
    root(
        &c,
        &["role", "grant-permission", "r", "read", "/b/", "--prefix"],
    );
    assert!(
        ok(&c, Some(READER), &["lease", "timetolive", &lease, "--keys"])
            .contains("attached keys([/b/leased])")
    );
    assert_eq!(
        ok(&c, Some(READER), &["lease", "list"]),
        format!("found 1 leases\n{lease}\n")
    );
    assert!(root(&c, &["lease", "list"]).contains(&lease));
}

/// etcd 3.4.42 / 3.5.28 check the ops of nested txns, and 3.4.44 / 3.5.30 give a put in a txn
/// the `prev_kv` check of a plain put; 3.4.23 did neither.
#[test]
fn nested_txns_and_puts_in_txns_are_checked_like_plain_requests() {
    let c = ours_secured();
    let url = c.client_url(0).to_owned();
    integration::server_tests::block_on(async move {
        let writer = token(&url, WRITER).await;
        let mut kv = KvClient::new(channel(&url).await);
        let put = |key: &str, prev_kv: bool| RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.into(),
                value: "t".into(),
                prev_kv,
                ..Default::default()
            })),
        };
        let nested = |ops: Vec<RequestOp>| RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                success: ops,
                ..Default::default()
            })),
        };
        let txn = |success: Vec<RequestOp>| TxnRequest {
            success,
            ..Default::default()
        };
        let denied = (
            Code::PermissionDenied,
            "etcdserver: permission denied".to_owned(),
        );
        kv.txn(with_token(txn(vec![put("/a/t", false)]), &writer))
            .await
            .expect("a txn putting a writable key");
        assert_eq!(
            code_and_message(
                kv.txn(with_token(
                    txn(vec![nested(vec![put("/b/t", false)])]),
                    &writer
                ))
                .await
            ),
            denied
        );
        assert_eq!(
            code_and_message(
                kv.txn(with_token(txn(vec![put("/a/t", true)]), &writer))
                    .await
            ),
            denied
        );
    });
    assert_eq!(root(&c, &["get", "/b/t"]), "");
    assert_eq!(root(&c, &["get", "/a/t"]), "/a/t\nt\n");
}

/// etcd 3.4.23 checked a from-key watch as a watch of its first key only; 3.5.33 checks the
/// whole range.
#[test]
fn a_from_key_watch_needs_the_whole_range() {
    let c = ours_secured();
    let url = c.client_url(0).to_owned();
    integration::server_tests::block_on(async move {
        let reader = token(&url, READER).await;
        let (requests, inbound) = tokio::sync::mpsc::channel(4);
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: "/a/".into(),
                    range_end: vec![0],
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(inbound);
        let mut responses = WatchClient::new(channel(&url).await)
            .watch(with_token(stream, &reader))
            .await
            .expect("watch stream")
            .into_inner();
        let first = responses
            .message()
            .await
            .expect("receive")
            .expect("a response");
        assert!(first.canceled, "{first:?}");
        assert_eq!(
            first.cancel_reason,
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
    });
}

#[test]
fn expired_leases_are_revoked_whoever_owns_their_keys() {
    let c = ours_secured();
    let granted = root(&c, &["lease", "grant", "2"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    root(&c, &["put", "/b/short", "v", &format!("--lease={lease}")]);
    std::thread::sleep(Duration::from_secs(4));
    testkit::poll(WAIT, || match root(&c, &["get", "/b/short"]).as_str() {
        "" => Ok(()),
        other => Err(other.to_owned()),
    })
    .expect("the expired lease's key is gone");
}
