//! Runtime membership changes on real processes, against etcd 3.4 and our `etcd`, driven by Debian's
//! etcdctl 3.4 and ours in turn: grow a cluster from 1 to 5 members and shrink it back to 1 while a
//! client writes, losing no acknowledged write; replace a member (remove it, wipe its data, add it
//! back fresh); add a learner, let it catch up, promote it (through a follower).
//! New members join with `--initial-cluster-state existing` and, because the leader's log is compacted
//! by then (`--snapshot-count 1000`, 5000 entries kept), catch up from a snapshot.

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::api::etcdserverpb::{MemberListRequest, RangeRequest};
use client::{prefix_range_end, Client};
use common::*;
use integration::output::without_logs;
use integration::{server_tests, Cli, Cluster, ServerBinary};
use testkit::{eventually_async, poll, poll_async};
use tokio::task::JoinHandle;

server_tests! {
    async fn grow_from_1_to_5_and_shrink_back_to_1_under_writes_loses_nothing;
    async fn a_removed_member_wiped_and_added_back_fresh_catches_up;
    async fn a_learner_joins_catches_up_and_is_promoted_to_voter;
}

fn start_compacting(server: ServerBinary, size: usize) -> Cluster {
    start_with(server, size, &["--snapshot-count", "1000"])
}

/// Puts `w/<n>` for n = 0, 1, ... until stopped; returns the numbers whose put was acknowledged. A put
/// that fails (a leader change, a member leaving) may or may not have happened, so it is not counted.
fn spawn_writer(client: Client, stop: Arc<AtomicBool>) -> JoinHandle<Vec<usize>> {
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let put = client.put_kv(format!("w/{n:06}"), format!("{n}"));
            match tokio::time::timeout(Duration::from_secs(5), put).await {
                Ok(Ok(_)) => acknowledged.push(n),
                Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            n += 1;
        }
        acknowledged
    })
}

/// Runs etcdctl `args` against `endpoints` until it succeeds (etcd refuses a change with `unhealthy
/// cluster` until the previous newcomer has started and its peers see it active); returns stdout.
fn etcdctl_until_ok(bin: &Path, endpoints: &str, args: &[&str]) -> String {
    poll(WAIT, || {
        let out = Cli::new(bin)
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .run()
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        }
    })
    .unwrap_or_else(|stderr| {
        panic!(
            "{} {args:?} not accepted within {WAIT:?}: {}",
            bin.display(),
            without_logs(&stderr)
        )
    })
}

/// `etcdctl member add` (`--learner` if asked); returns the new member's id from "Member <id> added
/// to cluster <cluster id>".
fn add_member(bin: &Path, endpoints: &str, name: &str, peer_url: &str, learner: bool) -> u64 {
    let peer_urls = format!("--peer-urls={peer_url}");
    let mut args = vec!["member", "add", name, &peer_urls];
    if learner {
        args.push("--learner");
    }
    let out = blocking(|| etcdctl_until_ok(bin, endpoints, &args));
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.get(..1), Some(&["Member"][..]), "{out}");
    assert_eq!(
        words.get(2..5),
        Some(&["added", "to", "cluster"][..]),
        "{out}"
    );
    u64::from_str_radix(words[1], 16).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// `etcdctl member remove <id>`.
fn remove_member(bin: &Path, endpoints: &str, id: u64) {
    let out =
        blocking(|| etcdctl_until_ok(bin, endpoints, &["member", "remove", &format!("{id:x}")]));
    assert!(out.contains("removed from cluster"), "{out}");
}

/// Member ids by name (`m<i>`) from MemberList; a member that has not started yet has no name.
async fn member_id(client: &Client, name: &str) -> u64 {
    let members = client
        .member_list(MemberListRequest::default())
        .await
        .expect("member list")
        .members;
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member named {name} in {members:?}"))
        .id
}

/// Adds a fresh voter in a new slot with etcdctl `bin` and starts it; returns its index once it is
/// healthy.
async fn grow(cluster: &mut Cluster, bin: &Path, membership: &mut Vec<usize>) -> usize {
    let slot = blocking(|| cluster.add_member_slot()).expect("slot");
    let endpoints = cluster.client_url(0).to_string();
    add_member(
        bin,
        &endpoints,
        cluster.name(slot),
        cluster.peer_url(slot),
        false,
    );
    membership.push(slot);
    blocking(|| {
        cluster.join(slot, membership)?;
        cluster.wait_healthy(slot, WAIT)
    })
    .unwrap_or_else(|e| panic!("member {slot} joins: {e}"));
    slot
}

/// Puts `key` until the cluster acknowledges it: right after a membership change a put may be lost
/// with its leader (forwarded to a leader that just left) and time out, on etcd as on ours.
async fn put_eventually(client: &Client, key: &str, value: &str) {
    poll_async(WAIT, || async {
        let put = tokio::time::timeout(Duration::from_secs(5), client.put_kv(key, value));
        match put.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5s".to_string()),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("put {key} not acknowledged within {WAIT:?}: {last}"));
}

/// Acknowledged keys that a linearizable read through `client` does not return.
async fn missing(client: &Client, acknowledged: &[usize]) -> Vec<usize> {
    let response = client
        .range(RangeRequest {
            key: b"w/".to_vec(),
            range_end: prefix_range_end(b"w/"),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("read back");
    let present: std::collections::HashSet<Vec<u8>> =
        response.kvs.into_iter().map(|kv| kv.key).collect();
    acknowledged
        .iter()
        .copied()
        .filter(|n| !present.contains(format!("w/{n:06}").as_bytes()))
        .collect()
}

async fn grow_from_1_to_5_and_shrink_back_to_1_under_writes_loses_nothing(server: ServerBinary) {
    let mut cluster = start_compacting(server, 1);
    // m0 stays a member throughout, so the writer and the admin client never lose their endpoint.
    let client = connect_to(&cluster, 0).await;
    preload(&client, "pre/", ENTRIES_KEPT_AFTER_SNAPSHOT + 1500).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(connect_to(&cluster, 0).await, stop.clone());

    // Both etcdctls take turns adding and removing.
    let etcdctls = etcdctls();
    let mut membership = vec![0];
    for k in 1..5 {
        let (_, bin) = &etcdctls[k % 2];
        let slot = grow(&mut cluster, bin, &mut membership).await;
        received_a_snapshot(&cluster, slot).await;
        // A member that just joined serves writes at once: no retry here.
        connect_to(&cluster, slot)
            .await
            .put_kv("through-the-newcomer", cluster.name(slot))
            .await
            .unwrap_or_else(|e| panic!("write through {}: {e}", cluster.name(slot)));
    }
    let members = client.member_list(MemberListRequest::default()).await;
    assert_eq!(members.expect("member list").members.len(), 5);

    // Shrink newest first; whoever leads, the leader included, is removed in turn.
    while let Some(slot) = membership.pop().filter(|&s| s != 0) {
        let id = member_id(&client, cluster.name(slot)).await;
        let (_, bin) = &etcdctls[slot % 2];
        remove_member(bin, cluster.client_url(0), id);
        blocking(|| cluster.retire(slot)).expect("retire");
        put_eventually(&client, "after-removal", cluster.name(slot)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.await.expect("writer");
    assert!(!acknowledged.is_empty(), "no write was acknowledged");

    let members = client.member_list(MemberListRequest::default()).await;
    assert_eq!(members.expect("member list").members.len(), 1);
    assert_eq!(missing(&client, &acknowledged).await, Vec::<usize>::new());
    let preloaded = dump(&client, "pre/").await;
    assert_eq!(preloaded.len(), ENTRIES_KEPT_AFTER_SNAPSHOT + 1500);
}

async fn a_removed_member_wiped_and_added_back_fresh_catches_up(server: ServerBinary) {
    let mut cluster = start_compacting(server, 3);
    let client = connect(&cluster.client_urls()[..2]).await;
    preload(&client, "pre/", ENTRIES_KEPT_AFTER_SNAPSHOT + 1500).await;

    let [(_, reference), (_, ours)] = etcdctls();
    let endpoints = cluster.client_urls()[..2].join(",");
    let id = member_id(&client, cluster.name(2)).await;
    remove_member(&ours, &endpoints, id);
    blocking(|| {
        cluster.retire(2)?;
        cluster.wipe(2)
    })
    .expect("retire and wipe m2");
    put_eventually(&client, "while-away", "1").await;

    let new_id = add_member(
        &reference,
        &endpoints,
        cluster.name(2),
        cluster.peer_url(2),
        false,
    );
    assert_ne!(new_id, id, "a fresh member gets a new id");
    blocking(|| {
        cluster.join(2, &[0, 1, 2])?;
        cluster.wait_healthy(2, WAIT)
    })
    .unwrap_or_else(|e| panic!("m2 joins again: {e}"));
    received_a_snapshot(&cluster, 2).await;
    put_eventually(&client, "after-return", "1").await;

    // m2 answers from its own state: it has everything, including what was written while it was away.
    let m2 = connect_to(&cluster, 2).await;
    let serializable = |key: &'static str| RangeRequest {
        key: key.into(),
        serializable: true,
        ..Default::default()
    };
    eventually_async(WAIT, "m2 has the latest write", || {
        let m2 = m2.clone();
        let request = serializable("after-return");
        async move { m2.range(request).await.is_ok_and(|r| r.count == 1) }
    })
    .await;
    let on_m2 = m2.range(serializable("while-away")).await.expect("range");
    assert_eq!(on_m2.count, 1);
    assert_eq!(
        dump(&m2, "pre/").await.len(),
        ENTRIES_KEPT_AFTER_SNAPSHOT + 1500
    );
    let members = client.member_list(MemberListRequest::default()).await;
    let members = members.expect("member list").members;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.id != id), "{members:?}");
}

async fn a_learner_joins_catches_up_and_is_promoted_to_voter(server: ServerBinary) {
    let mut cluster = start_compacting(server, 3);
    let client = connect(&cluster.client_urls()).await;
    preload(&client, "pre/", ENTRIES_KEPT_AFTER_SNAPSHOT + 1500).await;

    // Two rounds (etcd allows one learner at a time): each etcdctl adds one learner and the other
    // promotes it.
    let [(_, reference), (_, ours)] = etcdctls();
    let mut membership = vec![0, 1, 2];
    for (adder, promoter) in [(&reference, &ours), (&ours, &reference)] {
        let slot = blocking(|| cluster.add_member_slot()).expect("slot");
        let endpoints = cluster.endpoints();
        let id = add_member(
            adder,
            &endpoints,
            cluster.name(slot),
            cluster.peer_url(slot),
            true,
        );
        membership.push(slot);
        blocking(|| {
            cluster.join(slot, &membership)?;
            cluster.wait_healthy(slot, WAIT)
        })
        .unwrap_or_else(|e| panic!("learner joins: {e}"));
        received_a_snapshot(&cluster, slot).await;

        // etcd refuses to promote a learner that is not in sync yet; once it is, promote succeeds.
        // Only the leader knows, so the request goes to a follower, which must forward it.
        let leader = blocking(|| cluster.wait_for_leader(WAIT)).expect("leader");
        let follower = cluster.client_url((leader + 1) % 3).to_string();
        let out = blocking(|| {
            etcdctl_until_ok(
                promoter,
                &follower,
                &["member", "promote", &format!("{id:x}")],
            )
        });
        assert!(out.contains("promoted in cluster"), "{out}");
        // MemberList answers from the member's applied state, which may lag the promotion.
        let voters = membership.len();
        eventually_async(WAIT, "every member listed as a voter", || {
            let client = client.clone();
            async move {
                client
                    .member_list(MemberListRequest::default())
                    .await
                    .is_ok_and(|r| {
                        r.members.len() == voters && r.members.iter().all(|m| !m.is_learner)
                    })
            }
        })
        .await;
    }

    // Voters now: with two of the original three down, 3 of 5 voters remain and a write needs all
    // of them, both promoted members included.
    blocking(|| {
        cluster.kill(1)?;
        cluster.kill(2)
    })
    .expect("kill two members");
    let survivors = connect(&[cluster.client_url(0), cluster.client_url(3)]).await;
    put_eventually(&survivors, "quorum-with-the-promoted", "1").await;
}
