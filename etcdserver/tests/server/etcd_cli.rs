//! The `etcd` binary's answers to bad configurations and to `--version`, as a user sees them:
//! stdout, stderr and exit status. No test here starts a server.

use std::process::{Command, Output};

fn etcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(args)
        // The configuration must come from the arguments alone.
        .env_remove("ETCD_CONFIG_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the etcd binary")
}

#[test]
fn version_prints_etcds_block_and_exits_0() {
    let out = etcd(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("etcd Version: 3.5."), "{stdout}");
    assert!(stdout.contains("\nGo OS/Arch: "), "{stdout}");
}

#[test]
fn a_refused_value_prints_etcds_message_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("d");
    let out = etcd(&[
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--election-timeout",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "etcd: error verifying flags, --election-timeout[100ms] should be at least as 5 times \
         as --heartbeat-interval[100ms]. See 'etcd --help'.\n"
    );
    assert!(
        !data_dir.exists(),
        "nothing is created for a refused configuration"
    );

    let out = etcd(&["--initial-cluster", "other=http://127.0.0.1:2380"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "etcd: couldn't find local name \"default\" in the initial cluster configuration\n"
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = etcd(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--no-such-flag"));
    let out = etcd(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("--initial-cluster-state"));
}
