//! What the harness promises about resources: disjoint ports across concurrent clusters, no process or
//! directory left behind on success, panic or death of the test process, and clear errors at boot.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use integration::{bin_path, real_etcdctl, Cli, Cluster, ClusterSpec, Error, ProcessError};

const TIMEOUT: Duration = Duration::from_secs(20);

/// True once `pid` no longer runs: gone from /proc, or a zombie waiting for a reaper that is not us
/// (in a container, pid 1 may reap orphans slowly or never).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn wait_gone(pid: u32) {
    testkit::eventually(TIMEOUT, &format!("process {pid} to be gone"), || {
        is_gone(pid)
    });
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn ports(cluster: &Cluster) -> Vec<u16> {
    (0..cluster.size())
        .flat_map(|i| [port_of(cluster.client_url(i)), port_of(cluster.peer_url(i))])
        .collect()
}

#[test]
fn clusters_started_concurrently_get_disjoint_ports() {
    let boots: Vec<_> = [3, 1, 1]
        .into_iter()
        .map(|size| thread::spawn(move || Cluster::start(ClusterSpec::new(size)).unwrap()))
        .collect();
    // The clusters outlive the threads that booted them: their members must not die with those threads.
    let clusters: Vec<Cluster> = boots.into_iter().map(|t| t.join().unwrap()).collect();

    let all: Vec<u16> = clusters.iter().flat_map(ports).collect();
    assert_eq!(all.len(), 2 * (3 + 1 + 1));
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "{all:?}"
    );
    assert!(all.iter().all(|&p| (1024..32768).contains(&p)), "{all:?}");

    // Separate clusters, each working: a key written to one is absent from the others.
    for (n, cluster) in clusters.iter().enumerate() {
        let out = cluster
            .cli(real_etcdctl())
            .args(["put", "owner", &n.to_string()])
            .run()
            .unwrap();
        assert_eq!(out.stdout, "OK\n", "{out:?}");
    }
    for (n, cluster) in clusters.iter().enumerate() {
        let out = cluster
            .cli(real_etcdctl())
            .args(["get", "owner", "--print-value-only"])
            .run()
            .unwrap();
        assert_eq!(out.stdout, format!("{n}\n"), "{out:?}");
    }
}

#[test]
fn drop_kills_every_process_and_removes_the_data_dirs() {
    let cluster = Cluster::start(ClusterSpec::new(3)).unwrap();
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).unwrap()).collect();
    let dirs: Vec<PathBuf> = (0..3).map(|i| cluster.data_dir(i).to_path_buf()).collect();
    let urls = cluster.client_urls();
    let watch = cluster
        .cli(real_etcdctl())
        .args(["watch", "x"])
        .spawn()
        .unwrap();
    let watch_pid = watch.pid();
    assert!(pids.iter().chain([&watch_pid]).all(|&p| !is_gone(p)));

    drop(watch);
    drop(cluster);
    // Drop reaps its children, so they are gone at once, not eventually.
    for pid in pids.iter().chain([&watch_pid]) {
        assert!(is_gone(*pid), "process {pid} survived the drop");
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} survived the drop", dir.display());
    }
    for url in &urls {
        let addr = url.trim_start_matches("http://");
        assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts");
    }
}

#[test]
fn a_panicking_test_still_kills_its_cluster() {
    let (pids_tx, pids_rx) = mpsc::channel();
    let failed = thread::spawn(move || {
        let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
        pids_tx.send(cluster.pid(0).unwrap()).unwrap();
        panic!("simulated test failure");
    })
    .join();
    assert!(failed.is_err());
    let pid = pids_rx.recv().unwrap();
    assert!(is_gone(pid), "member {pid} survived a panic");
}

/// Not a test on its own: `children_die_with_the_test_process` runs this in a child process, which it
/// then SIGKILLs. Without the variable it returns at once.
#[test]
fn orphan_helper() {
    if std::env::var_os("ETCD_RS_HARNESS_ORPHAN_HELPER").is_none() {
        return;
    }
    let cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let sleeper = Cli::new("/bin/sleep").arg("60").spawn().unwrap();
    println!(
        "PIDS {} {} DIR {}",
        cluster.pid(0).unwrap(),
        sleeper.pid(),
        cluster.data_dir(0).parent().unwrap().display()
    );
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn children_die_with_the_test_process() {
    let exe = std::env::current_exe().unwrap();
    // libtest names a test by its path below the crate root (`lifecycle::orphan_helper`).
    let below_root = module_path!()
        .split_once("::")
        .map(|(_, m)| format!("{m}::"));
    let helper_test = format!("{}orphan_helper", below_root.unwrap_or_default());
    let mut helper = Cli::new(exe)
        .args(["--exact", &helper_test, "--nocapture", "--test-threads=1"])
        .env("ETCD_RS_HARNESS_ORPHAN_HELPER", "1")
        .spawn()
        .unwrap();
    // libtest prints "test orphan_helper ... " without a newline, so the marker ends that line.
    let line = helper
        .wait_for_line(TIMEOUT, |l| l.contains("PIDS "))
        .unwrap();
    let (_, report) = line.split_once("PIDS ").unwrap();
    let (pids, dir) = report.split_once(" DIR ").unwrap();
    let pids: Vec<u32> = pids.split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| !is_gone(p)));

    // SIGKILL: the helper runs no destructor, so only the parent-death signal can take its children down.
    drop(helper);
    for pid in pids {
        wait_gone(pid);
    }
    // The helper died before it could delete its directory; the next boot would sweep it, but a test
    // cleans up after itself.
    assert!(Path::new(dir).is_dir(), "{dir}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stop_is_graceful_and_restart_reuses_the_data_dir() {
    let mut cluster = Cluster::start(ClusterSpec::new(1)).unwrap();
    let out = cluster
        .cli(real_etcdctl())
        .args(["put", "durable", "yes"])
        .run()
        .unwrap();
    assert_eq!(out.stdout, "OK\n");
    let first_pid = cluster.pid(0).unwrap();

    let status = cluster.stop(0).unwrap();
    assert!(status.is_some());
    assert!(!cluster.is_running(0));
    assert!(is_gone(first_pid));
    assert_eq!(cluster.stop(0).unwrap(), None, "stopping twice is a no-op");

    cluster.restart(0).unwrap();
    assert!(cluster.is_running(0));
    assert_ne!(cluster.pid(0), Some(first_pid));
    cluster.wait_healthy(0, TIMEOUT).unwrap();
    assert_eq!(cluster.wait_for_leader(TIMEOUT).unwrap(), 0);
    let out = cluster
        .cli(real_etcdctl())
        .args(["get", "durable", "--print-value-only"])
        .run()
        .unwrap();
    assert_eq!(out.stdout, "yes\n", "{out:?}");

    assert!(matches!(
        cluster.kill(7),
        Err(Error::NoSuchMember { index: 7, size: 1 })
    ));
}

#[test]
fn a_member_that_cannot_start_fails_fast_with_its_log() {
    let started = Instant::now();
    let spec = ClusterSpec {
        extra_args: vec!["--no-such-flag".into()],
        ..ClusterSpec::default()
    };
    match Cluster::start(spec) {
        Err(Error::MemberExited {
            member,
            status,
            command,
            log_tail,
        }) => {
            assert_eq!(member, "m0");
            assert!(!status.success());
            assert!(command.ends_with(" --no-such-flag"), "{command}");
            assert!(log_tail.contains("no-such-flag"), "{log_tail}");
        }
        other => panic!("expected MemberExited, got {other:?}"),
    }
    assert!(started.elapsed() < TIMEOUT);
}

#[test]
fn bin_path_looks_next_to_the_test_executable() {
    match bin_path("no-such-binary") {
        Err(ProcessError::BinaryNotFound { path, .. }) => {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> -> target/<profile>/no-such-binary
            assert_eq!(
                path,
                exe.parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("no-such-binary")
            );
        }
        other => panic!("expected BinaryNotFound, got {other:?}"),
    }
}
