//! TLS clusters through the harness: members with https client and peer URLs made from the test PKI
//! (`integration::certs`), reached by the real etcdctl 3.4 and by our client with the harness's CA and
//! client certificate. The server side of TLS is what these pin, on both servers.

use std::time::Duration;

use client::api::etcdserverpb::{PutRequest, RangeRequest};
use client::{Client, ClientOptions, TlsOptions};
use integration::certs::TestPki;
use integration::history::Outcome;
use integration::traffic::{self, Clock, TrafficSpec};
use integration::{real_etcdctl, server_tests, Cluster, ClusterSpec, ServerBinary};

server_tests! {
    fn real_etcdctl_puts_and_gets_over_https_with_a_client_certificate;
    fn members_talk_over_peer_tls;
    async fn our_client_verifies_the_server_and_presents_its_certificate;
    async fn recorded_traffic_runs_over_tls;
}

fn real_etcdctl_puts_and_gets_over_https_with_a_client_certificate(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .client_tls_spec(
            ClusterSpec {
                server,
                ..ClusterSpec::default()
            },
            true,
        )
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    assert!(cluster.client_url(0).starts_with("https://127.0.0.1:"));
    assert!(cluster
        .metrics(0)
        .unwrap()
        .contains("etcd_server_has_leader 1"));

    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "tls-key", "over-https"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    let get = cluster
        .cli(real_etcdctl())
        .args(["get", "tls-key"])
        .run()
        .unwrap();
    assert_eq!(get.stdout, "tls-key\nover-https\n", "{get:?}");

    // The member demands a client certificate: the CA alone does not get in.
    let without_cert = real_cli(&cluster)
        .arg(format!("--cacert={}", pki.ca_file().display()))
        .args([
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "get",
            "tls-key",
        ])
        .run()
        .unwrap();
    assert!(!without_cert.success(), "{without_cert:?}");
}

fn members_talk_over_peer_tls(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .peer_tls_spec(
            pki.client_tls_spec(
                ClusterSpec {
                    size: 3,
                    server,
                    ..ClusterSpec::default()
                },
                false,
            )
            .unwrap(),
        )
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    for i in 0..3 {
        assert!(
            cluster.peer_url(i).starts_with("https://"),
            "{}",
            cluster.peer_url(i)
        );
    }
    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "k", "v"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    let members = cluster
        .cli(real_etcdctl())
        .args(["member", "list"])
        .run()
        .unwrap();
    assert_eq!(
        members.stdout.matches(", https://127.0.0.1:").count(),
        6,
        "peer and client URLs of three members: {members:?}"
    );
}

/// etcdctl against the cluster's endpoints with no TLS flag of the harness's.
fn real_cli(cluster: &Cluster) -> integration::Cli {
    integration::Cli::new(real_etcdctl()).arg(format!("--endpoints={}", cluster.endpoints()))
}

async fn our_client_verifies_the_server_and_presents_its_certificate(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .client_tls_spec(
            ClusterSpec {
                server,
                ..ClusterSpec::default()
            },
            true,
        )
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    let endpoints = cluster.client_urls();

    let trusted = Client::connect(&endpoints, cluster.client_options())
        .await
        .unwrap();
    trusted
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..PutRequest::default()
        })
        .await
        .unwrap();
    let got = trusted
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..RangeRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(got.kvs[0].value, b"v");

    let harness = cluster.client_options().tls;
    let short = |tls: TlsOptions| ClientOptions {
        tls,
        dial_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let range = || RangeRequest {
        key: b"k".to_vec(),
        ..RangeRequest::default()
    };
    // A server certificate from a CA we do not trust is refused ...
    let wrong_ca = Client::connect(
        &endpoints,
        short(TlsOptions {
            ca_file: Some(pki.other_ca_file().to_path_buf()),
            ..harness.clone()
        }),
    )
    .await
    .unwrap();
    let err = wrong_ca.range(range()).await.unwrap_err();
    assert_eq!(err.to_string(), "context deadline exceeded");
    // ... unless verification is skipped.
    let skipping = Client::connect(
        &endpoints,
        short(TlsOptions {
            ca_file: Some(pki.other_ca_file().to_path_buf()),
            insecure_skip_verify: true,
            ..harness.clone()
        }),
    )
    .await
    .unwrap();
    assert_eq!(skipping.range(range()).await.unwrap().kvs.len(), 1);
    // The member demands a client certificate, and one from another CA does not do.
    let untrusted = pki
        .untrusted_client_cert("stranger", Some("stranger"))
        .unwrap();
    for tls in [
        TlsOptions {
            cert_file: None,
            key_file: None,
            ..harness.clone()
        },
        TlsOptions {
            cert_file: Some(untrusted.cert),
            key_file: Some(untrusted.key),
            ..harness.clone()
        },
    ] {
        let client = Client::connect(&endpoints, short(tls.clone()))
            .await
            .unwrap();
        assert!(client.range(range()).await.is_err(), "{tls:?} got in");
    }
    // A plaintext client on the TLS port gets nowhere.
    let plain: Vec<String> = endpoints
        .iter()
        .map(|e| e.replace("https://", "http://"))
        .collect();
    let plain = Client::connect(&plain, short(TlsOptions::default()))
        .await
        .unwrap();
    assert!(plain.range(range()).await.is_err());
}

async fn recorded_traffic_runs_over_tls(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .peer_tls_spec(
            pki.client_tls_spec(
                ClusterSpec {
                    size: 3,
                    server,
                    ..ClusterSpec::default()
                },
                true,
            )
            .unwrap(),
        )
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    let urls = cluster.client_urls();
    let spec = TrafficSpec {
        tls: cluster.client_options().tls,
        ..TrafficSpec::default()
    };
    let history = traffic::run(
        Clock::start(),
        &urls,
        &spec,
        tokio::time::sleep(Duration::from_secs(2)),
    )
    .await
    .expect("traffic runs");
    let ok = history
        .operations
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .count();
    assert!(
        ok >= 50,
        "{ok} of {} operations succeeded",
        history.operations.len()
    );
    assert!(!history.watches.is_empty(), "no watch stream was recorded");
}
