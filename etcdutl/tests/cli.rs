//! The `etcdutl` binary on its own: what it prints and how it exits. Restores and migrations
//! through it are driven end to end in `integration/tests/e2e/` (which needs this binary built:
//! a package's integration tests are what make cargo build its binaries).

use testkit::{bin_path, Cli};

fn etcdutl() -> Cli {
    Cli::new(bin_path("etcdutl").unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn version_names_the_server_release_and_its_api() {
    let out = etcdutl().arg("version").run().unwrap();
    assert!(out.success(), "{out:?}");
    let api: Vec<&str> = etcdserver::SERVER_VERSION.splitn(3, '.').take(2).collect();
    assert_eq!(
        out.stdout,
        format!(
            "etcdutl version: {}\nAPI version: {}\n",
            etcdserver::SERVER_VERSION,
            api.join(".")
        )
    );
}

#[test]
fn status_of_a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.db");
    let out = etcdutl()
        .args(["snapshot", "status"])
        .arg(&missing)
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.starts_with("Error: "), "{out:?}");
    assert!(out.stderr.contains("absent.db"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn restore_without_a_snapshot_argument_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("m0.etcd");
    let out = etcdutl()
        .args(["snapshot", "restore", "--data-dir"])
        .arg(&data_dir)
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(!data_dir.exists());
}
