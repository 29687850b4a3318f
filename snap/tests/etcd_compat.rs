//! Compatibility with etcd itself (Debian's etcd 3.4, which CI installs): a `.snap` file written by etcd loads
//! here, and etcd restarts from a `.snap` file written by this crate without calling it broken. Traffic stays on
//! 127.0.0.1.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snap::Snapshotter;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_etcd(data_dir: &Path, client: u16, peer: u16) -> Etcd {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(ETCD)
        .args(["--name", "compat", "--snapshot-count", "5"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("compat={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("{ETCD} is needed (apt-get install etcd-server): {err}"));
    Etcd(child)
}

/// Runs etcdctl until it succeeds (the server may still be starting), for at most 30 s.
fn etcdctl(client: u16, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://127.0.0.1:{client}"))
            .arg("--command-timeout=2s")
            .args(args)
            .output()
            .unwrap_or_else(|err| {
                panic!("{ETCDCTL} is needed (apt-get install etcd-client): {err}")
            });
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {args:?} kept failing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn snap_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".snap") && !n.ends_with(".snap.db"))
        .collect();
    names.sort();
    names
}

#[test]
fn loads_etcd_snapshots_and_etcd_loads_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("compat.etcd");
    let snap_dir = data_dir.join("member/snap");
    let (client, peer) = (free_port(), free_port());

    let etcd = start_etcd(&data_dir, client, peer);
    for i in 1..=12 {
        etcdctl(client, &["put", &format!("snap-key-{i}"), "v"]);
    }
    // etcd writes its snapshot file asynchronously after the apply that crossed --snapshot-count.
    let deadline = Instant::now() + Duration::from_secs(30);
    while snap_files(&snap_dir).is_empty() {
        assert!(Instant::now() < deadline, "etcd wrote no snapshot");
        std::thread::sleep(Duration::from_millis(100));
    }
    etcdctl(client, &["put", "snap-key-last", "v"]);
    drop(etcd);

    let snapshotter = Snapshotter::new(&snap_dir).unwrap();
    let snapshot = snapshotter
        .load_newest()
        .unwrap()
        .expect("etcd's snapshot loads");
    assert!(snapshot.index >= 5 && snapshot.term >= 1);
    assert!(!snapshot.data.is_empty());

    // Replace etcd's files with one written by this crate from the same bytes.
    for name in snap_files(&snap_dir) {
        std::fs::remove_file(snap_dir.join(name)).unwrap();
    }
    let ours = snapshotter
        .save_snap(snapshot.term, snapshot.index, &snapshot.data)
        .unwrap();
    let our_name = ours.file_name().unwrap().to_str().unwrap().to_owned();

    let etcd = start_etcd(&data_dir, client, peer);
    let got = etcdctl(client, &["get", "snap-key-last"]);
    assert!(got.contains("snap-key-last"), "etcd restarted: {got}");
    drop(etcd);
    let files = snap_files(&snap_dir);
    assert!(
        files.contains(&our_name),
        "etcd kept our snapshot: {files:?}"
    );
    assert!(
        !files.iter().any(|n| n.ends_with(".broken")),
        "etcd found nothing broken: {files:?}"
    );
}
