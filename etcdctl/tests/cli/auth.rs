//! auth, user and role commands, and `--user`/`--password` flows, compared with the reference.

use crate::common;

use common::*;

/// Runs the reference, undoes its effect with `undo` (our etcdctl), then runs ours: both see
/// the same store and must print the same.
fn same_mutation(cluster: &Cluster, args: &[&str], undo: &[&str]) {
    let theirs = run(cluster.cli(reference()).args(args));
    if !undo.is_empty() {
        ok(cluster, undo);
    }
    let ours = run(ctl(cluster).args(args));
    assert_eq!(shown(&ours), shown(&theirs), "{args:?}");
}

#[test]
fn users_and_roles_print_like_the_reference() {
    let cluster = single();
    for format in ["simple", "json", "fields", "protobuf"] {
        let w = ["-w", format];
        let user = format!("u{format}");
        let role = format!("r{format}");
        let (u, r) = (user.as_str(), role.as_str());
        let step = |args: Vec<&str>, undo: Vec<&str>| {
            let mut args = args;
            args.extend(w);
            same_mutation(&cluster, &args, &undo);
        };
        step(
            vec!["user", "add", &format!("{u}:pw")],
            vec!["user", "delete", u],
        );
        step(vec!["role", "add", r], vec!["role", "delete", r]);
        step(
            vec!["role", "grant-permission", r, "read", "a", "b"],
            vec![],
        );
        step(
            vec!["role", "grant-permission", r, "--prefix", "write", "p/"],
            vec![],
        );
        step(
            vec!["role", "grant-permission", r, "readwrite", "k"],
            vec![],
        );
        step(
            vec![
                "role",
                "grant-permission",
                r,
                "--from-key",
                "READWRITE",
                "z",
            ],
            vec![],
        );
        step(
            vec!["role", "grant-permission", r, "--prefix", "read", ""],
            vec![],
        );
        step(
            vec!["user", "grant-role", u, r],
            vec!["user", "revoke-role", u, r],
        );
        for read in [
            vec!["role", "get", r],
            vec!["user", "get", u],
            vec!["user", "get", u, "--detail"],
            vec!["user", "list"],
            vec!["role", "list"],
        ] {
            let mut args = read;
            args.extend(w);
            same(&cluster, &args);
        }
        step(
            vec!["role", "revoke-permission", r, "a", "b"],
            vec!["role", "grant-permission", r, "read", "a", "b"],
        );
        step(
            vec!["role", "revoke-permission", r, "k"],
            vec!["role", "grant-permission", r, "readwrite", "k"],
        );
        step(
            vec!["role", "revoke-permission", r, "--prefix", "p/"],
            vec!["role", "grant-permission", r, "--prefix", "write", "p/"],
        );
        step(
            vec!["role", "revoke-permission", r, "--from-key", "z"],
            vec![
                "role",
                "grant-permission",
                r,
                "--from-key",
                "readwrite",
                "z",
            ],
        );
        let passwd = |bin| {
            run(cluster
                .cli(bin)
                .args(["user", "passwd", u, "--interactive=false"])
                .args(w)
                .stdin("newpw\n"))
        };
        assert_eq!(shown(&passwd(ours())), shown(&passwd(reference())));
        step(
            vec!["user", "revoke-role", u, r],
            vec!["user", "grant-role", u, r],
        );
        step(vec!["role", "delete", r], vec!["role", "add", r]);
        step(
            vec!["user", "delete", u],
            vec!["user", "add", u, "--new-user-password=x"],
        );
    }
    for args in [
        &["user", "add"][..],
        &["user", "add", ":pw"],
        &["user", "get", "nosuch"],
        &["user", "delete", "nosuch"],
        &["user", "list", "x"],
        &["user", "grant-role", "x"],
        &["user", "revoke-role", "x"],
        &["user", "passwd"],
        &["role", "add"],
        &["role", "get", "nosuch"],
        &["role", "list", "x"],
        &["role", "grant-permission", "r", "read"],
        &["role", "grant-permission", "r", "bogus", "k"],
        &[
            "role",
            "grant-permission",
            "r",
            "read",
            "k",
            "z",
            "--prefix",
        ],
        &[
            "role",
            "grant-permission",
            "r",
            "read",
            "k",
            "--prefix",
            "--from-key",
        ],
        &["role", "revoke-permission", "r"],
        &["auth", "enable", "x"],
        &["auth", "disable", "x"],
        &["auth", "enable"],
    ] {
        same(&cluster, args);
    }
    // A user without a password, and a password typed twice at the prompt.
    let out = run(ctl(&cluster).args(["user", "add", "nopw", "--no-password"]));
    assert_eq!(out.stdout, "User nopw created\n");
    let out = run(ctl(&cluster)
        .args(["user", "add", "typed"])
        .stdin("secret\nsecret\n"));
    assert_eq!(out.stdout, "User typed created\n", "{out:?}");
    let out = run(ctl(&cluster)
        .args(["user", "add", "typo"])
        .stdin("secret\nsecreT\n"));
    assert_eq!((out.code(), out.stdout.as_str()), (Some(128), ""));
    assert!(
        out.stderr
            .ends_with("Error: given passwords are different\n"),
        "{out:?}"
    );
}

#[test]
fn auth_enable_and_user_flags() {
    let cluster = single();
    ok(&cluster, &["put", "foo", "bar"]);
    same(&cluster, &["auth", "enable"]);
    ok(&cluster, &["user", "add", "root:rootpw"]);
    // etcdctl grants root its role on the way.
    assert_eq!(
        ok(&cluster, &["auth", "enable"]),
        "Authentication Enabled\n"
    );
    assert_eq!(
        ok(&cluster, &["--user", "root:rootpw", "user", "get", "root"]),
        "User: root\nRoles: root\n"
    );
    // Without credentials, with wrong ones, and with each way of giving right ones.
    same(&cluster, &["get", "foo"]);
    same(&cluster, &["--user", "root:wrong", "get", "foo"]);
    same(&cluster, &["--user", "nosuch:pw", "get", "foo"]);
    same(
        &cluster,
        &["--user", "root:rootpw", "get", "foo", "-w", "json"],
    );
    same(
        &cluster,
        &["--user", "root", "--password", "rootpw", "get", "foo"],
    );
    let out = run(ctl(&cluster)
        .args(["get", "foo"])
        .env("ETCDCTL_USER", "root:rootpw"));
    assert_eq!(out.stdout, "foo\nbar\n");
    let out = run(ctl(&cluster)
        .args(["get", "foo"])
        .env("ETCDCTL_USER", "root")
        .env("ETCDCTL_PASSWORD", "rootpw"));
    assert_eq!(out.stdout, "foo\nbar\n");
    // A reader limited to one prefix.
    let root = ["--user", "root:rootpw"];
    for args in [
        &["user", "add", "reader:pw"][..],
        &["role", "add", "readers"],
        &[
            "role",
            "grant-permission",
            "readers",
            "--prefix",
            "read",
            "fo",
        ],
        &["user", "grant-role", "reader", "readers"],
        &["put", "other", "x"],
    ] {
        ok(&cluster, &[&root[..], args].concat());
    }
    same(&cluster, &["--user", "reader:pw", "get", "foo"]);
    same(&cluster, &["--user", "reader:pw", "get", "other"]);
    same(&cluster, &["--user", "reader:pw", "put", "foo", "x"]);
    // Health counts a permission denial as healthy.
    let out = run(ctl(&cluster).args(["--user", "reader:pw", "endpoint", "health"]));
    assert!(
        out.success() && out.stderr.contains("is healthy"),
        "{out:?}"
    );
    same(&cluster, &["--user", "reader:pw", "auth", "disable"]);
    assert_eq!(
        ok(&cluster, &["--user", "root:rootpw", "auth", "disable"]),
        "Authentication Disabled\n"
    );
    assert_eq!(ok(&cluster, &["get", "other", "--print-value-only"]), "x\n");
}
