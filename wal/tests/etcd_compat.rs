//! Byte compatibility with etcd itself (Debian's etcd 3.4, which CI installs): this crate reads a WAL written by
//! a real etcd that was killed with SIGKILL, appends to it, and etcd then restarts from the appended WAL, which
//! proves that it accepts our frames and CRC chain. Traffic stays on 127.0.0.1.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wal::{SnapshotMarker, Wal};

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
        .args(["--name", "compat"])
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn reads_etcd_wal_and_etcd_reads_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("compat.etcd");
    let wal_dir = data_dir.join("member/wal");
    let (client, peer) = (free_port(), free_port());

    let etcd = start_etcd(&data_dir, client, peer);
    for i in 1..=3 {
        etcdctl(
            client,
            &[
                "put",
                &format!("compat-key-{i}"),
                &format!("compat-value-{i}"),
            ],
        );
    }
    // Acknowledged puts were fsynced to the WAL; SIGKILL gives no chance to tidy up.
    drop(etcd);

    let (mut wal, contents) =
        Wal::open(&wal_dir, SnapshotMarker::default()).expect("open etcd's WAL");
    assert!(!contents.metadata.is_empty(), "etcd's member metadata");
    let last = contents.entries.last().expect("etcd wrote entries").clone();
    for (position, entry) in contents.entries.iter().enumerate() {
        assert_eq!(entry.index(), position as u64 + 1);
    }
    assert!(contents.hard_state.term >= 1 && contents.hard_state.commit >= 4);
    for i in 1..=3 {
        let value = format!("compat-value-{i}");
        assert!(
            contents
                .entries
                .iter()
                .any(|e| contains(e.encoded(), value.as_bytes())),
            "the put of {value} is in the WAL"
        );
    }

    // Append an empty normal entry (what a new leader proposes) in etcd's current term.
    let appended = wal::testing::raft_entry(last.term(), last.index() + 1, b"");
    wal.save(&contents.hard_state, std::slice::from_ref(&appended))
        .unwrap();
    wal.close().unwrap();

    let etcd = start_etcd(&data_dir, client, peer);
    let got = etcdctl(client, &["get", "compat-key-3"]);
    assert!(
        got.contains("compat-value-3"),
        "etcd restarted from our WAL: {got}"
    );
    drop(etcd);

    let (_, reread) = Wal::open(&wal_dir, SnapshotMarker::default()).unwrap();
    let position = appended.index() as usize - 1;
    assert_eq!(
        reread.entries[position], appended,
        "etcd kept the entry we appended"
    );
}
