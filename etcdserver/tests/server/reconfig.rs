//! Runtime membership in-process: a member grows into a cluster through conf changes (learner,
//! promote, voter), new members join with `--initial-cluster-state existing`, and a removed
//! leader hands over and stops for good.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use api::etcdserverpb::InternalRaftRequest;
use etcdserver::{Applied, EtcdServer, ServerCore, ServerError, ServerParams};

use crate::common;
use common::start_node_at;
use testkit::eventually_async;

fn params(dir: &Path, name: &str, addr: SocketAddr) -> ServerParams {
    let peer = format!("http://{addr}");
    ServerParams {
        name: name.into(),
        peer_urls: vec![peer.clone()],
        client_urls: vec![format!("http://127.0.0.1:{}", addr.port() + 1)],
        initial_cluster: vec![(name.into(), vec![peer])],
        snapshot_count: 50,
        ..common::params(dir)
    }
}

fn put(key: &str, value: &str) -> InternalRaftRequest {
    common::put_request(key, value, 0)
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Retries a membership change that the strict checks refuse until peers count as active.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServerError>>,
{
    let refused = testkit::poll_async(Duration::from_secs(10), || {
        let change = f();
        async move {
            match change.await {
                Ok(v) => Ok(v),
                Err(e @ (ServerError::UnhealthyCluster | ServerError::LearnerNotReady)) => Err(e),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await;
    refused.unwrap_or_else(|_| panic!("{what}: still refused after 10 s"))
}

fn joiner(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    known: &[(String, SocketAddr)],
) -> ServerParams {
    let mut initial: Vec<(String, Vec<String>)> = known
        .iter()
        .map(|(n, a)| (n.clone(), vec![format!("http://{a}")]))
        .collect();
    initial.push((name.into(), vec![format!("http://{addr}")]));
    ServerParams {
        initial_cluster: initial,
        new_cluster: false,
        ..params(dir, name, addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_with_a_learner_and_a_voter_then_remove_the_leader() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = vec![start_node_at(params(dirs[0].path(), "m0", addrs[0]), addrs[0]).await];
    let first = nodes[0].server.clone();
    eventually_async(
        Duration::from_secs(5),
        "single member leads and publishes",
        || async {
            first.is_leader()
                && first
                    .membership()
                    .members
                    .values()
                    .all(|m| !m.name.is_empty())
        },
    )
    .await;
    for i in 0..60 {
        assert!(matches!(
            first.propose(put(&format!("k{i}"), "v")).await,
            Ok(Applied::Put(_))
        ));
    }

    // A learner joins and catches up (by snapshot: more than snapshot-count entries exist).
    let (learner, members) = first
        .add_member(vec![format!("http://{}", addrs[1])], true)
        .await
        .unwrap();
    assert!(learner.is_learner);
    assert_eq!(members.len(), 2);
    assert_eq!(
        first
            .add_member(vec![format!("http://{}", addrs[2])], true)
            .await
            .unwrap_err(),
        ServerError::TooManyLearners
    );
    assert_eq!(
        first
            .add_member(vec![format!("http://{}", addrs[0])], false)
            .await
            .unwrap_err(),
        ServerError::PeerUrlExist
    );
    let known = vec![("m0".to_string(), addrs[0])];
    nodes.push(start_node_at(joiner(dirs[1].path(), "m1", addrs[1], &known), addrs[1]).await);
    let second = nodes[1].server.clone();
    assert_eq!(second.member_id(), learner.id);
    assert_eq!(second.cluster_id(), first.cluster_id());
    eventually_async(
        Duration::from_secs(10),
        "the learner catches up",
        || async {
            second.store().current_revision() == first.store().current_revision()
                && second.membership() == first.membership()
        },
    )
    .await;
    assert!(second.is_learner());
    // A learner's linearizable reads are refused at the gRPC edge (learner_guard), but the server
    // underneath can pass a read barrier: raft forwards the learner's ReadIndex to the leader.
    second
        .read_barrier()
        .await
        .expect("a learner's read barrier");
    assert_eq!(
        second.promote_member(first.member_id()).await.unwrap_err(),
        ServerError::MemberNotLearner
    );
    assert_eq!(
        second.promote_member(12345).await.unwrap_err(),
        ServerError::MemberNotFound
    );
    // Sent to a member that is not the leader (the learner itself): forwarded to the leader.
    let members = retry("promote", || second.promote_member(learner.id)).await;
    assert!(members.iter().all(|m| !m.is_learner));
    eventually_async(
        Duration::from_secs(5),
        "the promoted member knows it votes",
        || async { !second.is_learner() },
    )
    .await;

    // A voter joins a two-member cluster once both members are started (have published
    // their names) and active: etcd's strict reconfiguration check.
    eventually_async(
        Duration::from_secs(5),
        "the promoted member publishes its name",
        || async {
            first
                .membership()
                .members
                .values()
                .all(|m| !m.name.is_empty())
        },
    )
    .await;
    let url2 = vec![format!("http://{}", addrs[2])];
    let (third_member, _) = retry("add voter", || first.add_member(url2.clone(), false)).await;
    let known = vec![("m0".to_string(), addrs[0]), ("m1".to_string(), addrs[1])];
    nodes.push(start_node_at(joiner(dirs[2].path(), "m2", addrs[2], &known), addrs[2]).await);
    let third = nodes[2].server.clone();
    assert_eq!(third.member_id(), third_member.id);
    match first.propose(put("via", "m0")).await {
        Ok(Applied::Put(_)) => {}
        other => panic!("put after the third member joined: {other:?}"),
    }
    eventually_async(
        Duration::from_secs(10),
        "the third member catches up",
        || async { third.store().current_revision() == first.store().current_revision() },
    )
    .await;
    for n in &nodes {
        n.server.read_barrier().await.unwrap();
        let resp = n
            .server
            .store()
            .range(&mvcc::RangeRequest::key(b"via".to_vec()))
            .unwrap();
        assert_eq!(resp.kvs.len(), 1);
    }
    eventually_async(
        Duration::from_secs(10),
        "the third member publishes its name",
        || async {
            first
                .membership()
                .members
                .values()
                .all(|m| !m.name.is_empty())
        },
    )
    .await;
    let updated = first
        .update_member(third_member.id, url2.clone())
        .await
        .unwrap();
    assert_eq!(updated.len(), 3);

    // Removing the leader: leadership moves first, the cluster goes on with two members, and
    // the removed member stops and cannot come back.
    let leader = (0..3)
        .find(|i| nodes[*i].server.is_leader())
        .expect("a leader");
    let leader_id = nodes[leader].server.member_id();
    let members = retry("remove the leader", || {
        nodes[leader].server.remove_member(leader_id)
    })
    .await;
    assert_eq!(members.len(), 2);
    tokio::time::timeout(Duration::from_secs(5), nodes[leader].server.stopped())
        .await
        .expect("the removed member stops");
    let others: Vec<EtcdServer> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| nodes[i].server.clone())
        .collect();
    eventually_async(
        Duration::from_secs(5),
        "a remaining member leads",
        || async { others.iter().any(|s| s.is_leader()) },
    )
    .await;
    assert!(matches!(
        others[0].propose(put("after", "removal")).await,
        Ok(Applied::Put(_))
    ));
    // Every handle on the removed member goes, so that it releases its data dir.
    drop((first, second, third));
    let mut gone = nodes.remove(leader);
    gone.stop();
    drop(gone);
    // The aborted peer listener task holds the member until the runtime drops it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restarted, it is refused: at start if it applied its own removal, else by the others'
    // peer ports (410), which stop it.
    match EtcdServer::start(nodes_params(&dirs, &addrs, leader)) {
        Err(e) => assert!(e.to_string().contains("permanently removed"), "{e}"),
        Ok((server, threads)) => {
            let listener = tokio::net::TcpListener::bind(addrs[leader]).await.unwrap();
            let router = etcdserver::peer_router(&server);
            let serving = tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            tokio::time::timeout(Duration::from_secs(5), server.stopped())
                .await
                .expect("the others stop a removed member that comes back");
            server.stop(threads);
            serving.abort();
        }
    }
    for n in &mut nodes {
        n.stop();
    }
    drop(others);
}

fn nodes_params(dirs: &[tempfile::TempDir], addrs: &[SocketAddr], i: usize) -> ServerParams {
    params(dirs[i].path(), &format!("m{i}"), addrs[i])
}
