//! The server side of TLS, on both servers (etcd 3.4 the control) wherever etcd 3.4 has the
//! behaviour: https client and peer listeners, who gets in and who does not (real etcdctl 3.4,
//! curl, openssl), peer TLS in a 3-member cluster, the peer allowed CN, peer auto TLS, a
//! certificate rotated without a restart, bad files at start-up. The CA rotation is ours only:
//! etcd 3.4 reads its CA once (etcd-io/etcd#11555), which the etcd34 run pins.
//! Every test makes its own test PKI (two CAs), shared by its members.

use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::certs::TestPki;
use integration::{
    bin_path, real_etcdctl, server_tests, CertFiles, Cli, Cluster, ClusterSpec, CmdOutput,
    ListenerTls, ServerBinary,
};

server_tests! {
    fn https_client_port_serves_trusted_clients_only;
    fn three_members_with_client_and_peer_tls_elect_replicate_and_survive_a_restart;
    fn a_member_with_a_peer_certificate_from_another_ca_cannot_join;
    fn peer_cert_allowed_cn_admits_only_that_name;
    fn peer_auto_tls_members_talk_with_self_signed_certificates;
    fn a_rotated_certificate_is_served_without_a_restart;
    fn a_rotated_ca_bundle_is_read_by_etcd_rs_and_not_by_etcd_3_4;
    fn bad_certificate_files_stop_the_member_at_start_naming_the_file;
}

const WAIT: Duration = Duration::from_secs(20);

fn is_real_etcd(server: &ServerBinary) -> bool {
    server.path() == ServerBinary::real_etcd().path()
}

/// etcdctl 3.4 against `cluster` with exactly the TLS flags given (none of the harness's).
fn etcdctl(cluster: &Cluster, tls: &[String]) -> Cli {
    Cli::new(real_etcdctl())
        .arg(format!("--endpoints={}", cluster.endpoints()))
        .args(tls)
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .timeout(Duration::from_secs(15))
}

fn tls_flags(ca: &Path, identity: Option<&CertFiles>) -> Vec<String> {
    let mut flags = vec![format!("--cacert={}", ca.display())];
    if let Some(id) = identity {
        flags.push(format!("--cert={}", id.cert.display()));
        flags.push(format!("--key={}", id.key.display()));
    }
    flags
}

fn curl(args: &[String]) -> CmdOutput {
    Cli::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap()
}

/// The subject of the certificate the client port presents now, as `openssl s_client` prints it.
fn served_subject(cluster: &Cluster, pki: &TestPki, identity: &CertFiles) -> String {
    let addr = cluster
        .client_url(0)
        .trim_start_matches("https://")
        .to_owned();
    let out = Cli::new("openssl")
        .args(["s_client", "-connect", &addr, "-CAfile"])
        .arg(pki.ca_file())
        .arg("-cert")
        .arg(&identity.cert)
        .arg("-key")
        .arg(&identity.key)
        .stdin("")
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap();
    out.stdout
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in {out:?}"))
        .to_owned()
}

fn https_client_port_serves_trusted_clients_only(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    // A CA file without --client-cert-auth: etcd requires client certificates all the same.
    let spec = ClusterSpec {
        server,
        client_tls: Some(ListenerTls {
            cert: pki.listener(false).unwrap().cert,
            trusted_ca: Some(pki.ca_file().to_path_buf()),
            client_cert_auth: false,
        }),
        harness_tls: Some(pki.harness_client().unwrap()),
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec).unwrap();
    let me = pki.client_cert("me", Some("me")).unwrap();
    let trusted = tls_flags(pki.ca_file(), Some(&me));
    let put = etcdctl(&cluster, &trusted)
        .args(["put", "k", "v"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    let get = etcdctl(&cluster, &trusted)
        .args(["get", "k"])
        .run()
        .unwrap();
    assert_eq!(get.stdout, "k\nv\n", "{get:?}");
    // Our etcdctl, with the same flags.
    let ours = || {
        Cli::new(bin_path("etcdctl").unwrap())
            .arg(format!("--endpoints={}", cluster.endpoints()))
            .args(["--dial-timeout=2s", "--command-timeout=3s"])
            .timeout(Duration::from_secs(15))
    };
    let get = ours().args(&trusted).args(["get", "k"]).run().unwrap();
    assert_eq!(get.stdout, "k\nv\n", "{get:?}");
    let no_cert = ours()
        .args(tls_flags(pki.ca_file(), None))
        .args(["get", "k"])
        .run()
        .unwrap();
    assert!(
        !no_cert.success(),
        "our etcdctl got in without a certificate: {no_cert:?}"
    );

    let refused = |tls: Vec<String>, what: &str| {
        let out = etcdctl(&cluster, &tls).args(["get", "k"]).run().unwrap();
        assert!(!out.success(), "{what} got in: {out:?}");
    };
    refused(tls_flags(pki.ca_file(), None), "no client certificate");
    refused(
        tls_flags(pki.other_ca_file(), Some(&me)),
        "a client trusting another CA",
    );
    let expired = pki.expired_client_cert("old", Some("old")).unwrap();
    refused(
        tls_flags(pki.ca_file(), Some(&expired)),
        "an expired certificate",
    );
    let stranger = pki
        .untrusted_client_cert("stranger", Some("stranger"))
        .unwrap();
    refused(
        tls_flags(pki.ca_file(), Some(&stranger)),
        "another CA's certificate",
    );
    let plain = Cli::new(real_etcdctl())
        .arg(format!(
            "--endpoints={}",
            cluster.endpoints().replace("https://", "http://")
        ))
        .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "k"])
        .timeout(Duration::from_secs(15))
        .run()
        .unwrap();
    assert!(!plain.success(), "plain http got in: {plain:?}");

    // HTTP endpoints sit behind the same handshake.
    let base = cluster.client_url(0).to_owned();
    let with_cert = |path: &str| {
        curl(&[
            "--cacert".into(),
            pki.ca_file().display().to_string(),
            "--cert".into(),
            me.cert.display().to_string(),
            "--key".into(),
            me.key.display().to_string(),
            format!("{base}{path}"),
        ])
    };
    let health = with_cert("/health");
    assert!(health.stdout.contains(r#""health":"true""#), "{health:?}");
    let metrics = with_cert("/metrics");
    assert!(
        metrics.stdout.contains("etcd_server_has_leader 1"),
        "{metrics:?}"
    );
    let no_cert = curl(&[
        "--cacert".into(),
        pki.ca_file().display().to_string(),
        format!("{base}/health"),
    ]);
    assert!(!no_cert.success(), "{no_cert:?}");
    // A plaintext request on the TLS port: the connection is closed with no reply.
    let plaintext = curl(&[format!("{}/health", base.replace("https://", "http://"))]);
    assert_eq!(plaintext.code(), Some(52), "{plaintext:?}");
    assert!(
        plaintext.stderr.contains("Empty reply from server"),
        "{plaintext:?}"
    );
}

fn three_members_with_client_and_peer_tls_elect_replicate_and_survive_a_restart(
    server: ServerBinary,
) {
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
    let mut cluster = Cluster::start(spec).unwrap();
    cluster.wait_for_leader(WAIT).unwrap();
    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "a", "1"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");

    cluster.restart(2).unwrap();
    cluster.wait_healthy(2, WAIT).unwrap();
    let one = |i: usize| {
        Cli::new(real_etcdctl())
            .arg(format!("--endpoints={}", cluster.client_url(i)))
            .args(cluster.spec().harness_tls.as_ref().unwrap().etcdctl_flags())
            .timeout(Duration::from_secs(15))
    };
    let get = one(2).args(["get", "a", "--consistency=s"]).run().unwrap();
    assert_eq!(
        get.stdout, "a\n1\n",
        "the restarted member has the data: {get:?}"
    );
    let put = one(2).args(["put", "b", "2"]).run().unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    let get = one(0).args(["get", "b"]).run().unwrap();
    assert_eq!(get.stdout, "b\n2\n", "{get:?}");
}

fn a_member_with_a_peer_certificate_from_another_ca_cannot_join(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .peer_tls_spec(ClusterSpec {
            server: server.clone(),
            ..ClusterSpec::default()
        })
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    let stranger = pki.untrusted_server_cert("stranger").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Cli::new(server.path())
        .arg("--name=stranger")
        .arg(format!("--data-dir={}", data.path().join("d").display()))
        .args([
            "--listen-client-urls=http://127.0.0.1:0",
            "--advertise-client-urls=http://127.0.0.1:0",
            "--listen-peer-urls=https://127.0.0.1:0",
            "--initial-advertise-peer-urls=https://127.0.0.1:0",
            "--initial-cluster-state=existing",
        ])
        .arg(format!(
            "--initial-cluster={}=https://{},stranger=https://127.0.0.1:0",
            cluster.name(0),
            cluster.peer_url(0).trim_start_matches("https://")
        ))
        .arg(format!("--peer-cert-file={}", stranger.cert.display()))
        .arg(format!("--peer-key-file={}", stranger.key.display()))
        .arg(format!(
            "--peer-trusted-ca-file={}",
            pki.other_ca_file().display()
        ))
        .arg("--peer-client-cert-auth")
        .timeout(Duration::from_secs(30))
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot fetch cluster info from peer urls"),
        "{out:?}"
    );
    let members = cluster
        .cli(real_etcdctl())
        .args(["member", "list"])
        .run()
        .unwrap();
    assert_eq!(members.stdout.lines().count(), 1, "{members:?}");
}

fn peer_cert_allowed_cn_admits_only_that_name(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = |allowed: &str, start_timeout| {
        pki.peer_tls_spec(ClusterSpec {
            size: 3,
            server: server.clone(),
            extra_args: vec![format!("--peer-cert-allowed-cn={allowed}")],
            start_timeout,
            ..ClusterSpec::default()
        })
        .unwrap()
    };
    // The members' shared certificate has CN "server".
    let cluster = Cluster::start(spec("server", WAIT)).unwrap();
    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "k", "v"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    drop(cluster);
    let refused = Cluster::start(spec("someone-else", Duration::from_secs(6)));
    assert!(refused.is_err(), "members with another CN formed a cluster");
}

fn peer_auto_tls_members_talk_with_self_signed_certificates(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let spec = pki
        .peer_tls_spec(ClusterSpec {
            size: 3,
            server,
            // https peer URLs from the harness, the files it passes taken back: auto TLS.
            extra_args: [
                "--peer-cert-file=",
                "--peer-key-file=",
                "--peer-trusted-ca-file=",
                "--peer-client-cert-auth=false",
                "--peer-auto-tls",
            ]
            .map(String::from)
            .into(),
            ..ClusterSpec::default()
        })
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    assert!(cluster.peer_url(1).starts_with("https://"));
    cluster.wait_for_leader(WAIT).unwrap();
    let put = cluster
        .cli(real_etcdctl())
        .args(["put", "k", "v"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
    for i in 0..3 {
        let fixtures = cluster.data_dir(i).join("fixtures/peer");
        assert!(
            fixtures.join("cert.pem").is_file(),
            "{}",
            fixtures.display()
        );
        assert!(fixtures.join("key.pem").is_file(), "{}", fixtures.display());
    }
}

/// A listener whose certificate and CA live in files of the test's own, to replace them.
struct LiveFiles {
    cert: CertFiles,
    ca: PathBuf,
}

fn live_files(pki: &TestPki, leaf: &CertFiles) -> LiveFiles {
    let live = LiveFiles {
        cert: CertFiles {
            cert: pki.dir().join("live.pem"),
            key: pki.dir().join("live-key.pem"),
        },
        ca: pki.dir().join("live-ca.pem"),
    };
    replace(&live.cert.cert, &std::fs::read(&leaf.cert).unwrap());
    replace(&live.cert.key, &std::fs::read(&leaf.key).unwrap());
    replace(&live.ca, &std::fs::read(pki.ca_file()).unwrap());
    live
}

/// Replaces `path` at once (a rename), as certificate tools do.
fn replace(path: &Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn live_cluster(server: ServerBinary, pki: &TestPki, live: &LiveFiles) -> Cluster {
    let spec = ClusterSpec {
        server,
        client_tls: Some(ListenerTls {
            cert: live.cert.clone(),
            trusted_ca: Some(live.ca.clone()),
            client_cert_auth: true,
        }),
        harness_tls: Some(pki.harness_client().unwrap()),
        ..ClusterSpec::default()
    };
    Cluster::start(spec).unwrap()
}

fn a_rotated_certificate_is_served_without_a_restart(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let live = live_files(&pki, &pki.server_cert("first").unwrap());
    let cluster = live_cluster(server, &pki, &live);
    let me = pki.client_cert("me", Some("me")).unwrap();
    assert!(served_subject(&cluster, &pki, &me).contains("first"));

    let second = pki.server_cert("second").unwrap();
    replace(&live.cert.key, &std::fs::read(&second.key).unwrap());
    replace(&live.cert.cert, &std::fs::read(&second.cert).unwrap());
    assert!(served_subject(&cluster, &pki, &me).contains("second"));
    let put = etcdctl(&cluster, &tls_flags(pki.ca_file(), Some(&me)))
        .args(["put", "k", "v"])
        .run()
        .unwrap();
    assert_eq!(put.stdout, "OK\n", "{put:?}");
}

fn a_rotated_ca_bundle_is_read_by_etcd_rs_and_not_by_etcd_3_4(server: ServerBinary) {
    let etcd34 = is_real_etcd(&server);
    let pki = TestPki::new().unwrap();
    let live = live_files(&pki, &pki.server_cert("member").unwrap());
    let cluster = live_cluster(server, &pki, &live);
    let stranger = pki
        .untrusted_client_cert("stranger", Some("stranger"))
        .unwrap();
    let as_stranger = || {
        etcdctl(&cluster, &tls_flags(pki.ca_file(), Some(&stranger)))
            .args(["put", "k", "v"])
            .run()
            .unwrap()
    };
    assert!(!as_stranger().success());

    // The bundle now trusts the other CA too.
    let mut bundle = std::fs::read(pki.ca_file()).unwrap();
    bundle.extend(std::fs::read(pki.other_ca_file()).unwrap());
    replace(&live.ca, &bundle);
    let after = as_stranger();
    if etcd34 {
        assert!(
            !after.success(),
            "etcd 3.4 does not reload its CA: {after:?}"
        );
    } else {
        assert_eq!(after.stdout, "OK\n", "{after:?}");
    }
}

/// Starts a lone member with https client URLs and `tls`; it must fail. Its output.
fn start_expecting_failure(server: &ServerBinary, tls: &[String]) -> CmdOutput {
    let data = tempfile::tempdir().unwrap();
    let out = Cli::new(server.path())
        .arg(format!("--data-dir={}", data.path().join("d").display()))
        .args([
            "--listen-client-urls=https://127.0.0.1:0",
            "--advertise-client-urls=https://127.0.0.1:0",
            "--listen-peer-urls=http://127.0.0.1:0",
            "--initial-advertise-peer-urls=http://127.0.0.1:0",
            "--initial-cluster=default=http://127.0.0.1:0",
        ])
        .args(tls)
        .timeout(Duration::from_secs(30))
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    out
}

fn bad_certificate_files_stop_the_member_at_start_naming_the_file(server: ServerBinary) {
    let pki = TestPki::new().unwrap();
    let good = pki.server_cert("good").unwrap();
    let other = pki.server_cert("other").unwrap();
    let pair = |cert: &Path, key: &Path| {
        vec![
            format!("--cert-file={}", cert.display()),
            format!("--key-file={}", key.display()),
        ]
    };

    let missing = pki.dir().join("missing.pem");
    let out = start_expecting_failure(&server, &pair(&missing, &good.key));
    assert!(
        out.stderr
            .contains(&format!("{}: no such file or directory", missing.display())),
        "{out:?}"
    );
    // A directory where a file should be (tests run as root, so permissions cannot deny a read).
    let out = start_expecting_failure(&server, &pair(&good.cert, pki.dir()));
    assert!(
        out.stderr.contains(&pki.dir().display().to_string()),
        "{out:?}"
    );

    let out = start_expecting_failure(&server, &pair(&good.cert, &other.key));
    assert!(
        out.stderr.contains("private key does not match public key"),
        "{out:?}"
    );
    if !is_real_etcd(&server) {
        // etcd's message names neither file; ours names both.
        assert!(
            out.stderr.contains(&other.key.display().to_string()),
            "{out:?}"
        );
    }

    let out = start_expecting_failure(&server, &["--cipher-suites=FOO".to_string()]);
    assert!(
        out.stderr.contains(r#"unexpected TLS cipher suite "FOO""#),
        "{out:?}"
    );
    let out = start_expecting_failure(&server, &[]);
    assert!(
        out.stderr.contains(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url \
             https://127.0.0.1:0 with HTTPS scheme"
        ),
        "{out:?}"
    );
}
