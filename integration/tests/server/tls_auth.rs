//! Auth over TLS on real processes, against etcd 3.4 and our `etcd`: a 3-member cluster with client
//! and peer TLS and `--client-cert-auth`, where a client certificate's CN is the user when no token
//! is sent (etcd's `AuthInfoFromTLS`). Every command runs with Debian's etcdctl 3.4 and ours, each
//! against a different member, and both must answer as etcd does.

use crate::common;

use std::path::Path;

use common::*;
use integration::certs::TestPki;
use integration::output::without_logs;
use integration::{real_etcdctl, server_tests, Cli, Cluster, ClusterSpec, ServerBinary};

server_tests! {
    fn a_client_certificates_cn_is_the_user_when_no_token_is_sent;
}

/// Which client certificate a command presents.
#[derive(Clone, Copy)]
enum Cert {
    Named(&'static str),
    /// A certificate without a CN.
    Nameless,
}

/// What a command must answer: its stdout, or the last line of its stderr and its exit code.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Prints(&'static str),
    Fails(&'static str, i32),
}
use Expect::{Fails, Prints};

struct Pki {
    pki: TestPki,
}

impl Pki {
    fn flags(&self, cert: Cert) -> Vec<String> {
        let (name, cn) = match cert {
            Cert::Named(cn) => (cn.to_string(), Some(cn)),
            Cert::Nameless => ("nameless".to_string(), None),
        };
        let files = self.pki.client_cert(&name, cn).unwrap();
        vec![
            format!("--cacert={}", self.pki.ca_file().display()),
            format!("--cert={}", files.cert.display()),
            format!("--key={}", files.key.display()),
        ]
    }
}

fn etcdctl(bin: &Path, cluster: &Cluster, member: usize, tls: &[String]) -> Cli {
    Cli::new(bin)
        .arg(format!("--endpoints={}", cluster.client_url(member)))
        .args(tls)
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .timeout(std::time::Duration::from_secs(20))
}

/// Runs `args` with both etcdctls, each on its own member, presenting `cert`.
fn check(cluster: &Cluster, pki: &Pki, cert: Cert, args: &[&str], expect: Expect) {
    let tls = pki.flags(cert);
    for (member, (label, bin)) in etcdctls().iter().enumerate() {
        let out = etcdctl(bin, cluster, member + 1, &tls)
            .args(args)
            .run()
            .unwrap();
        let context = format!("{label} etcdctl {args:?}: {out:?}");
        match expect {
            Prints(stdout) => {
                assert!(out.success(), "{context}");
                assert_eq!(out.stdout, stdout, "{context}");
            }
            Fails(last_line, code) => {
                assert_eq!(out.status.code(), Some(code), "{context}");
                let stderr = without_logs(&out.stderr);
                assert_eq!(stderr.lines().last(), Some(last_line), "{context}");
            }
        }
    }
}

fn a_client_certificates_cn_is_the_user_when_no_token_is_sent(server: ServerBinary) {
    let pki = Pki {
        pki: TestPki::new().unwrap(),
    };
    let spec = ClusterSpec {
        size: 3,
        server,
        ..ClusterSpec::default()
    };
    let spec = pki
        .pki
        .peer_tls_spec(pki.pki.client_tls_spec(spec, true).unwrap())
        .unwrap();
    let cluster = Cluster::start(spec).unwrap();
    cluster.wait_for_leader(WAIT).unwrap();

    // Before auth is on, any trusted certificate may do anything.
    let root = Cert::Named("root");
    let setup: [&[&str]; 6] = [
        &["user", "add", "root:rootpw"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "--prefix=true",
            "read",
            "app/",
        ],
        &["user", "grant-role", "alice", "reader"],
        &["put", "app/x", "1"],
    ];
    for args in setup {
        let out = etcdctl(&real_etcdctl(), &cluster, 0, &pki.flags(Cert::Nameless))
            .args(args)
            .run()
            .unwrap();
        assert!(out.success(), "{args:?}: {out:?}");
    }
    let out = etcdctl(&real_etcdctl(), &cluster, 0, &pki.flags(root))
        .args(["auth", "enable"])
        .run()
        .unwrap();
    assert_eq!(out.stdout, "Authentication Enabled\n", "{out:?}");

    // The root certificate is the root user: writes and admin commands, no password.
    check(&cluster, &pki, root, &["put", "app/y", "2"], Prints("OK\n"));
    check(
        &cluster,
        &pki,
        root,
        &["user", "list"],
        Prints("alice\nroot\n"),
    );
    // Alice's certificate reads her prefix and nothing else, and may not write.
    let alice = Cert::Named("alice");
    check(
        &cluster,
        &pki,
        alice,
        &["get", "app/x", "--print-value-only"],
        Prints("1\n"),
    );
    let denied = Fails("Error: etcdserver: permission denied", 1);
    check(&cluster, &pki, alice, &["put", "app/x", "3"], denied);
    check(&cluster, &pki, alice, &["get", "other"], denied);
    check(
        &cluster,
        &pki,
        alice,
        &["user", "list"],
        Fails("Error: etcdserver: permission denied", 1),
    );
    // A CN that names no user, and a certificate without a CN, are nobody: key checks deny, and
    // admin checks say the name is missing or unknown, as etcd does.
    check(
        &cluster,
        &pki,
        Cert::Named("mallory"),
        &["get", "app/x"],
        denied,
    );
    check(
        &cluster,
        &pki,
        Cert::Named("mallory"),
        &["user", "list"],
        Fails("Error: etcdserver: user name not found", 1),
    );
    check(&cluster, &pki, Cert::Nameless, &["get", "app/x"], denied);
    check(
        &cluster,
        &pki,
        Cert::Nameless,
        &["user", "list"],
        Fails("Error: etcdserver: user name is empty", 1),
    );
    // A token wins over the certificate: alice's certificate with root's password writes.
    check(
        &cluster,
        &pki,
        alice,
        &["--user", "root:rootpw", "put", "app/z", "4"],
        Prints("OK\n"),
    );
    // The writes reached every member.
    check(
        &cluster,
        &pki,
        root,
        &["get", "app/", "--prefix", "--keys-only"],
        Prints("app/x\n\napp/y\n\napp/z\n\n"),
    );
}
