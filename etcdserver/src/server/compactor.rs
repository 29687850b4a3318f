//! Auto-compaction (etcd's `server/etcdserver/api/v3compactor`), run by the leader only and
//! carried out through raft like a client's Compact.
//!
//! - periodic: every `min(retention, 1h) / 10` the current revision is sampled; after a first
//!   wait of `retention`, then every `min(retention, 1h)`, the store is compacted to the oldest
//!   sample of the window, the revision of `retention` ago (etcd's `v3compactor.Periodic`);
//! - revision: every 5 minutes the store is compacted to `current - retention`.

use std::collections::VecDeque;
use std::time::Duration;

use api::etcdserverpb::{CompactionRequest, InternalRaftRequest};
use tokio::time::Instant;

use crate::config::AutoCompaction;
use crate::core::ServerCore;
use crate::error::ServerError;

/// How often revision mode compacts (etcd: 5 minutes).
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

pub(crate) fn spawn<C: ServerCore + Clone>(server: C, mode: AutoCompaction) {
    tokio::spawn(async move {
        match mode {
            AutoCompaction::Periodic(retention) => periodic(server, retention).await,
            AutoCompaction::Revision(keep) => revision(server, keep).await,
        }
    });
}

async fn periodic<C: ServerCore>(server: C, retention: Duration) {
    let compact_every = retention.min(Duration::from_secs(3600));
    let sample_every = (compact_every / 10).max(Duration::from_millis(10));
    // One sample per interval over the retention, so the oldest is the revision `retention` ago.
    let window = (retention.as_nanos() / sample_every.as_nanos()) as usize + 1;
    let mut samples: VecDeque<i64> = VecDeque::with_capacity(window + 1);
    let mut last_success = Instant::now();
    // The first compaction waits a whole retention, later ones the compaction interval.
    let mut wait = retention;
    let mut ticker = tokio::time::interval(sample_every);
    loop {
        samples.push_back(server.store().current_revision());
        if samples.len() > window {
            samples.pop_front();
        }
        ticker.tick().await;
        // Followers keep sampling (revisions are the same on every member) but leave the
        // compaction to the leader, as etcd pauses its compactor.
        if !is_leader(&server) || last_success.elapsed() < wait {
            continue;
        }
        wait = compact_every;
        let rev = samples[0];
        if compact(&server, rev, "periodic").await {
            last_success = Instant::now();
        }
    }
}

async fn revision<C: ServerCore>(server: C, keep: i64) {
    let mut last = 0;
    let mut ticker = tokio::time::interval(REVISION_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !is_leader(&server) {
            continue;
        }
        let rev = server.store().current_revision() - keep;
        if rev <= 0 || rev == last {
            continue;
        }
        if compact(&server, rev, "revision").await {
            last = rev;
        }
    }
}

/// Proposes a compaction at `rev`; true when the store is compacted at or beyond it.
async fn compact<C: ServerCore>(server: &C, rev: i64, mode: &str) -> bool {
    if rev <= server.store().compact_revision() {
        return true;
    }
    let req = InternalRaftRequest {
        compaction: Some(CompactionRequest {
            revision: rev,
            physical: false,
        }),
        ..Default::default()
    };
    match server.propose(req).await {
        Ok(_) => {
            tracing::info!(revision = rev, mode, "auto compaction done");
            true
        }
        Err(ServerError::Compacted) => true,
        Err(e) => {
            tracing::warn!(revision = rev, mode, error = %e, "auto compaction failed");
            false
        }
    }
}

fn is_leader<C: ServerCore>(server: &C) -> bool {
    server.leader_id() == Some(server.member_id())
}
