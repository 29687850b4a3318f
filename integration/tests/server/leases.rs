//! Leases on real server processes, against etcd 3.4 and our `etcd`: etcdctl's lease commands (both
//! etcdctls), expiry decided by the leader even when the leader is killed while the lease runs, and
//! a lease kept alive across a leader kill that does not expire.

use crate::common;

use std::time::Duration;

use client::api::etcdserverpb::{
    LeaseGrantRequest, LeaseTimeToLiveRequest, MemberListRequest, MoveLeaderRequest, PutRequest,
};
use common::*;
use integration::{server_tests, Cluster, ServerBinary};
use testkit::eventually_async;

server_tests! {
    fn etcdctl_lease_commands_answer_as_etcd;
    async fn a_key_with_a_2s_lease_is_gone_after_expiry_even_if_the_leader_is_killed;
    async fn a_lease_kept_alive_across_a_leader_kill_does_not_expire;
    async fn without_checkpoints_a_new_leader_gives_leases_their_full_ttl_again;
}

/// Debian's etcd 3.4 has `--experimental-enable-lease-checkpoint` but not the interval flag (its
/// interval is 5 minutes), so this runs on ours only.
#[test]
fn with_checkpoints_a_new_leader_keeps_the_remaining_ttl() {
    let server = integration::server_tests::etcd_rs_or_panic();
    integration::server_tests::block_on(ttl_after_leader_change(server, true));
}

/// A 30 s lease, 10 s of waiting, then leadership moves: the TTL the new leader reports. With
/// checkpoints (every second) it continues from about 20 s; without, etcd's default, the new
/// leader restarts every lease at its full TTL (plus an election timeout of grace).
async fn ttl_after_leader_change(server: ServerBinary, checkpoints: bool) {
    let args: &[&str] = if checkpoints {
        &[
            "--experimental-enable-lease-checkpoint",
            "--experimental-lease-checkpoint-interval",
            "1s",
        ]
    } else {
        &[]
    };
    let cluster = start_with(server, 3, args);
    let c = connect(&cluster.client_urls()).await;
    let lease = c
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant");
    tokio::time::sleep(Duration::from_secs(10)).await;

    let leader = blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
    let members = c
        .member_list(MemberListRequest::default())
        .await
        .expect("member list")
        .members;
    let next = cluster.name((leader + 1) % 3);
    let target_id = members
        .iter()
        .find(|m| m.name == next)
        .expect("the next member")
        .id;
    connect_to(&cluster, leader)
        .await
        .move_leader(MoveLeaderRequest { target_id })
        .await
        .expect("move leader");
    let ttl = c
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease.id,
            keys: false,
        })
        .await
        .expect("time to live")
        .ttl;
    if checkpoints {
        assert!(
            (1..=25).contains(&ttl),
            "checkpointed TTL after 10 s: {ttl}"
        );
    } else {
        assert!(
            ttl >= 27,
            "TTL after a leader change without checkpoints: {ttl}"
        );
    }
}

async fn without_checkpoints_a_new_leader_gives_leases_their_full_ttl_again(server: ServerBinary) {
    ttl_after_leader_change(server, false).await;
}

fn etcdctl(cluster: &Cluster, bin: &std::path::Path, args: &[&str]) -> integration::CmdOutput {
    cluster
        .cli(bin)
        .args(args)
        .run()
        .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
}

fn ok(cluster: &Cluster, bin: &std::path::Path, args: &[&str]) -> String {
    let out = etcdctl(cluster, bin, args);
    assert!(out.success(), "etcdctl {args:?}: {}", out.stderr);
    out.stdout
}

fn last_stderr_line(out: &integration::CmdOutput) -> String {
    out.stderr.lines().last().unwrap_or_default().to_string()
}

/// Grant, put with the lease, timetolive (with keys), list, keep-alive --once, revoke, then the
/// revoked lease's timetolive and a second revoke; each etcdctl's output with the lease id and the
/// remaining seconds masked.
fn etcdctl_lease_commands_answer_as_etcd(server: ServerBinary) {
    let cluster = start(server, 3);
    for (label, bin) in etcdctls() {
        let granted = ok(&cluster, &bin, &["lease", "grant", "60"]);
        let hex = granted
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("{label}: {granted}"))
            .to_string();
        let mask = |s: &str| s.replace(&hex, "ID");
        assert_eq!(
            mask(&granted),
            "lease ID granted with TTL(60s)\n",
            "{label}"
        );
        assert_eq!(
            ok(&cluster, &bin, &["put", "--lease", &hex, "leased", "v"]),
            "OK\n"
        );
        let ttl = mask(&ok(
            &cluster,
            &bin,
            &["lease", "timetolive", &hex, "--keys"],
        ));
        let remaining: i64 = ttl
            .split("remaining(")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{label}: {ttl}"));
        assert!((55..=60).contains(&remaining), "{label}: {ttl}");
        assert_eq!(
            ttl.replace(&format!("remaining({remaining}s)"), "remaining(N)"),
            "lease ID granted with TTL(60s), remaining(N), attached keys([leased])\n",
            "{label}"
        );
        let listed = ok(&cluster, &bin, &["lease", "list"]);
        assert_eq!(mask(&listed), "found 1 leases\nID\n", "{label}");
        assert_eq!(
            mask(&ok(
                &cluster,
                &bin,
                &["lease", "keep-alive", "--once", &hex]
            )),
            "lease ID keepalived with TTL(60)\n",
            "{label}"
        );
        assert_eq!(
            mask(&ok(&cluster, &bin, &["lease", "revoke", &hex])),
            "lease ID revoked\n",
            "{label}"
        );
        assert_eq!(ok(&cluster, &bin, &["get", "leased"]), "", "{label}");
        assert_eq!(
            mask(&ok(&cluster, &bin, &["lease", "timetolive", &hex])),
            "lease ID already expired\n",
            "{label}"
        );
        let again = etcdctl(&cluster, &bin, &["lease", "revoke", &hex]);
        assert!(!again.success(), "{label}");
        assert_eq!(
            last_stderr_line(&again),
            "Error: failed to revoke lease (etcdserver: requested lease not found)",
            "{label}"
        );
        let unknown = etcdctl(&cluster, &bin, &["put", "--lease", "1234abcd", "k", "v"]);
        assert_eq!(
            last_stderr_line(&unknown),
            "Error: etcdserver: requested lease not found",
            "{label}"
        );
    }
}

async fn put_leased(cluster: &Cluster, key: &str, ttl: i64) -> i64 {
    let c = connect(&cluster.client_urls()).await;
    let lease = c
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .expect("grant");
    assert_eq!(lease.ttl, ttl);
    c.put(PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease: lease.id,
        ..Default::default()
    })
    .await
    .expect("put with the lease");
    lease.id
}

/// A key on a 2 s lease; the leader is SIGKILLed right away: the new leader restarts the lease's
/// clock and revokes it, and the key is gone on every member, the killed one once back.
async fn a_key_with_a_2s_lease_is_gone_after_expiry_even_if_the_leader_is_killed(
    server: ServerBinary,
) {
    let mut cluster = start(server, 3);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    put_leased(&cluster, "ephemeral", 2).await;
    blocking(|| cluster.kill(leader)).expect("kill the leader");
    let survivor = (leader + 1) % 3;
    let c = connect_to(&cluster, survivor).await;
    eventually_async(WAIT, "the key to expire", || async {
        c.get("ephemeral").await.ok().flatten().is_none()
    })
    .await;
    blocking(|| {
        cluster.restart(leader)?;
        cluster.wait_healthy(leader, WAIT)
    })
    .expect("the killed member rejoins");
    let back = connect_to(&cluster, leader).await;
    eventually_async(WAIT, "the rejoined member to drop the key", || async {
        back.get("ephemeral").await.ok().flatten().is_none()
    })
    .await;
}

/// A 3 s lease kept alive by a client through a leader kill: after three TTLs the key is still
/// there and the lease answers TimeToLive with its granted TTL.
async fn a_lease_kept_alive_across_a_leader_kill_does_not_expire(server: ServerBinary) {
    let mut cluster = start(server, 3);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let id = put_leased(&cluster, "kept", 3).await;
    // The client talks to a follower first: it survives the kill without reconnecting.
    let c = connect(&urls_from(&cluster, (leader + 1) % 3)).await;
    let mut keep_alive = c.keep_alive(id);
    let renewing = tokio::spawn(async move {
        while let Some(r) = keep_alive.next().await {
            r.expect("renewal");
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(|| cluster.kill(leader)).expect("kill the leader");
    blocking(|| cluster.wait_for_leader(WAIT)).expect("a new leader");
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!renewing.is_finished(), "the keep-alive stream ended");
    assert!(
        c.get("kept").await.expect("get").is_some(),
        "the kept-alive lease's key is still there"
    );
    let ttl = c
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .expect("timetolive");
    assert_eq!((ttl.granted_ttl, &ttl.keys), (3, &vec![b"kept".to_vec()]));
    assert!(ttl.ttl > 0, "{ttl:?}");
    renewing.abort();
}
