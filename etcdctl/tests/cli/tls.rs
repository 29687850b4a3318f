//! The TLS flags (`--cacert`, `--cert`, `--key`, `--insecure-transport`, `--insecure-skip-tls-verify`
//! and their `ETCDCTL_*` variables) against a TLS member of Debian's etcd 3.4 made with the harness's
//! test PKI: ours and the reference must print the same and exit alike.

use crate::common;

use common::*;
use integration::certs::TestPki;
use integration::output::digits_masked;

/// A TLS member (client certificates required when `client_cert_auth`) with `k = v` stored.
fn tls_member(pki: &TestPki, client_cert_auth: bool) -> Cluster {
    let spec = pki
        .client_tls_spec(ClusterSpec::new(1), client_cert_auth)
        .unwrap();
    let cluster = Cluster::start(spec).expect("start a TLS etcd");
    ok(&cluster, &["put", "k", "v"]);
    cluster
}

/// Runs both etcdctls with `--endpoints` of `cluster`, `args` and `env`, none of the harness's TLS
/// flags; compares exit code, stdout and stderr without log lines, durations and digits masked.
fn same_tls(cluster: &Cluster, env: &[(&str, &str)], args: &[String]) -> CmdOutput {
    let run_with = |bin| {
        let cli = env.iter().fold(
            Cli::new(bin).arg(format!("--endpoints={}", cluster.endpoints())),
            |cli, (k, v)| cli.env(k, v),
        );
        run(cli.args(args))
    };
    let theirs = run_with(reference());
    let ours = run_with(ours());
    let show = |out: &CmdOutput| {
        (
            out.code(),
            digits_masked(&out.stdout),
            without_took(&digits_masked(&without_logs(&out.stderr))),
        )
    };
    assert_eq!(
        show(&ours),
        show(&theirs),
        "etcdctl {env:?} {args:?}: ours (left) differs from the reference (right)"
    );
    ours
}

/// `endpoint health`'s "took = 1.234ms" (the unit varies too) cut after "took = ".
fn without_took(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("took = ") {
            Some(at) => format!("{}\n", &l[..at + "took = ".len()]),
            None => format!("{l}\n"),
        })
        .collect()
}

fn flag(name: &str, path: &std::path::Path) -> String {
    format!("--{name}={}", path.display())
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Short timeouts for the runs that cannot connect.
const SHORT: [&str; 2] = ["--dial-timeout=1s", "--command-timeout=2s"];

#[test]
fn client_certificates_over_https() {
    let pki = TestPki::new().unwrap();
    let cluster = tls_member(&pki, true);
    let harness = pki.harness_client().unwrap();
    let identity = harness.identity.clone().unwrap();
    let trusted = [
        flag("cacert", pki.ca_file()),
        flag("cert", &identity.cert),
        flag("key", &identity.key),
    ];
    for command in [
        &["put", "k2", "v2"][..],
        &["get", "k"],
        &["endpoint", "health"],
        &["member", "list"],
        &["member", "list", "-w", "table"],
    ] {
        let out = same_tls(&cluster, &[], &[&trusted[..], &words(command)].concat());
        assert_eq!(out.code(), Some(0), "{command:?}: {out:?}");
    }

    // A server certificate from an untrusted CA.
    let wrong_ca = [
        flag("cacert", pki.other_ca_file()),
        flag("cert", &identity.cert),
        flag("key", &identity.key),
    ];
    for command in [&["get", "k"][..], &["endpoint", "health"]] {
        let out = same_tls(
            &cluster,
            &[],
            &[&wrong_ca[..], &words(&SHORT), &words(command)].concat(),
        );
        assert_ne!(out.code(), Some(0), "{command:?}: {out:?}");
    }
    // ... accepted when verification is skipped.
    let out = same_tls(
        &cluster,
        &[],
        &[
            &wrong_ca[..],
            &words(&["--insecure-skip-tls-verify", "get", "k"]),
        ]
        .concat(),
    );
    assert_eq!(out.stdout, "k\nv\n", "{out:?}");

    // Client certificates the member refuses: none, an expired one, one from another CA.
    let expired = pki.expired_client_cert("expired", Some("root")).unwrap();
    let foreign = pki.untrusted_client_cert("foreign", Some("root")).unwrap();
    for (cert, key) in [
        (None, None),
        (Some(&expired.cert), Some(&expired.key)),
        (Some(&foreign.cert), Some(&foreign.key)),
    ] {
        let mut args = vec![flag("cacert", pki.ca_file())];
        args.extend(cert.map(|c| flag("cert", c)));
        args.extend(key.map(|k| flag("key", k)));
        let out = same_tls(
            &cluster,
            &[],
            &[args, words(&SHORT), words(&["get", "k"])].concat(),
        );
        assert_ne!(out.code(), Some(0), "{cert:?}: {out:?}");
    }
}

#[test]
fn unusable_files_are_bad_arguments() {
    let pki = TestPki::new().unwrap();
    let cluster = tls_member(&pki, true);
    let identity = pki.harness_client().unwrap().identity.unwrap();
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "no PEM here\n").unwrap();
    let missing = pki.dir().join("missing.pem");
    let cases: Vec<Vec<String>> = vec![
        vec![
            flag("cacert", pki.ca_file()),
            flag("cert", &missing),
            flag("key", &identity.key),
        ],
        vec![
            flag("cacert", pki.ca_file()),
            flag("cert", &identity.cert),
            flag("key", &missing),
        ],
        vec![
            flag("cacert", &missing),
            flag("cert", &identity.cert),
            flag("key", &identity.key),
        ],
        vec![flag("cacert", pki.ca_file()), flag("cert", &identity.cert)],
        vec![flag("cacert", pki.ca_file()), flag("key", &identity.key)],
        vec![
            flag("cacert", pki.ca_file()),
            flag("cert", &junk),
            flag("key", &junk),
        ],
        vec![
            flag("cacert", pki.ca_file()),
            flag("cert", &identity.cert),
            flag("key", &junk),
        ],
        vec!["--cacert=".into()],
        vec!["--cert=".into(), flag("key", &identity.key)],
        vec![flag("cacert", pki.ca_file()), "--key=".into()],
    ];
    for case in cases {
        let out = same_tls(
            &cluster,
            &[],
            &[case.clone(), words(&["get", "k"])].concat(),
        );
        assert_eq!(out.code(), Some(128), "{case:?}: {out:?}");
    }
    // Files are read even when no endpoint is https.
    let out = run(Cli::new(ours()).args([
        "--endpoints=http://127.0.0.1:1".to_string(),
        flag("cacert", &missing),
        "get".into(),
        "k".into(),
    ]));
    let theirs = run(Cli::new(reference()).args([
        "--endpoints=http://127.0.0.1:1".to_string(),
        flag("cacert", &missing),
        "get".into(),
        "k".into(),
    ]));
    assert_eq!(shown(&out), shown(&theirs));
    assert_eq!(out.code(), Some(128), "{out:?}");
}

#[test]
fn insecure_transport_and_skip_verify_combine_as_etcdctl_does() {
    let pki = TestPki::new().unwrap();
    let cluster = tls_member(&pki, false);
    let ca = flag("cacert", pki.ca_file());
    let get = words(&["get", "k"]);
    // The CA alone, by flag or variable.
    assert_eq!(
        same_tls(&cluster, &[], &[vec![ca.clone()], get.clone()].concat()).stdout,
        "k\nv\n"
    );
    let ca_path = pki.ca_file().display().to_string();
    let out = same_tls(&cluster, &[("ETCDCTL_CACERT", &ca_path)], &get);
    assert_eq!(out.stdout, "k\nv\n", "{out:?}");
    // Skipping verification takes a TLS configuration: files, or --insecure-transport=false.
    let skip = words(&["--insecure-skip-tls-verify"]);
    let out = same_tls(
        &cluster,
        &[],
        &[skip.clone(), words(&SHORT), get.clone()].concat(),
    );
    assert_ne!(out.code(), Some(0), "{out:?}");
    let out = same_tls(
        &cluster,
        &[],
        &[
            words(&["--insecure-transport=false"]),
            skip.clone(),
            get.clone(),
        ]
        .concat(),
    );
    assert_eq!(out.stdout, "k\nv\n", "{out:?}");
    let out = same_tls(
        &cluster,
        &[
            ("ETCDCTL_INSECURE_TRANSPORT", "false"),
            ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true"),
        ],
        &get,
    );
    assert_eq!(out.stdout, "k\nv\n", "{out:?}");
    // An https endpoint without any TLS flag is verified against the system's CAs, which do not know ours.
    let out = same_tls(&cluster, &[], &[words(&SHORT), get.clone()].concat());
    assert_ne!(out.code(), Some(0), "{out:?}");
    // A plaintext client on the TLS port.
    let plain = cluster.endpoints().replace("https://", "http://");
    let run_with = |bin| {
        run(Cli::new(bin)
            .arg(format!("--endpoints={plain}"))
            .args(SHORT)
            .args(["get", "k"]))
    };
    let (theirs, ours) = (run_with(reference()), run_with(ours()));
    assert_eq!(shown(&ours), shown(&theirs));
    assert_ne!(ours.code(), Some(0), "{ours:?}");
}
