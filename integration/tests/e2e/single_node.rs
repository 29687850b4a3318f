//! A one-member cluster of the reference etcd, driven by the reference etcdctl through the harness.

use std::time::Duration;

use integration::{real_etcdctl, run, Cluster, ClusterSpec, ProcessError};

const LINE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn put_and_get_through_run() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let endpoints = cluster.endpoints();
    // Through the free function `run`, so this test also covers it (other tests go through `Cli`).
    let ctl = |args: &[&str]| {
        let out = run(
            real_etcdctl(),
            [&["--endpoints", &endpoints], args].concat(),
            &[],
        )
        .unwrap();
        assert!(out.success(), "etcdctl {args:?} failed: {out:?}");
        out.stdout
    };

    assert_eq!(ctl(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(ctl(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(ctl(&["get", "nosuch"]), "");
    assert_eq!(ctl(&["del", "foo"]), "1\n");
    assert_eq!(ctl(&["get", "foo"]), "");

    // Environment variables reach the child: etcdctl reads its endpoints from ETCDCTL_ENDPOINTS.
    let out = run(
        real_etcdctl(),
        ["put", "from-env", "v"],
        &[("ETCDCTL_ENDPOINTS", &endpoints)],
    )
    .unwrap();
    assert_eq!(out.stdout, "OK\n", "{out:?}");
}

#[test]
fn failures_keep_exit_code_and_stderr() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let out = cluster
        .cli(real_etcdctl())
        .args(["put", "--ignore-value", "nosuch"])
        .run()
        .unwrap();
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stdout, "");
    // etcdctl 3.4 may log a JSON "retrying of unary invoker failed" warning before the error itself.
    assert_eq!(
        out.stderr.lines().last(),
        Some("Error: etcdserver: key not found"),
        "{out:?}"
    );
}

#[test]
fn member_list_shows_the_harness_command_line() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let out = cluster
        .cli(real_etcdctl())
        .arg("member")
        .arg("list")
        .run()
        .unwrap();
    // "<id>, started, m0, <peer url>, <client url>, false"
    let fields: Vec<&str> = out.stdout.trim_end().split(", ").collect();
    assert_eq!(
        fields[1..],
        [
            "started",
            "m0",
            cluster.peer_url(0),
            cluster.client_url(0),
            "false"
        ],
        "{out:?}"
    );
    let args = &cluster.command(0).args;
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--data-dir" && w[1] == cluster.data_dir(0).to_string_lossy()),
        "{args:?}"
    );
    assert!(cluster.data_dir(0).join("member").is_dir());
}

#[test]
fn txn_reads_its_script_from_stdin() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let out = cluster
        .cli(real_etcdctl())
        .arg("txn")
        .stdin("mod(\"foo\") = \"0\"\n\nput foo x\n\nget foo\n\n")
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "SUCCESS\n\nOK\n");
    let out = cluster
        .cli(real_etcdctl())
        .args(["get", "foo"])
        .run()
        .unwrap();
    assert_eq!(out.stdout, "foo\nx\n");
}

#[test]
fn background_watch_sees_puts() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let mut watch = cluster
        .cli(real_etcdctl())
        .args(["watch", "--prefix", "k"])
        .spawn()
        .unwrap();
    // The watch is registered asynchronously, so keep writing until it reports something.
    let mut n = 0;
    let first = loop {
        n += 1;
        let value = format!("v{n}");
        let put = cluster
            .cli(real_etcdctl())
            .args(["put", "k1", &value])
            .run()
            .unwrap();
        assert!(put.success(), "{put:?}");
        match watch.next_line(Duration::from_millis(500)) {
            Ok(Some(line)) => break line,
            Ok(None) => panic!("watch exited: {}", watch.stderr()),
            Err(ProcessError::LineTimedOut { .. }) if n < 20 => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(first, "PUT");
    assert_eq!(
        watch.next_line(LINE_TIMEOUT).unwrap().as_deref(),
        Some("k1")
    );
    let value = watch.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(value.starts_with('v'), "{value}");

    cluster
        .cli(real_etcdctl())
        .args(["put", "k2", "last"])
        .run()
        .unwrap();
    let seen = watch.wait_for_line(LINE_TIMEOUT, |l| l == "last").unwrap();
    assert_eq!(seen, "last");
    assert!(watch.is_running());
}

#[test]
fn lock_is_handed_over_when_the_holder_is_interrupted() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let mut holder = cluster
        .cli(real_etcdctl())
        .args(["lock", "L"])
        .spawn()
        .unwrap();
    let key = holder.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(key.starts_with("L/"), "{key}");

    let mut waiter = cluster
        .cli(real_etcdctl())
        .args(["lock", "L"])
        .spawn()
        .unwrap();
    // Not a timing assertion on etcd: the waiter must print nothing while the lock is held, however long.
    match waiter.next_line(Duration::from_millis(500)) {
        Err(ProcessError::LineTimedOut { .. }) => {}
        other => panic!("second locker got the lock while it was held: {other:?}"),
    }

    holder.interrupt().unwrap();
    let out = holder.wait(LINE_TIMEOUT).unwrap();
    assert!(out.stdout.starts_with(&format!("{key}\n")), "{out:?}");
    let second_key = waiter.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert!(
        second_key.starts_with("L/") && second_key != key,
        "{second_key}"
    );
}

#[test]
fn run_timeout_kills_a_command_that_never_ends() {
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let err = cluster
        .cli(real_etcdctl())
        .args(["watch", "never-written"])
        .timeout(Duration::from_millis(500))
        .run()
        .unwrap_err();
    assert!(matches!(err, ProcessError::CommandTimedOut { .. }), "{err}");
}
