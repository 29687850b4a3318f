//! get, put, del, txn and compaction against a real etcd, compared with the reference etcdctl.

use crate::common;

use common::*;

#[test]
fn put_get_del_print_like_the_reference_in_every_format() {
    let cluster = single();
    let foo_is_bar: &[&[&str]] = &[&["put", "foo", "bar"]];
    same_after(&cluster, &[], &["put", "foo", "bar"]);
    same_after(&cluster, &[], &["put", "foo", "bar", "-w", "json"]);
    same_after(&cluster, foo_is_bar, &["put", "foo", "baz", "--prev-kv"]);
    same_after(
        &cluster,
        foo_is_bar,
        &["put", "foo", "baz", "--prev-kv", "-w", "fields"],
    );
    same_after(
        &cluster,
        foo_is_bar,
        &["put", "foo", "qux", "--prev-kv", "-w", "json"],
    );
    same_after(
        &cluster,
        foo_is_bar,
        &["put", "foo", "--ignore-value", "--prev-kv"],
    );
    for key in ["a", "b", "c/1", "c/2", "d"] {
        ok(&cluster, &["put", key, &format!("value of {key}")]);
    }
    ok(&cluster, &["put", "bin\u{1}\"<&>", "ü\\x01"]);
    for format in ["simple", "json", "fields", "protobuf"] {
        same(&cluster, &["get", "foo", "-w", format]);
        same(&cluster, &["get", "a", "c", "-w", format]);
        same(&cluster, &["get", "--prefix", "c/", "-w", format]);
        same(&cluster, &["get", "--prefix", "", "-w", format]);
        same(&cluster, &["get", "--from-key", "b", "-w", format]);
        same(
            &cluster,
            &["get", "--prefix", "", "--keys-only", "-w", format],
        );
        same(
            &cluster,
            &[
                "get",
                "--prefix",
                "",
                "--limit",
                "2",
                "--order",
                "DESCEND",
                "--sort-by",
                "VALUE",
                "-w",
                format,
            ],
        );
        same(
            &cluster,
            &["get", "--prefix", "", "--sort-by", "MODIFY", "-w", format],
        );
        same(&cluster, &["get", "--prefix", "bin", "-w", format]);
        same(
            &cluster,
            &[
                "get",
                "foo",
                "--rev",
                "3",
                "--consistency",
                "s",
                "-w",
                format,
            ],
        );
    }
    same(&cluster, &["get", "--prefix", "", "--hex"]);
    same(&cluster, &["get", "--prefix", "c/", "--print-value-only"]);
    same(&cluster, &["get", "nosuch"]);
    same(&cluster, &["get", "nosuch", "-w", "json"]);
    let keys: &[&[&str]] = &[
        &["put", "a", "1"],
        &["put", "c/1", "x"],
        &["put", "c/2", "y"],
        &["put", "d", "z"],
        &["put", "foo", "bar"],
    ];
    same_after(&cluster, keys, &["del", "a", "-w", "json"]);
    same_after(&cluster, keys, &["del", "--prefix", "c/", "--prev-kv"]);
    same_after(
        &cluster,
        keys,
        &["del", "--from-key", "d", "--prev-kv", "-w", "fields"],
    );
    same_after(&cluster, &[], &["del", "nosuch"]);
}

#[test]
fn bad_arguments_and_server_errors_exit_like_the_reference() {
    let cluster = single();
    ok(&cluster, &["put", "k", "v"]);
    for args in [
        &["get"][..],
        &["put"],
        &["del"],
        &["del", "a", "b", "c"],
        &["get", "a", "--sort-by", "foo"],
        &["get", "a", "--order", "x"],
        &["get", "a", "--consistency", "x"],
        &["get", "a", "--prefix", "--from-key"],
        &["get", "a", "b", "--prefix"],
        &["get", "a", "-w", "table"],
        &["get", "a", "-w", "json", "--print-value-only"],
        &["put", "--ignore-value", "nosuch"],
        &["put", "--ignore-value", "k", "v"],
        &["put", "k", "v", "--lease", "zz"],
        &["put", "k", "v", "--lease", "1234"],
        &["compaction"],
        &["compaction", "x"],
        &["compaction", "100"],
        &["version"],
    ] {
        same(&cluster, args);
    }
    // Flag and command parsing errors: clap's words, etcdctl's exit code and prefix.
    for args in [
        &["get", "--bogus"][..],
        &["get", "a", "--rev", "x"],
        &["nosuch"],
    ] {
        let theirs = run(cluster.cli(reference()).args(args));
        let ours = run(ctl(&cluster).args(args));
        assert_eq!(ours.code(), theirs.code(), "{args:?}");
        assert!(ours.stderr.starts_with("Error: "), "{ours:?}");
    }
    // Values can come from stdin.
    let out = run(ctl(&cluster)
        .args(["put", "from-stdin"])
        .stdin("piped value"));
    assert_eq!(out.stdout, "OK\n");
    assert_eq!(
        ok(&cluster, &["get", "from-stdin", "--print-value-only"]),
        "piped value\n"
    );
}

#[test]
fn compaction_makes_old_revisions_unreadable() {
    let cluster = single();
    for i in 0..4 {
        ok(&cluster, &["put", "foo", &format!("v{i}")]);
    }
    let revision: i64 = {
        let json = ok(&cluster, &["get", "foo", "-w", "json"]);
        let at = json.find("\"revision\":").expect("header revision") + "\"revision\":".len();
        json[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let out = run(ctl(&cluster).args(["compaction", &(revision - 1).to_string()]));
    assert_eq!(out.stdout, format!("compacted revision {}\n", revision - 1));
    let out = run(ctl(&cluster).args(["get", "foo", "--rev", &(revision - 2).to_string()]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr,
        "Error: etcdserver: mvcc: required revision has been compacted\n"
    );
    // The same compaction again is an error; --physical waits for the backend.
    same(&cluster, &["compaction", &(revision - 1).to_string()]);
    let out = run(ctl(&cluster).args(["compaction", "--physical", &revision.to_string()]));
    assert_eq!(out.stdout, format!("compacted revision {revision}\n"));
    assert_eq!(ok(&cluster, &["get", "foo", "--print-value-only"]), "v3\n");
}

#[test]
fn txn_compares_choose_the_branch() {
    let cluster = single();
    ok(&cluster, &["put", "a", "1"]);
    ok(&cluster, &["put", "b", "2"]);
    let a_and_b: &[&[&str]] = &[&["put", "a", "1"], &["put", "b", "2"]];
    let both = "mod(\"a\") > \"0\"\nval(\"b\") = \"2\"\n\nput x y\nget a\ndel b\n\nget b\n\n";
    let out = same_stdin(&cluster, a_and_b, &["txn"], both);
    assert_eq!(out.stdout, "SUCCESS\n\nOK\n\na\n1\n\n1\n");
    same_stdin(&cluster, a_and_b, &["txn", "-w", "fields"], both);
    // b is gone now: the failure branch runs.
    let out = same_stdin(&cluster, &[], &["txn", "-w", "json"], both);
    assert!(
        out.stdout
            .contains("\"responses\":[{\"Response\":{\"ResponseRange\""),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("succeeded"));
    same_stdin(
        &cluster,
        &[],
        &["txn", "-w", "fields"],
        "ver(\"zz\") = \"0\"\n\nput x y --prev-kv\n\n\n",
    );
    same_stdin(&cluster, &[], &["txn"], "c(\"a\") != \"0\"\nversion(\"a\") < \"50\"\nvalue(\"x\") = \"y\"\n\nget x --print-value-only\nput \"quoted key\" \"v v\"\n\n\n");
    same_stdin(
        &cluster,
        &[],
        &["txn", "-i"],
        "val(\"a\") = \"1\"\n\nget a\n\nget b\n\n",
    );
    same_stdin(&cluster, &[], &["txn", "-w", "protobuf"], "\nget a\n\n\n");
    // Malformed input exits 3 with etcdctl's message.
    for input in [
        "bad\n\n",
        "",
        "val(\"a\") = \"1\"\n\nfrob x\n\n",
        "val(\"a\") = \"1\"\n\nput\n\n",
        "c(\"a\") = \"x\"\n\nget a\n\n",
        "val(\"a\") = \"1\"\n\nget a\n\nget a\n",
        "mod(\"a\") > \"0\"\n\nput a b\n",
    ] {
        let out = same_stdin(&cluster, &[], &["txn"], input);
        assert_eq!(out.code(), Some(3), "{input:?}: {out:?}");
    }
    same_stdin(&cluster, &[], &["txn", "extra"], "");
    assert_eq!(
        ok(&cluster, &["get", "quoted key", "--print-value-only"]),
        "v v\n"
    );
}

#[test]
fn global_flags_come_from_the_environment() {
    let cluster = single();
    ok(&cluster, &["put", "k", "v"]);
    // No --endpoints on the command line: ETCDCTL_ENDPOINTS and friends are used.
    let out = run(Cli::new(ours())
        .args(["get", "k"])
        .env("ETCDCTL_ENDPOINTS", cluster.endpoints())
        .env("ETCDCTL_WRITE_OUT", "fields")
        .env("ETCDCTL_HEX", "true")
        .env("ETCDCTL_COMMAND_TIMEOUT", "3s")
        .env("ETCDCTL_DIAL_TIMEOUT", "1s")
        .env("ETCDCTL_API", "3"));
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("\"Key\" : \"k\"\n"), "{}", out.stdout);
    // A flag given both ways is refused, as etcdctl does.
    let both_ways = |bin| {
        run(Cli::new(bin)
            .args(["get", "k", "--hex=false"])
            .env("ETCDCTL_ENDPOINTS", cluster.endpoints())
            .env("ETCDCTL_HEX", "true"))
    };
    let message = "conflicting environment variable \"ETCDCTL_HEX\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\n";
    for out in [both_ways(ours()), both_ways(reference())] {
        assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
        assert!(out.stderr.ends_with(message), "{out:?}");
    }
    // Every global flag is accepted.
    let out = run(ctl(&cluster).args([
        "--dial-timeout=1s",
        "--command-timeout=4s",
        "--keepalive-time=3s",
        "--keepalive-timeout=5s",
        "--insecure-transport=true",
        "--insecure-skip-tls-verify",
        "--insecure-discovery",
        "--debug=false",
        "get",
        "k",
    ]));
    assert_eq!(out.stdout, "k\nv\n", "{out:?}");
}

#[test]
fn srv_discovery_is_refused_and_bad_tls_files_fail_as_the_reference() {
    let cluster = single();
    let out = run(ctl(&cluster).args(["--discovery-srv=example.com", "get", "a"]));
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(
        out.stderr.starts_with("Error: ") && out.stderr.contains("not supported"),
        "{out:?}"
    );
    // TLS files are read even for http endpoints (tests/tls.rs has the rest).
    for flags in [
        &["--cacert=/nonexistent"][..],
        &["--cert=/x", "--key=/y"],
        &["--key=/y"],
    ] {
        let out = same(&cluster, &[flags, &["get", "a"]].concat());
        assert_eq!(out.code(), Some(128), "{flags:?}: {out:?}");
    }
}

#[test]
fn an_unreachable_endpoint_times_out_with_the_reference_message() {
    let out = run(Cli::new(ours()).args([
        "--endpoints",
        "127.0.0.1:1",
        "--command-timeout",
        "1s",
        "get",
        "a",
    ]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "Error: context deadline exceeded\n");
}
