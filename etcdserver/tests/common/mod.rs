//! In-process members for the integration tests of this crate: each with its peer listener on
//! 127.0.0.1, stoppable and restartable on the same data dir.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use etcdserver::{EtcdServer, ServerParams};

/// A running member of an in-process cluster.
pub struct Node {
    pub server: EtcdServer,
    pub threads: Option<etcdserver::Threads>,
    pub serving: tokio::task::JoinHandle<()>,
}

/// Starts a member and serves its peer handlers on `listener`.
pub fn start_node(p: ServerParams, listener: tokio::net::TcpListener) -> Node {
    let (server, threads) = EtcdServer::start(p).unwrap();
    let router = etcdserver::peer_router(&server);
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Node {
        server,
        threads: Some(threads),
        serving,
    }
}

/// As [`start_node`], listening on `addr`.
pub async fn start_node_at(p: ServerParams, addr: SocketAddr) -> Node {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    start_node(p, listener)
}

impl Node {
    /// Stops raft, apply and the peer listener; the data dir can be started again.
    pub fn stop(&mut self) {
        if let Some(t) = self.threads.take() {
            self.server.stop(t);
        }
        self.serving.abort();
    }
}

/// The index of the running member that leads, waiting up to 5 s for one.
pub async fn leader_of(nodes: &[Node]) -> usize {
    let leader = testkit::poll_async(Duration::from_secs(5), || {
        let leading = nodes
            .iter()
            .position(|n| n.threads.is_some() && n.server.is_leader());
        std::future::ready(leading.ok_or(()))
    })
    .await;
    leader.unwrap_or_else(|()| panic!("no leader after 5 s"))
}

/// A single-member cluster named `default` in `dir`, with short raft timings (a 100 ms election
/// timeout, so the minimum lease TTL is 1 s) and a short log kept after snapshots.
pub fn params(dir: &std::path::Path) -> ServerParams {
    let peer = "http://127.0.0.1:2380".to_string();
    ServerParams {
        name: "default".into(),
        data_dir: dir.to_path_buf(),
        peer_urls: vec![peer.clone()],
        client_urls: vec!["http://127.0.0.1:2379".into()],
        initial_cluster: vec![("default".into(), vec![peer])],
        new_cluster: true,
        token: "etcd-cluster".into(),
        heartbeat: Duration::from_millis(10),
        election_timeout: Duration::from_millis(100),
        snapshot_count: 1000,
        snapshot_catch_up_entries: 5,
        corrupt_check: Default::default(),
        limits: etcdserver::Limits::default(),
        auto_compaction: None,
        lease_checkpoint_interval: Some(lease::DEFAULT_CHECKPOINT_INTERVAL),
        auth: Default::default(),
        quota_backend_bytes: etcdserver::config::DEFAULT_QUOTA_BACKEND_BYTES,
        downgrade_check_time: None,
        test_only_apply_delay: None,
    }
}

/// A put of `value` at `key` on `lease` (0: none), as the KV service proposes it.
pub fn put_request(key: &str, value: &str, lease: i64) -> api::etcdserverpb::InternalRaftRequest {
    api::etcdserverpb::InternalRaftRequest {
        put: Some(api::etcdserverpb::PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        }),
        ..Default::default()
    }
}
