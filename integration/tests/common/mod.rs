//! Helpers shared by the behaviour tests that run against both servers (see `integration::server_tests!`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use client::api::etcdserverpb::RangeRequest;
use client::{prefix_range_end, Client, ClientOptions};
use integration::{bin_path, real_etcdctl, Cluster, ClusterSpec, ServerBinary};
use testkit::eventually_async;

/// Bound on every wait for something that takes well under a second on a healthy cluster.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn start(server: ServerBinary, size: usize) -> Cluster {
    start_with(server, size, &[])
}

/// A cluster whose members all get `extra_args` after the harness's flags.
pub fn start_with(server: ServerBinary, size: usize, extra_args: &[&str]) -> Cluster {
    let spec = ClusterSpec {
        size,
        server,
        extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        ..ClusterSpec::default()
    };
    Cluster::start(spec).unwrap_or_else(|e| panic!("start a {size}-member cluster: {e}"))
}

pub async fn connect<S: AsRef<str>>(urls: &[S]) -> Client {
    Client::connect(urls, ClientOptions::default())
        .await
        .expect("connect")
}

/// A client that talks to member `i` only.
pub async fn connect_to(cluster: &Cluster, i: usize) -> Client {
    connect(&[cluster.client_url(i)]).await
}

/// Every client URL, starting with member `first`'s: clients given these talk to `first` until it fails.
pub fn urls_from(cluster: &Cluster, first: usize) -> Vec<String> {
    let n = cluster.size();
    (0..n)
        .map(|k| cluster.client_url((first + k) % n).to_string())
        .collect()
}

/// Runs a blocking harness call (stop, restart, a wait) from async code without starving the runtime.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// This workspace's etcdctl; it must be built with the tests' profile and target dir.
pub fn our_etcdctl() -> PathBuf {
    bin_path("etcdctl").unwrap_or_else(|e| panic!("{e}"))
}

/// Debian's etcdctl 3.4 and ours, labelled for messages.
pub fn etcdctls() -> [(&'static str, PathBuf); 2] {
    [
        ("etcdctl 3.4", real_etcdctl()),
        ("our etcdctl", our_etcdctl()),
    ]
}

/// Every key under `prefix` with its value, as one linearizable range.
pub async fn dump(client: &Client, prefix: &str) -> Vec<(String, String)> {
    let response = client
        .range(RangeRequest {
            key: prefix.into(),
            range_end: prefix_range_end(prefix.as_bytes()),
            ..Default::default()
        })
        .await
        .expect("range");
    response
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

/// The sum of every sample of Prometheus metric `name` (all label sets) in `metrics`; 0 when absent.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Runs the reference etcdctl against the cluster and returns its stdout, failing the test on an error.
pub fn real_etcdctl_ok(cluster: &Cluster, args: &[&str]) -> String {
    cluster
        .cli(real_etcdctl())
        .args(args)
        .run_ok()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Entries a leader keeps behind a snapshot for slow followers (etcd's SnapshotCatchUpEntries); writing
/// more than this with a small `--snapshot-count` makes a newcomer catch up from a snapshot.
pub const ENTRIES_KEPT_AFTER_SNAPSHOT: usize = 5000;

/// Writes `count` distinct keys under `prefix` with 16 concurrent puts.
pub async fn preload(client: &Client, prefix: &str, count: usize) {
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let client = client.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for n in (worker..count).step_by(16) {
                client
                    .put_kv(format!("{prefix}{n:06}"), format!("v{n}"))
                    .await
                    .unwrap_or_else(|e| panic!("preload put {n}: {e}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("preload task");
    }
}

/// Waits until member `i`'s metrics count at least one snapshot received from a peer.
pub async fn received_a_snapshot(cluster: &Cluster, i: usize) {
    eventually_async(WAIT, &format!("member {i} receives a snapshot"), || {
        let received = cluster
            .metrics(i)
            .map(|m| metric_sum(&m, "etcd_network_snapshot_receive_success"))
            .unwrap_or(0.0);
        async move { received >= 1.0 }
    })
    .await;
}
