//! Auto-compaction (etcd's `server/etcdserver/api/v3compactor`), run by the leader only and
//! carried out through raft like a client's Compact.
//!
//! - periodic: every `min(retention, 1h) / 10` the current revision is sampled; every
//!   `min(retention, 1h)` the store is compacted to the newest sample at least `retention` old,
//!   so history of the last `retention` is kept;
//! - revision: every 5 minutes the store is compacted to `current - retention`.

use std::collections::VecDeque;
use std::time::Duration;

use api::etcdserverpb::{CompactionRequest, InternalRaftRequest};
use tokio::time::Instant;

use crate::config::AutoCompaction;
use crate::core::ServerCore;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// How often revision mode compacts (etcd: 5 minutes).
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

pub fn spawn(server: EtcdServer, mode: AutoCompaction) {
    tokio::spawn(async move {
        match mode {
            AutoCompaction::Periodic(retention) => periodic(server, retention).await,
            AutoCompaction::Revision(keep) => revision(server, keep).await,
        }
    });
}

async fn periodic(server: EtcdServer, retention: Duration) {
    let compact_every = retention.min(Duration::from_secs(3600));
    let sample_every = (compact_every / 10).max(Duration::from_millis(10));
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_compaction = Instant::now();
    let mut ticker = tokio::time::interval(sample_every);
    loop {
        ticker.tick().await;
        if !server.is_leader() {
            // A new leader starts over, as etcd's compactor is paused and resumed.
            samples.clear();
            last_compaction = Instant::now();
            continue;
        }
        let now = Instant::now();
        samples.push_back((now, server.store().current_revision()));
        if now.duration_since(last_compaction) < compact_every {
            continue;
        }
        let target = samples
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= retention)
            .map(|(_, rev)| *rev);
        let Some(rev) = target else { continue };
        while samples.front().is_some_and(|(_, r)| *r < rev) {
            samples.pop_front();
        }
        last_compaction = now;
        compact(&server, rev, "periodic").await;
    }
}

async fn revision(server: EtcdServer, keep: i64) {
    let mut last = 0;
    let mut ticker = tokio::time::interval(REVISION_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !server.is_leader() {
            continue;
        }
        let rev = server.store().current_revision() - keep;
        if rev <= 0 || rev == last {
            continue;
        }
        last = rev;
        compact(&server, rev, "revision").await;
    }
}

async fn compact(server: &EtcdServer, rev: i64, mode: &str) {
    if rev <= server.store().compact_revision() {
        return;
    }
    let req = InternalRaftRequest {
        compaction: Some(CompactionRequest {
            revision: rev,
            physical: false,
        }),
        ..Default::default()
    };
    match server.propose(req).await {
        Ok(_) => tracing::info!(revision = rev, mode, "auto compaction done"),
        Err(ServerError::Compacted) => {}
        Err(e) => tracing::warn!(revision = rev, mode, error = %e, "auto compaction failed"),
    }
}
