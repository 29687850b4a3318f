//! One member in-process: raft, WAL, snapshots and apply, driven through the server core the
//! way the gRPC services drive it. Multi-member behaviour is tested with real processes in
//! the `integration` crate.

use std::path::Path;
use std::time::Duration;

use api::etcdserverpb::{InternalRaftRequest, RangeRequest};
use etcdserver::{Applied, EtcdServer, Limits, ServerCore, ServerError, ServerParams};

use crate::common;
use common::{leader_of, start_node};
use testkit::eventually_async;

fn params(dir: &Path, snapshot_count: u64) -> ServerParams {
    ServerParams {
        snapshot_count,
        ..common::params(dir)
    }
}

fn put(key: &str, value: &str) -> InternalRaftRequest {
    common::put_request(key, value, 0)
}

async fn get(server: &EtcdServer, key: &str) -> Option<Vec<u8>> {
    server.read_barrier().await.expect("read barrier");
    let resp = server
        .store()
        .range(&mvcc::RangeRequest::key(key.as_bytes().to_vec()))
        .expect("range");
    resp.kvs.into_iter().next().map(|kv| kv.value)
}

async fn wait_leader(server: &EtcdServer) {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    eventually_async(Duration::from_secs(5), "a leader", || async {
        server.is_leader()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_restart_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (server, threads) = EtcdServer::start(params(dir.path(), 20)).unwrap();
    wait_leader(&server).await;
    assert_eq!(format!("{:x}", server.member_id()), "b71f75320dc06a6c");
    for i in 0..100 {
        match server
            .propose(put(&format!("k{i}"), &format!("v{i}")))
            .await
        {
            Ok(Applied::Put(resp)) => {
                assert_eq!(resp.header.unwrap().revision, i + 2);
            }
            other => panic!("put {i}: {other:?}"),
        }
    }
    assert_eq!(get(&server, "k42").await.as_deref(), Some(&b"v42"[..]));
    let snaps = std::fs::read_dir(dir.path().join("member/snap"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snap")
        })
        .count();
    assert!(
        snaps >= 1,
        "100 entries with --snapshot-count 20 leave a snapshot"
    );
    let members = server.membership();
    server.stop(threads);
    drop(server);

    let (server, threads) = EtcdServer::start(params(dir.path(), 20)).unwrap();
    wait_leader(&server).await;
    assert_eq!(server.membership(), members);
    assert_eq!(server.store().current_revision(), 101);
    for i in [0, 57, 99] {
        assert_eq!(
            get(&server, &format!("k{i}")).await,
            Some(format!("v{i}").into_bytes())
        );
    }
    match server.propose(put("after", "restart")).await {
        Ok(Applied::Put(resp)) => assert_eq!(resp.header.unwrap().revision, 102),
        other => panic!("put after restart: {other:?}"),
    }
    server.stop(threads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_proposal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, threads) = EtcdServer::start(params(dir.path(), 1000)).unwrap();
    wait_leader(&server).await;
    let big = "x".repeat(Limits::default().max_request_bytes + 1);
    match server.propose(put("big", &big)).await {
        Err(ServerError::RequestTooLarge) => {}
        other => panic!("expected request too large, got {other:?}"),
    }
    let range = InternalRaftRequest {
        range: Some(RangeRequest {
            key: b"big".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        server.propose(range).await.is_ok(),
        "the member keeps serving"
    );
    server.stop(threads);
}

async fn cluster_params(
    dirs: &[tempfile::TempDir],
) -> (Vec<ServerParams>, Vec<std::net::SocketAddr>) {
    let mut addrs = Vec::new();
    for _ in dirs {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap());
    }
    let initial: Vec<(String, Vec<String>)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("m{i}"), vec![format!("http://{a}")]))
        .collect();
    let params = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| ServerParams {
            name: format!("m{i}"),
            peer_urls: initial[i].1.clone(),
            initial_cluster: initial.clone(),
            ..params(d.path(), 50)
        })
        .collect();
    (params, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_and_a_lagging_one_catches_up_by_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (params, addrs) = cluster_params(&dirs).await;
    let mut nodes = Vec::new();
    for (p, a) in params.iter().zip(&addrs) {
        let l = tokio::net::TcpListener::bind(a).await.unwrap();
        nodes.push(start_node(p.clone(), l));
    }
    let leader = leader_of(&nodes).await;
    let follower = (leader + 1) % 3;
    // A write sent to a follower reaches the leader.
    match nodes[follower].server.propose(put("via", "follower")).await {
        Ok(Applied::Put(_)) => {}
        other => panic!("put via follower: {other:?}"),
    }
    for n in &nodes {
        assert_eq!(
            get(&n.server, "via").await.as_deref(),
            Some(&b"follower"[..])
        );
    }

    let lagging = (leader + 2) % 3;
    let leader_server = nodes[leader].server.clone();
    nodes[lagging].stop();
    // Its server handle is replaced below; the backend is released once the threads are gone.
    let stopped = nodes.remove(lagging);
    drop(stopped);
    // More than snapshot-count (50) plus the entries kept for catching up (5).
    for i in 0..120 {
        let node = &leader_server;
        match node.propose(put(&format!("k{i}"), "v")).await {
            Ok(Applied::Put(_)) => {}
            other => panic!("put {i}: {other:?}"),
        }
    }
    let l = tokio::net::TcpListener::bind(addrs[lagging]).await.unwrap();
    let restarted = start_node(params[lagging].clone(), l);
    nodes.insert(lagging, restarted);
    let lagger = &nodes[lagging].server;
    eventually_async(
        Duration::from_secs(5),
        "the lagging member to catch up",
        || async { lagger.store().current_revision() == leader_server.store().current_revision() },
    )
    .await;
    assert_eq!(get(lagger, "k119").await.as_deref(), Some(&b"v"[..]));
    assert_eq!(
        lagger.store().current_revision(),
        leader_server.store().current_revision()
    );
    let received_db = std::fs::read_dir(dirs[lagging].path().join("member/snap"))
        .unwrap()
        .any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snap.db")
        });
    assert!(
        received_db,
        "the restarted member caught up from a database snapshot"
    );
    for n in &mut nodes {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, threads) = EtcdServer::start(params(dir.path(), 1000)).unwrap();
    wait_leader(&server).await;
    server.stop(threads);
    drop(server);
    let other = ServerParams {
        token: "another-cluster".into(),
        ..params(dir.path(), 1000)
    };
    let err = match EtcdServer::start(other) {
        Ok(_) => panic!("a data dir of another cluster must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("belongs to member b71f75320dc06a6c of cluster"),
        "{err}"
    );
    // The member's own flags still start it, with its data.
    let (server, threads) = EtcdServer::start(params(dir.path(), 1000)).unwrap();
    wait_leader(&server).await;
    server.stop(threads);
}
