//! Leases on in-process members: grant, attach, revoke in one revision, restart, renewals
//! forwarded from a follower, and expiry decided by the leader of a 3-member cluster.

use std::path::Path;
use std::time::Duration;

use api::etcdserverpb::{InternalRaftRequest, PutRequest};
use etcdserver::{Applied, EtcdServer, ServerCore, ServerError, ServerParams};

use crate::common;
use common::{leader_of, start_node, Node};
use testkit::eventually_async;

fn params(dir: &Path) -> ServerParams {
    common::params(dir)
}

fn put(key: &str, lease: i64) -> InternalRaftRequest {
    common::put_request(key, "v", lease)
}

fn value(server: &EtcdServer, key: &str) -> Option<mvcc::KeyValue> {
    server
        .store()
        .range(&mvcc::RangeRequest::key(key.as_bytes().to_vec()))
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_attach_revoke_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, threads) = EtcdServer::start(params(dir.path())).unwrap();
    eventually_async(Duration::from_secs(10), "leadership", || async {
        server.is_leader()
    })
    .await;

    // Server-chosen id, minimum TTL raised; client-chosen id; duplicate; too large.
    let (chosen, ttl) = server.lease_grant(0, 0).await.unwrap();
    assert!(chosen > 0);
    assert_eq!(ttl, 1);
    assert_eq!(server.lease_grant(42, 3600).await.unwrap(), (42, 3600));
    assert_eq!(
        server.lease_grant(42, 10).await.unwrap_err(),
        ServerError::LeaseExists
    );
    assert_eq!(
        server.lease_grant(43, 9_000_000_001).await.unwrap_err(),
        ServerError::LeaseTtlTooLarge
    );
    assert_eq!(
        server.propose(put("x", 777)).await.unwrap_err(),
        ServerError::LeaseNotFound
    );
    let mut ids = vec![chosen, 42];
    ids.sort();
    assert_eq!(server.lease_ids(), ids);

    for k in ["a", "b", "c"] {
        server.propose(put(k, 42)).await.unwrap();
    }
    // "c" moves off the lease; "b" is deleted.
    server.propose(put("c", 0)).await.unwrap();
    let del = InternalRaftRequest {
        delete_range: Some(api::etcdserverpb::DeleteRangeRequest {
            key: b"b".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    server.propose(del).await.unwrap();
    server.propose(put("d", 42)).await.unwrap();
    let status = server.lease_time_to_live(42, true).await.unwrap();
    assert_eq!(status.granted_ttl, 3600);
    assert!(status.ttl > 3500 && status.ttl <= 3600, "{status:?}");
    assert_eq!(status.keys, vec![b"a".to_vec(), b"d".to_vec()]);

    // Restart: leases and attachments come back from the backend.
    server.stop(threads);
    drop(server);
    let (server, threads) = EtcdServer::start(params(dir.path())).unwrap();
    eventually_async(Duration::from_secs(10), "leadership", || async {
        server.is_leader()
    })
    .await;
    let status = server.lease_time_to_live(42, true).await.unwrap();
    assert_eq!(status.keys, vec![b"a".to_vec(), b"d".to_vec()]);

    let before = server.store().current_revision();
    match server.lease_revoke(42).await {
        Ok(()) => {}
        other => panic!("revoke: {other:?}"),
    }
    assert_eq!(server.store().current_revision(), before + 1);
    assert!(value(&server, "a").is_none() && value(&server, "d").is_none());
    assert_eq!(value(&server, "c").unwrap().lease, 0);
    assert_eq!(
        server.lease_revoke(42).await.unwrap_err(),
        ServerError::LeaseNotFound
    );
    assert_eq!(
        server.lease_time_to_live(42, false).await.unwrap_err(),
        ServerError::LeaseNotFound
    );
    assert_eq!(
        server.lease_renew(42).await.unwrap_err(),
        ServerError::LeaseNotFound
    );
    server.stop(threads);
}

async fn start_cluster(dirs: &[tempfile::TempDir]) -> Vec<Node> {
    start_cluster_with(dirs, 1000).await.0
}

/// Starts the members and returns them with each one's parameters and peer address.
async fn start_cluster_with(
    dirs: &[tempfile::TempDir],
    snapshot_count: u64,
) -> (Vec<Node>, Vec<(ServerParams, std::net::SocketAddr)>) {
    let mut listeners = Vec::new();
    for _ in dirs {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let initial: Vec<(String, Vec<String>)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("m{i}"),
                vec![format!("http://{}", l.local_addr().unwrap())],
            )
        })
        .collect();
    let mut nodes = Vec::new();
    let mut started = Vec::new();
    for (i, (d, l)) in dirs.iter().zip(listeners).enumerate() {
        let p = ServerParams {
            name: format!("m{i}"),
            peer_urls: initial[i].1.clone(),
            initial_cluster: initial.clone(),
            snapshot_count,
            ..params(d.path())
        };
        started.push((p.clone(), l.local_addr().unwrap()));
        nodes.push(start_node(p, l));
    }
    (nodes, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_renew_through_the_leader_and_expire_by_it() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = start_cluster(&dirs).await;
    let leader = leader_of(&nodes).await;
    let follower = (leader + 1) % 3;
    let f = nodes[follower].server.clone();

    // Granted through a follower; a key attached.
    let (kept, _) = f.lease_grant(0, 1).await.unwrap();
    let (expiring, _) = f.lease_grant(0, 1).await.unwrap();
    f.propose(put("kept", kept)).await.unwrap();
    f.propose(put("expiring", expiring)).await.unwrap();

    // Renewals sent to the follower reach the leader: `kept` outlives three TTLs.
    for _ in 0..12 {
        assert_eq!(f.lease_renew(kept).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = f.lease_time_to_live(kept, true).await.unwrap();
    assert_eq!(
        (status.granted_ttl, status.keys),
        (1, vec![b"kept".to_vec()])
    );
    for n in &nodes {
        let server = n.server.clone();
        eventually_async(
            Duration::from_secs(10),
            "the expired lease's key to go on every member",
            move || std::future::ready(value(&server, "expiring").is_none()),
        )
        .await;
        assert!(value(&n.server, "kept").is_some());
        assert!(!n.server.lease_ids().contains(&expiring));
    }
    assert_eq!(
        f.lease_renew(expiring).await,
        Err(ServerError::LeaseNotFound)
    );

    // The leader goes: the new leader restarts the clocks, then expires `kept` too.
    let old = leader_of(&nodes).await;
    nodes[old].stop();
    let new_leader = leader_of(&nodes).await;
    assert_ne!(new_leader, old);
    let server = nodes[new_leader].server.clone();
    eventually_async(
        Duration::from_secs(10),
        "the new leader to expire the lease",
        move || std::future::ready(value(&server, "kept").is_none()),
    )
    .await;
    for n in &mut nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_in_a_txn_attaches_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (server, threads) = EtcdServer::start(params(dir.path())).unwrap();
    eventually_async(Duration::from_secs(10), "leadership", || async {
        server.is_leader()
    })
    .await;
    let (id, _) = server.lease_grant(0, 60).await.unwrap();
    let txn = InternalRaftRequest {
        txn: Some(api::etcdserverpb::TxnRequest {
            success: vec![api::etcdserverpb::RequestOp {
                request: Some(api::etcdserverpb::request_op::Request::RequestPut(
                    PutRequest {
                        key: b"t".to_vec(),
                        lease: id,
                        ..Default::default()
                    },
                )),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    match server.propose(txn).await {
        Ok(Applied::Txn(_)) => {}
        other => panic!("txn: {other:?}"),
    }
    let status = server.lease_time_to_live(id, true).await.unwrap();
    assert_eq!(status.keys, vec![b"t".to_vec()]);
    server.lease_revoke(id).await.unwrap();
    assert!(value(&server, "t").is_none());
    server.stop(threads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restored_from_a_snapshot_knows_the_leases_and_their_keys() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut nodes, started) = start_cluster_with(&dirs, 20).await;
    let leader = leader_of(&nodes).await;
    let lagging = (leader + 1) % 3;
    nodes[lagging].stop();
    // Its backend is released once every handle on the member is gone.
    drop(nodes.remove(lagging));
    let l = nodes[if leader > lagging { leader - 1 } else { leader }]
        .server
        .clone();
    let (id, _) = l.lease_grant(0, 3600).await.unwrap();
    l.propose(put("leased", id)).await.unwrap();
    // Past the snapshot count and the entries kept for catching up: the lagging member gets a
    // database snapshot.
    for i in 0..60 {
        l.propose(put(&format!("k{i}"), 0)).await.unwrap();
    }
    let (p, addr) = started[lagging].clone();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    nodes.insert(lagging, start_node(p, listener));
    let lagger = nodes[lagging].server.clone();
    // The applied index moves once the snapshot's leases are loaded too.
    let target = l.applied_index();
    let caught_up = lagger.clone();
    eventually_async(
        Duration::from_secs(10),
        "the lagging member to catch up",
        move || std::future::ready(caught_up.applied_index() >= target),
    )
    .await;
    let received_db = std::fs::read_dir(dirs[lagging].path().join("member/snap"))
        .unwrap()
        .any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snap.db")
        });
    assert!(received_db, "the member caught up from a database snapshot");
    assert_eq!(lagger.lease_ids(), vec![id]);
    // Its lessor knows the attached key: the revoke it applies deletes it there too.
    // Proposed through the lagging member, the revoke returns once that member applied it.
    lagger.lease_revoke(id).await.unwrap();
    assert!(value(&lagger, "leased").is_none());
    assert!(lagger.lease_ids().is_empty());
    for n in &mut nodes {
        n.stop();
    }
}
