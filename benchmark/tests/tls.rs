//! `benchmark` over https with a client certificate and a user: a tiny `put` against a TLS member of
//! Debian's etcd 3.4 with auth enabled, booted by the harness from its test PKI.

use std::time::Duration;

use integration::certs::TestPki;
use integration::{real_etcdctl, Cluster, ClusterSpec};

#[test]
fn put_over_tls_as_a_user() {
    let pki = TestPki::new().unwrap();
    let cluster = Cluster::start(pki.client_tls_spec(ClusterSpec::new(1), true).unwrap())
        .expect("start a TLS etcd");
    for step in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        cluster
            .cli(real_etcdctl())
            .args(step)
            .run_ok()
            .unwrap_or_else(|e| panic!("{step:?}: {e}"));
    }
    let benchmark = || {
        cluster
            .cli(env!("CARGO_BIN_EXE_benchmark"))
            .timeout(Duration::from_secs(60))
    };

    let out = benchmark()
        .args([
            "put",
            "--user=root:rootpw",
            "--total=20",
            "--clients=2",
            "--key-space-size=20",
            "--sequential-keys",
            "--output=json",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("\"requests\":20"), "{}", out.stdout);
    let count = cluster
        .cli(real_etcdctl())
        .args([
            "--user=root:rootpw",
            "get",
            "",
            "--from-key",
            "--keys-only",
            "-w",
            "fields",
        ])
        .run_ok()
        .unwrap();
    assert!(count.contains("\"Count\" : 20\n"), "{count}");

    // Without the user every request is refused; without a client certificate nothing connects.
    let denied = benchmark()
        .args(["put", "--total=2", "--output=json"])
        .run()
        .unwrap();
    assert!(denied.stdout.contains("\"errors\":2"), "{denied:?}");
    let no_cert = integration::Cli::new(env!("CARGO_BIN_EXE_benchmark"))
        .arg(format!("--endpoints={}", cluster.endpoints()))
        .arg(format!("--cacert={}", pki.ca_file().display()))
        .args([
            "put",
            "--user=root:rootpw",
            "--total=2",
            "--dial-timeout=1s",
            "--command-timeout=1s",
        ])
        .timeout(Duration::from_secs(60))
        .run()
        .unwrap();
    assert!(!no_cert.success(), "{no_cert:?}");
}
