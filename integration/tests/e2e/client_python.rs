//! The client users have in Python: PyPI's `etcd3` (pinned), installed once with pip into the target
//! directory and reused, runs `tests/python/etcd3_smoke.py` against each server: put, get, watch and
//! delete in plaintext, and over TLS with a client certificate as a user with a password, where a wrong
//! password and a request without a user are refused. (etcd3 sends its token as gRPC call credentials,
//! which today's grpcio refuses to send over a plaintext channel: users of etcd3 need TLS for auth.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use integration::certs::TestPki;
use integration::{real_etcdctl, server_tests, Cli, Cluster, ClusterSpec, ServerBinary};

server_tests! {
    fn python_etcd3_puts_gets_watches_and_deletes;
    fn python_etcd3_over_tls_with_a_user_and_password;
}

/// What pip installs: the last `etcd3` release; its old generated code needs the pure-Python protobuf.
const PACKAGE: &str = "etcd3==0.12.0";
const USER: &str = "root";
const PASSWORD: &str = "py-secret";

fn python_etcd3_puts_gets_watches_and_deletes(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        server,
        ..ClusterSpec::default()
    })
    .unwrap();
    run_smoke(&cluster, &[]);
}

fn python_etcd3_over_tls_with_a_user_and_password(server: ServerBinary) {
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
    enable_auth(&cluster);
    let harness = pki.harness_client().unwrap();
    let identity = harness.identity.unwrap();
    run_smoke(
        &cluster,
        &[
            ("ETCD_CA", harness.ca.as_os_str()),
            ("ETCD_CERT", identity.cert.as_os_str()),
            ("ETCD_KEY", identity.key.as_os_str()),
            ("ETCD_USER", USER.as_ref()),
            ("ETCD_PASSWORD", PASSWORD.as_ref()),
            // The harness's certificate has no common name: etcd 3.4 takes it for a user it does not
            // know, not for a missing one.
            (
                "ETCD_ANONYMOUS_ERROR",
                "etcdserver: permission denied".as_ref(),
            ),
        ],
    );
}

fn enable_auth(cluster: &Cluster) {
    let root = format!("{USER}:{PASSWORD}");
    for step in [
        &["user", "add", &root][..],
        &["user", "grant-role", USER, "root"],
        &["auth", "enable"],
    ] {
        cluster
            .cli(real_etcdctl())
            .args(step)
            .run_ok()
            .unwrap_or_else(|e| panic!("etcdctl {step:?}: {e}"));
    }
}

fn run_smoke(cluster: &Cluster, env: &[(&str, &OsStr)]) {
    let packages = installed_etcd3();
    let url = cluster.client_url(0);
    let (host, port) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .unwrap_or_else(|| panic!("client URL {url}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/etcd3_smoke.py");
    let cli = env.iter().fold(
        Cli::new("python3")
            .arg(script)
            .env("PYTHONPATH", &packages)
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .env("ETCD_HOST", host)
            .env("ETCD_PORT", port)
            .timeout(Duration::from_secs(90)),
        |cli, (name, path)| cli.env(name, path),
    );
    let out = cli.run().expect("run python3");
    assert!(
        out.success() && out.stdout == "ok\n",
        "etcd3 smoke test failed: {out:?}"
    );
}

/// The directory holding `etcd3` and its dependencies, installed by pip on first use (once per target
/// directory; the test processes share it through an atomic rename).
fn installed_etcd3() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-etcd3-0.12.0");
    if dir.join("etcd3").is_dir() {
        return dir;
    }
    let staging = tempfile::Builder::new()
        .prefix("python-etcd3-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a staging directory");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(staging.path())
        .arg(PACKAGE)
        .output()
        .expect("run python3 -m pip");
    assert!(
        out.status.success(),
        "pip could not install {PACKAGE} (is PyPI reachable?): {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = staging.keep();
    // Another test process may have finished first; its copy is as good.
    if std::fs::rename(&staged, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(dir.join("etcd3").is_dir(), "{} lacks etcd3", dir.display());
    dir
}
