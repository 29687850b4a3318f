//! The Auth service on real processes, against etcd 3.4 and our `etcd`: every `user`, `role` and
//! `auth` command of Debian's etcdctl 3.4 and of ours with etcd's output, errors and exit codes
//! (admin checks, the UserGet/RoleGet self-exceptions, `auth enable` granting root its role,
//! wrong passwords, `--user` flows); an idle simple token expiring after `--auth-token-ttl` and
//! our client authenticating again; JWT tokens surviving a restart where simple tokens do not;
//! users and roles surviving a kill -9 of every member and reaching a member that catches up
//! from a snapshot; bad `--auth-token` values stopping the start.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::api::etcdserverpb::auth_client::AuthClient;
use client::api::etcdserverpb::kv_client::KvClient;
use client::api::etcdserverpb::{AuthUserListRequest, AuthenticateRequest, PutRequest};
use client::{Client, ClientOptions};
use common::*;
use integration::output::without_logs;
use integration::{server_tests, Cli, Cluster, ClusterSpec, Error, ServerBinary};
use testkit::eventually_async;
use tonic::transport::Channel;
use tonic::{Code, Request};

server_tests! {
    fn user_role_and_auth_commands_answer_as_etcd;
    async fn an_idle_simple_token_expires_and_our_client_authenticates_again;
    async fn jwt_tokens_survive_a_restart_and_simple_tokens_do_not;
    async fn users_and_roles_survive_kill_9_of_every_member_and_a_snapshot_catch_up;
    fn bad_auth_token_flags_stop_the_start_with_etcds_message;
}

const ROOT: [&str; 2] = ["--user", "root:rootpw"];
const ALICE: [&str; 2] = ["--user", "alice:newpw"];

/// What a command must answer: its stdout (exit 0), or the last line of its stderr, client
/// logs dropped, and its exit code.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Prints(&'static str),
    Fails(&'static str, i32),
}
use Expect::{Fails, Prints};

/// One etcdctl command: its arguments, what it reads on stdin, what it must answer.
struct Step {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
    expect: Expect,
}

fn step(args: &[&'static str], expect: Expect) -> Step {
    Step {
        args: args.to_vec(),
        stdin: None,
        expect,
    }
}

fn typed(args: &[&'static str], stdin: &'static str, expect: Expect) -> Step {
    Step {
        stdin: Some(stdin),
        ..step(args, expect)
    }
}

fn as_user(user: [&'static str; 2], args: &[&'static str], expect: Expect) -> Step {
    step(&[&user[..], args].concat(), expect)
}

const USER_NOT_FOUND: Expect = Fails("Error: etcdserver: user name not found", 1);
const ROLE_NOT_FOUND: Expect = Fails("Error: etcdserver: role name not found", 1);
const DENIED: Expect = Fails("Error: etcdserver: permission denied", 1);
const NO_USER: Expect = Fails("Error: etcdserver: user name is empty", 1);
const BAD_MGMT: Expect = Fails("Error: etcdserver: invalid auth management", 1);
const AUTH_FAILED: Expect = Fails(
    "Error: etcdserver: authentication failed, invalid user ID or password",
    2,
);

/// The whole life of users and roles, from an empty auth store back to one: every command once
/// with auth off, then `auth enable`, the admin checks and self-exceptions, `auth disable`, and
/// the clean-up. What each prints was taken from etcd 3.4 with its etcdctl.
fn scenario() -> Vec<Step> {
    let role_r1_full = "Role r1\nKV Read:\n\t[a, b) (prefix a)\n\tk\n\t[z, <open ended>\n\
                        KV Write:\n\tk\n\t[p/, p0) (prefix p/)\n\t[z, <open ended>\n";
    let role_r1 = "Role r1\nKV Read:\n\tk\nKV Write:\n\tk\n";
    let alice_detail = "User: alice\n\nRole r1\nKV Read:\n\tk\nKV Write:\n\tk\n";
    vec![
        step(
            &["auth", "enable"],
            Fails("Error: etcdserver: root user does not exist", 1),
        ),
        step(
            &["user", "add", "root:rootpw"],
            Prints("User root created\n"),
        ),
        step(
            &[
                "user",
                "add",
                "alice",
                "--new-user-password=apw",
                "--interactive=false",
            ],
            Prints("User alice created\n"),
        ),
        typed(
            &["user", "add", "bob", "--interactive=false"],
            "bobpw\n",
            Prints("User bob created\n"),
        ),
        step(
            &["user", "add", "nopw", "--no-password"],
            Prints("User nopw created\n"),
        ),
        step(
            &["user", "add", "alice:x"],
            Fails("Error: etcdserver: user name already exists", 1),
        ),
        step(&["user", "get", "root"], Prints("User: root\nRoles:\n")),
        step(&["user", "get", "root", "--detail"], Prints("User: root\n")),
        step(&["user", "get", "nosuch"], USER_NOT_FOUND),
        step(&["user", "list"], Prints("alice\nbob\nnopw\nroot\n")),
        step(&["user", "delete", "nosuch"], USER_NOT_FOUND),
        typed(
            &["user", "passwd", "alice", "--interactive=false"],
            "newpw\n",
            Prints("Password updated\n"),
        ),
        typed(
            &["user", "passwd", "nosuch", "--interactive=false"],
            "x\n",
            USER_NOT_FOUND,
        ),
        step(&["role", "add", "r1"], Prints("Role r1 created\n")),
        step(
            &["role", "add", "r1"],
            Fails("Error: etcdserver: role name already exists", 1),
        ),
        step(
            &["role", "get", "r1"],
            Prints("Role r1\nKV Read:\nKV Write:\n"),
        ),
        step(&["role", "get", "nosuch"], ROLE_NOT_FOUND),
        step(&["role", "list"], Prints("r1\n")),
        step(
            &["role", "grant-permission", "r1", "read", "a", "b"],
            Prints("Role r1 updated\n"),
        ),
        step(
            &["role", "grant-permission", "r1", "--prefix", "write", "p/"],
            Prints("Role r1 updated\n"),
        ),
        step(
            &[
                "role",
                "grant-permission",
                "r1",
                "--from-key",
                "readwrite",
                "z",
            ],
            Prints("Role r1 updated\n"),
        ),
        step(
            &["role", "grant-permission", "r1", "readwrite", "k"],
            Prints("Role r1 updated\n"),
        ),
        step(
            &["role", "grant-permission", "nosuch", "read", "k"],
            ROLE_NOT_FOUND,
        ),
        step(&["role", "get", "r1"], Prints(role_r1_full)),
        step(
            &["role", "revoke-permission", "r1", "a", "b"],
            Prints("Permission of range [a, b) is revoked from role r1\n"),
        ),
        step(
            &["role", "revoke-permission", "r1", "a", "b"],
            Fails(
                "Error: etcdserver: permission is not granted to the role",
                1,
            ),
        ),
        step(
            &["role", "revoke-permission", "r1", "--prefix", "p/"],
            Prints("Permission of range [p/, p0) is revoked from role r1\n"),
        ),
        step(
            &["role", "revoke-permission", "r1", "--from-key", "z"],
            Prints("Permission of range [z, <open ended> is revoked from role r1\n"),
        ),
        step(
            &["role", "revoke-permission", "nosuch", "k"],
            ROLE_NOT_FOUND,
        ),
        step(&["role", "get", "r1"], Prints(role_r1)),
        step(
            &["user", "grant-role", "alice", "r1"],
            Prints("Role r1 is granted to user alice\n"),
        ),
        step(
            &["user", "grant-role", "alice", "r1"],
            Prints("Role r1 is granted to user alice\n"),
        ),
        step(&["user", "grant-role", "alice", "nosuch"], ROLE_NOT_FOUND),
        step(&["user", "grant-role", "nosuch", "r1"], USER_NOT_FOUND),
        step(
            &["user", "get", "alice"],
            Prints("User: alice\nRoles: r1\n"),
        ),
        step(&["user", "get", "alice", "--detail"], Prints(alice_detail)),
        step(
            &["user", "revoke-role", "alice", "r1"],
            Prints("Role r1 is revoked from user alice\n"),
        ),
        step(
            &["user", "revoke-role", "alice", "r1"],
            Fails("Error: etcdserver: role is not granted to the user", 1),
        ),
        step(&["user", "revoke-role", "nosuch", "r1"], USER_NOT_FOUND),
        // root has no root role yet: etcdctl grants it and enables again.
        step(&["auth", "enable"], Prints("Authentication Enabled\n")),
        step(&["user", "list"], NO_USER),
        step(&["auth", "enable"], NO_USER),
        as_user(ROOT, &["role", "list"], Prints("r1\nroot\n")),
        as_user(
            ROOT,
            &["user", "get", "root"],
            Prints("User: root\nRoles: root\n"),
        ),
        as_user(
            ROOT,
            &["role", "get", "root"],
            Prints("Role root\nKV Read:\nKV Write:\n"),
        ),
        as_user(
            ROOT,
            &["auth", "enable"],
            Prints("Authentication Enabled\n"),
        ),
        step(&["--user", "root:wrong", "user", "list"], AUTH_FAILED),
        step(&["--user", "nosuch:pw", "user", "list"], AUTH_FAILED),
        step(
            &["--user", "nopw:x", "user", "list"],
            Fails(
                "Error: rpc error: code = Unknown desc = auth: authentication failed, \
                 password was given for no password user",
                2,
            ),
        ),
        step(
            &["--user", "root", "--password", "rootpw", "user", "list"],
            Prints("alice\nbob\nnopw\nroot\n"),
        ),
        as_user(
            ROOT,
            &["user", "grant-role", "alice", "r1"],
            Prints("Role r1 is granted to user alice\n"),
        ),
        // A user without the root role reads itself and its roles, and nothing else.
        as_user(
            ALICE,
            &["user", "get", "alice"],
            Prints("User: alice\nRoles: r1\n"),
        ),
        as_user(
            ALICE,
            &["user", "get", "alice", "--detail"],
            Prints(alice_detail),
        ),
        as_user(ALICE, &["role", "get", "r1"], Prints(role_r1)),
        as_user(ALICE, &["user", "get", "root"], DENIED),
        as_user(ALICE, &["role", "get", "root"], DENIED),
        as_user(ALICE, &["user", "list"], DENIED),
        as_user(ALICE, &["role", "list"], DENIED),
        as_user(ALICE, &["user", "add", "eve:pw"], DENIED),
        as_user(ALICE, &["user", "delete", "bob"], DENIED),
        as_user(ALICE, &["user", "grant-role", "bob", "r1"], DENIED),
        as_user(ALICE, &["user", "revoke-role", "alice", "r1"], DENIED),
        as_user(ALICE, &["role", "add", "x"], DENIED),
        as_user(ALICE, &["role", "delete", "r1"], DENIED),
        as_user(
            ALICE,
            &["role", "grant-permission", "r1", "read", "x"],
            DENIED,
        ),
        as_user(ALICE, &["role", "revoke-permission", "r1", "k"], DENIED),
        Step {
            stdin: Some("y\n"),
            ..as_user(
                ALICE,
                &["user", "passwd", "alice", "--interactive=false"],
                DENIED,
            )
        },
        as_user(ALICE, &["auth", "disable"], DENIED),
        // root and its role stay while auth is on.
        as_user(ROOT, &["user", "delete", "root"], BAD_MGMT),
        as_user(ROOT, &["user", "revoke-role", "root", "root"], BAD_MGMT),
        as_user(ROOT, &["role", "delete", "root"], BAD_MGMT),
        as_user(
            ROOT,
            &["auth", "disable"],
            Prints("Authentication Disabled\n"),
        ),
        step(&["auth", "disable"], Prints("Authentication Disabled\n")),
        step(&["user", "delete", "alice"], Prints("User alice deleted\n")),
        step(&["user", "delete", "bob"], Prints("User bob deleted\n")),
        step(&["user", "delete", "nopw"], Prints("User nopw deleted\n")),
        step(&["user", "delete", "root"], Prints("User root deleted\n")),
        step(&["role", "delete", "r1"], Prints("Role r1 deleted\n")),
        step(&["role", "delete", "r1"], ROLE_NOT_FOUND),
        step(&["role", "delete", "root"], Prints("Role root deleted\n")),
        step(&["user", "list"], Prints("")),
        step(&["role", "list"], Prints("")),
    ]
}

fn run_step(cli: Cli, bin: &Path, step: &Step) {
    let mut cli = cli.args(&step.args);
    if let Some(input) = step.stdin {
        cli = cli.stdin(input);
    }
    let out = cli.run().unwrap_or_else(|e| panic!("{e}"));
    let args = &step.args;
    match step.expect {
        Prints(stdout) => assert_eq!(
            (out.code(), out.stdout.as_str()),
            (Some(0), stdout),
            "{} {args:?}: {}",
            bin.display(),
            out.stderr
        ),
        Fails(line, code) => {
            let stderr = without_logs(&out.stderr);
            let last = stderr.lines().last().unwrap_or_default();
            assert_eq!(
                (out.code(), last),
                (Some(code), line),
                "{} {args:?}: stdout {:?}",
                bin.display(),
                out.stdout
            );
        }
    }
}

fn auth_revision(cluster: &Cluster) -> f64 {
    let metrics = cluster.metrics(0).unwrap_or_else(|e| panic!("{e}"));
    metric_sum(&metrics, "etcd_debugging_auth_revision")
}

fn user_role_and_auth_commands_answer_as_etcd(server: ServerBinary) {
    let cluster = start(server, 1);
    for (name, bin) in etcdctls() {
        let before = auth_revision(&cluster);
        for step in scenario() {
            run_step(cluster.cli(&bin), &bin, &step);
        }
        // Each change but auth enable moved the revision, no-ops and failures did not: 4 user
        // adds, 1 password change, 2 role adds (r1, and root by etcdctl's `auth enable`), 4
        // permission grants and 3 revokes, 3 role grants (a 4th was a no-op) and 1 revoke, the
        // first auth disable, 4 user and 2 role deletes.
        let moved = auth_revision(&cluster) - before;
        assert_eq!(moved, 25.0, "{name}: etcd_debugging_auth_revision");
    }
}

/// `user add root:rootpw` and `auth enable` (which grants root its role) with etcd's etcdctl.
fn enable_auth_with_root(cluster: &Cluster) {
    real_etcdctl_ok(cluster, &["user", "add", "root:rootpw"]);
    real_etcdctl_ok(cluster, &["auth", "enable"]);
}

async fn auth_client(url: &str) -> AuthClient<Channel> {
    let channel = Channel::from_shared(url.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    AuthClient::new(channel)
}

async fn authenticate(auth: &mut AuthClient<Channel>, name: &str, password: &str) -> String {
    let request = AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    auth.authenticate(request)
        .await
        .expect("authenticate")
        .into_inner()
        .token
}

/// UserList with `token` (an admin request, so the token is checked).
async fn users_with(
    auth: &mut AuthClient<Channel>,
    token: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = Request::new(AuthUserListRequest {});
    request
        .metadata_mut()
        .insert("token", token.parse().expect("an ASCII token"));
    Ok(auth.user_list(request).await?.into_inner().users)
}

/// A put with `token` (root's: allowed whether or not the server checks it).
async fn put_with(url: &str, token: &str) {
    let channel = Channel::from_shared(url.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut request = Request::new(PutRequest {
        key: b"after-authenticate".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("token", token.parse().expect("an ASCII token"));
    KvClient::new(channel).put(request).await.expect("put");
}

fn assert_invalid_token(result: Result<Vec<String>, tonic::Status>) {
    let status = result.expect_err("the token is refused");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "etcdserver: invalid auth token")
    );
}

async fn root_client(urls: &[String]) -> Client {
    let options = ClientOptions {
        credentials: Some(("root".into(), "rootpw".into())),
        ..ClientOptions::default()
    };
    Client::connect(urls, options)
        .await
        .expect("connect as root")
}

async fn an_idle_simple_token_expires_and_our_client_authenticates_again(server: ServerBinary) {
    let cluster = start_with(server, 1, &["--auth-token-ttl", "2"]);
    blocking(|| enable_auth_with_root(&cluster));
    let urls = cluster.client_urls();
    let mut auth = auth_client(&urls[0]).await;
    let token = authenticate(&mut auth, "root", "rootpw").await;
    // Each use renews it: in use, it outlives its TTL.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(users_with(&mut auth, &token).await.unwrap(), ["root"]);
    }
    // Idle past its TTL (and the once-a-second sweep), it is gone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_invalid_token(users_with(&mut auth, &token).await);

    let root = root_client(&urls).await;
    let list = || root.user_list(AuthUserListRequest {});
    assert_eq!(list().await.unwrap().users, ["root"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(list().await.unwrap().users, ["root"]);
}

/// An ECDSA P-256 key pair for ES256 in `dir`: (public key file, private key file).
fn jwt_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("generate a P-256 key");
    let (public, private) = (dir.join("jwt.pub"), dir.join("jwt.key"));
    std::fs::write(&public, key.public_key_pem()).expect("write the public key");
    std::fs::write(&private, key.serialize_pem()).expect("write the private key");
    (public, private)
}

async fn jwt_tokens_survive_a_restart_and_simple_tokens_do_not(server: ServerBinary) {
    let keys = tempfile::tempdir().expect("tempdir");
    let (public, private) = jwt_keys(keys.path());
    let jwt = format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256",
        public.display(),
        private.display()
    );
    for (token_flag, survives) in [(jwt.as_str(), true), ("simple", false)] {
        let mut cluster = start_with(server.clone(), 1, &["--auth-token", token_flag]);
        blocking(|| enable_auth_with_root(&cluster));
        let url = cluster.client_url(0).to_string();
        let token = authenticate(&mut auth_client(&url).await, "root", "rootpw").await;
        // etcd 3.4 saves its consistent index only with key-value changes, so a restart would
        // apply the Authenticate entry again and bring its simple token back; a put after it
        // moves the index past it (etcd 3.5 and ours save the index with every entry).
        put_with(&url, &token).await;
        assert_eq!(
            token.split('.').count(),
            if survives { 3 } else { 2 },
            "{token_flag}: {token}"
        );
        assert_eq!(
            users_with(&mut auth_client(&url).await, &token)
                .await
                .unwrap(),
            ["root"]
        );
        blocking(|| {
            cluster.restart(0)?;
            cluster.wait_healthy(0, WAIT)
        })
        .unwrap_or_else(|e| panic!("restart: {e}"));
        let after = users_with(&mut auth_client(&url).await, &token).await;
        if survives {
            assert_eq!(after.unwrap(), ["root"], "{token_flag}");
        } else {
            assert_invalid_token(after);
        }
    }
}

fn on_member(cluster: &Cluster, i: usize, bin: &Path) -> Cli {
    Cli::new(bin).arg(format!("--endpoints={}", cluster.client_url(i)))
}

fn etcdctl_ok(cli: Cli) -> String {
    cli.run_ok().unwrap_or_else(|e| panic!("{e}"))
}

async fn users_and_roles_survive_kill_9_of_every_member_and_a_snapshot_catch_up(
    server: ServerBinary,
) {
    let mut cluster = start_with(server, 3, &["--snapshot-count", "1000"]);
    let [(_, reference), (_, ours)] = etcdctls();
    blocking(|| {
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["user", "add", "alice:apw"],
            &["role", "add", "r1"],
            &[
                "role",
                "grant-permission",
                "r1",
                "--prefix",
                "readwrite",
                "k/",
            ],
            &["user", "grant-role", "alice", "r1"],
            &["auth", "enable"],
        ] {
            etcdctl_ok(cluster.cli(&reference).args(args));
        }
    });
    let alice = "User: alice\n\nRole r1\nKV Read:\n\t[k/, k0) (prefix k/)\n\
                 KV Write:\n\t[k/, k0) (prefix k/)\n";

    blocking(|| {
        for i in 0..3 {
            cluster.kill(i)?;
        }
        for i in 0..3 {
            cluster.restart(i)?;
        }
        cluster.wait_all_healthy(WAIT)
    })
    .unwrap_or_else(|e| panic!("restart after kill -9: {e}"));
    blocking(|| {
        for i in 0..3 {
            let get = on_member(&cluster, i, &ours).args(ROOT);
            assert_eq!(
                etcdctl_ok(get.args(["user", "get", "alice", "--detail"])),
                alice
            );
            let own = on_member(&cluster, i, &reference).args(["--user", "alice:apw"]);
            assert_eq!(
                etcdctl_ok(own.args(["user", "get", "alice"])),
                "User: alice\nRoles: r1\n"
            );
        }
    });

    // A simple token works on every member: each waits until it has applied the entry that
    // assigned it.
    let mut on_m0 = auth_client(cluster.client_url(0)).await;
    let token = authenticate(&mut on_m0, "root", "rootpw").await;
    for i in 1..3 {
        let mut other = auth_client(cluster.client_url(i)).await;
        assert_eq!(
            users_with(&mut other, &token).await.unwrap(),
            ["alice", "root"]
        );
    }

    // Member 2 is away while the others compact their log past what it has, and while users
    // and roles change; it comes back by a snapshot.
    blocking(|| cluster.stop(2)).unwrap_or_else(|e| panic!("stop m2: {e}"));
    let urls = cluster.client_urls();
    let root = root_client(&urls[..2]).await;
    preload(&root, "k/", ENTRIES_KEPT_AFTER_SNAPSHOT + 1500).await;
    blocking(|| {
        let endpoints = format!("--endpoints={}", urls[..2].join(","));
        for args in [
            &["user", "add", "bob:bpw"][..],
            &["role", "add", "r2"],
            &["user", "grant-role", "bob", "r2"],
            &["user", "revoke-role", "alice", "r1"],
        ] {
            etcdctl_ok(Cli::new(&reference).arg(&endpoints).args(ROOT).args(args));
        }
    });
    blocking(|| {
        cluster.restart(2)?;
        cluster.wait_healthy(2, WAIT)
    })
    .unwrap_or_else(|e| panic!("m2 back: {e}"));
    received_a_snapshot(&cluster, 2).await;
    // Authenticate and UserGet are answered from m2's own auth store.
    eventually_async(WAIT, "bob authenticates on m2", || {
        let cli = on_member(&cluster, 2, &ours).args(["--user", "bob:bpw", "user", "get", "bob"]);
        async move {
            blocking(|| cli.run()).is_ok_and(|out| out.stdout == "User: bob\nRoles: r2\n")
        }
    })
    .await;
    blocking(|| {
        let on_m2 = || on_member(&cluster, 2, &reference).args(ROOT);
        assert_eq!(
            etcdctl_ok(on_m2().args(["user", "list"])),
            "alice\nbob\nroot\n"
        );
        assert_eq!(etcdctl_ok(on_m2().args(["role", "list"])), "r1\nr2\nroot\n");
        assert_eq!(
            etcdctl_ok(on_m2().args(["user", "get", "alice"])),
            "User: alice\nRoles:\n"
        );
    });
}

fn bad_auth_token_flags_stop_the_start_with_etcds_message(server: ServerBinary) {
    let keys = tempfile::tempdir().expect("tempdir");
    let (public, private) = jwt_keys(keys.path());
    let missing = keys.path().join("missing.key");
    let cases = [
        ("bogus".to_string(), None),
        (
            format!(
                "jwt,pub-key={},priv-key={},sign-method=ES256",
                public.display(),
                missing.display()
            ),
            Some(missing.display().to_string()),
        ),
        (
            format!(
                "jwt,pub-key={},priv-key={},sign-method=XX256",
                public.display(),
                private.display()
            ),
            // etcd 3.4 logs "auth: invalid auth signature method" before its fatal line; the
            // auth crate words an unknown method as bad options.
            None,
        ),
    ];
    for (token, cause) in cases {
        let spec = ClusterSpec {
            size: 1,
            server: server.clone(),
            extra_args: vec!["--auth-token".into(), token.clone()],
            start_timeout: Duration::from_secs(20),
            ..ClusterSpec::default()
        };
        match Cluster::start(spec) {
            Err(Error::MemberExited {
                status, log_tail, ..
            }) => {
                assert!(!status.success(), "{token}: {status}");
                assert!(
                    log_tail.contains("auth: invalid auth options"),
                    "{token}: {log_tail}"
                );
                if let Some(cause) = cause {
                    assert!(log_tail.contains(&cause), "{token}: {log_tail}");
                }
            }
            Err(e) => panic!("--auth-token {token}: {e}"),
            Ok(_) => panic!("started with --auth-token {token}"),
        }
    }
}
