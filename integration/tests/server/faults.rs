//! Faults on real server processes, seen through the wire: the leader SIGKILLed under concurrent
//! writes, every member restarted (gracefully, then by SIGKILL), and a member that was down while the
//! log it needs was compacted away. Each runs against etcd 3.4 and against our `etcd`.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::api::etcdserverpb::{DeleteRangeRequest, RangeRequest};
use client::prefix_range_end;
use common::*;
use integration::{server_tests, Cluster, ServerBinary};
use testkit::eventually_async;

/// The bound on electing a new leader; the harness gives `--election-timeout 500ms`.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(3);

/// Writers running in the background, each recording the keys whose put was acknowledged.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// `count` writers, each with its own client whose first endpoint is a different member, so writes
    /// reach the leader both directly and through followers.
    async fn start(cluster: &Cluster, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..count {
            let client = connect(&urls_from(cluster, w)).await;
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // A failed put may or may not have committed; only acknowledged ones are promised.
                    let key = format!("acked/{w:02}/{seq:06}");
                    seq += 1;
                    match client.put_kv(key.clone(), key.clone()).await {
                        Ok(_) => acked.lock().unwrap().push(key),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Writers { stop, acked, tasks }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_more(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        eventually_async(WAIT, what, || async { self.acked() >= target }).await;
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            // A put in flight ends within the client's 5 s request timeout.
            tokio::time::timeout(WAIT, task)
                .await
                .expect("a writer stops")
                .expect("a writer does not panic");
        }
        let mut acked = self.acked.lock().unwrap().clone();
        acked.sort();
        acked
    }
}

/// Every key and value under `prefix` with its create/mod revision and version, and the store's
/// revision, as member `i` answers a linearizable range.
async fn full_state(cluster: &Cluster, i: usize, prefix: &str) -> (i64, Vec<String>) {
    let client = connect_to(cluster, i).await;
    let response = client
        .range(RangeRequest {
            key: prefix.into(),
            range_end: prefix_range_end(prefix.as_bytes()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("range on {}: {e}", cluster.name(i)));
    let kvs = response
        .kvs
        .iter()
        .map(|kv| {
            format!(
                "{}={} create={} mod={} version={}",
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            )
        })
        .collect();
    (response.header.expect("a header").revision, kvs)
}

/// Puts `count` keys `<prefix><n>` through `clients` clients with `in_flight` concurrent puts in all.
async fn put_many(cluster: &Cluster, prefix: &str, count: usize, in_flight: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        clients.push(connect(&urls_from(cluster, c)).await);
    }
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let client = clients[t % clients.len()].clone();
        let next = Arc::clone(&next);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return;
                }
                let key = format!("{prefix}{n:06}");
                client
                    .put_kv(key.clone(), format!("value of {key}"))
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer does not panic");
    }
}

fn restart_all(cluster: &mut Cluster) {
    for i in 0..cluster.size() {
        cluster
            .restart(i)
            .unwrap_or_else(|e| panic!("restart {}: {e}", cluster.name(i)));
    }
    cluster
        .wait_all_healthy(WAIT)
        .unwrap_or_else(|e| panic!("after a restart of every member: {e}"));
}

server_tests! {
    async fn killed_leader_is_replaced_within_3s_and_no_acknowledged_write_is_lost;
    async fn every_member_restarted_keeps_all_data_and_the_revision;
    async fn a_member_behind_the_compacted_log_catches_up_by_snapshot;
}

/// SIGKILL of the leader while 8 clients write: the survivors elect a new leader within 3 s, writes
/// go on, and once the killed member is back every acknowledged write is readable, by a linearizable
/// range, on every member.
async fn killed_leader_is_replaced_within_3s_and_no_acknowledged_write_is_lost(
    server: ServerBinary,
) {
    let mut cluster = start(server, 3);
    let old_leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let writers = Writers::start(&cluster, 8).await;
    writers.wait_for_more(100, "writes before the kill").await;

    blocking(|| cluster.kill(old_leader)).expect("kill the leader");
    let killed_at = Instant::now();
    let new_leader = blocking(|| cluster.wait_for_leader(NEW_LEADER_WITHIN))
        .expect("a new leader within 3 s of the kill");
    let election = killed_at.elapsed();
    assert_ne!(new_leader, old_leader);
    writers
        .wait_for_more(100, "writes after the new leader")
        .await;
    let acked = writers.finish().await;

    blocking(|| {
        cluster.restart(old_leader)?;
        cluster.wait_healthy(old_leader, WAIT)
    })
    .expect("the killed member rejoins");
    for i in 0..cluster.size() {
        let stored: Vec<String> = dump(&connect_to(&cluster, i).await, "acked/")
            .await
            .into_iter()
            .map(|(key, value)| {
                assert_eq!(key, value, "on {}", cluster.name(i));
                key
            })
            .collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|k| stored.binary_search(k).is_err())
            .collect();
        assert!(
            lost.is_empty(),
            "{} lost acknowledged writes: {lost:?}",
            cluster.name(i)
        );
    }
    eprintln!(
        "new leader {election:?} after the kill; {} acknowledged writes, all on every member",
        acked.len()
    );
}

/// Every member stopped (SIGTERM) and started again, then every member SIGKILLed and started again:
/// each time every key, value, create/mod revision and version, and the store's revision, are as
/// before on every member.
async fn every_member_restarted_keeps_all_data_and_the_revision(server: ServerBinary) {
    let mut cluster = start(server, 3);
    put_many(&cluster, "r/", 300, 32).await;
    let c = connect(&cluster.client_urls()).await;
    // Overwrites of the first 50, so versions and mod revisions differ from create revisions.
    put_many(&cluster, "r/", 50, 8).await;
    c.delete_range(DeleteRangeRequest {
        key: b"r/000100".to_vec(),
        range_end: b"r/000200".to_vec(),
        prev_kv: false,
    })
    .await
    .expect("delete a range");
    let before = full_state(&cluster, 0, "r/").await;
    assert_eq!(before.1.len(), 200, "300 keys, 100 of them deleted");
    assert!(before.1[0].ends_with(" version=2"), "{}", before.1[0]);

    blocking(|| {
        for i in 0..cluster.size() {
            let status = cluster.stop(i).expect("stop").expect("it was running");
            assert!(
                status.success() || status.code().is_none(),
                "{} exited with {status}",
                cluster.name(i)
            );
        }
        restart_all(&mut cluster);
    });
    for i in 0..cluster.size() {
        assert_eq!(
            full_state(&cluster, i, "r/").await,
            before,
            "{} after stop and restart",
            cluster.name(i)
        );
    }

    c.put_kv("r/after-restart", "x")
        .await
        .expect("a write after the restart");
    let before = full_state(&cluster, 0, "r/").await;
    blocking(|| {
        for i in 0..cluster.size() {
            cluster.kill(i).expect("kill");
        }
        restart_all(&mut cluster);
    });
    for i in 0..cluster.size() {
        assert_eq!(
            full_state(&cluster, i, "r/").await,
            before,
            "{} after kill -9 and restart",
            cluster.name(i)
        );
    }
}

/// With `--snapshot-count 1000`, a follower stopped while 7000 puts are made (etcd keeps 5000
/// entries behind a snapshot, so the log it needs is compacted away) catches up after restart from a
/// snapshot: it has every key, and its /metrics count a received snapshot, the leader's a sent one.
async fn a_member_behind_the_compacted_log_catches_up_by_snapshot(server: ServerBinary) {
    const PUTS: usize = 7000;
    let mut cluster = start_with(server, 3, &["--snapshot-count", "1000"]);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let lagging = (leader + 1) % cluster.size();
    blocking(|| cluster.stop(lagging)).expect("stop a follower");

    let started = Instant::now();
    put_many(&cluster, "s/", PUTS, 64).await;
    let writing = started.elapsed();

    blocking(|| {
        cluster.restart(lagging)?;
        cluster.wait_healthy(lagging, WAIT)
    })
    .expect("the stopped member restarts");
    let lagging_client = connect_to(&cluster, lagging).await;
    let count = |serializable| {
        let c = lagging_client.clone();
        async move {
            c.range(RangeRequest {
                key: b"s/".to_vec(),
                range_end: prefix_range_end(b"s/"),
                count_only: true,
                serializable,
                ..Default::default()
            })
            .await
            .map(|r| r.count)
        }
    };
    eventually_async(
        WAIT,
        "the restarted member's own store to hold every key",
        || async { count(true).await.is_ok_and(|n| n == PUTS as i64) },
    )
    .await;
    assert_eq!(
        count(false).await.expect("a linearizable count"),
        PUTS as i64
    );
    let some = dump(&lagging_client, "s/00699").await;
    assert_eq!(some.len(), 10);
    assert!(
        some.iter().all(|(k, v)| *v == format!("value of {k}")),
        "{some:?}"
    );

    let received = metric_sum(
        &cluster.metrics(lagging).expect("metrics"),
        "etcd_network_snapshot_receive_success",
    );
    assert!(
        received >= 1.0,
        "no snapshot received by {}",
        cluster.name(lagging)
    );
    // Leadership may have moved while the member was down; some member sent the snapshot.
    let sent: f64 = (0..cluster.size())
        .filter(|&i| i != lagging)
        .map(|i| {
            metric_sum(
                &cluster.metrics(i).expect("metrics"),
                "etcd_network_snapshot_send_success",
            )
        })
        .sum();
    assert!(sent >= 1.0, "no member counts a snapshot sent");
    eprintln!("{PUTS} puts in {writing:?}; snapshots received {received}, sent {sent}");
}
