//! The backend quota (etcd's `storage/quota.go`, `--quota-backend-bytes`): whether a write may
//! grow the database, checked before proposing it and again when applying it.
//!
//! The size compared is the database file's (bbolt's `Size()`, ours: the redb file), which only
//! changes when the backend commits or defragments: it is cached and read again only when the
//! backend's commit count moved, so a request costs two atomic loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use api::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

/// What etcd charges a put on top of its key and value (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// What etcd charges a lease grant (`leaseOverhead`).
pub(crate) const LEASE_GRANT_COST: u64 = 64;

/// The quota of one member's backend.
pub(crate) struct Quota {
    /// `--quota-backend-bytes` as resolved (0 given means 2 GiB); `u64::MAX`: no quota.
    max: u64,
    backend: Arc<backend::Backend>,
    /// Backend commit count the cached size was read at (`u64::MAX`: never read).
    sized_at: AtomicU64,
    size: AtomicU64,
}

impl Quota {
    pub(crate) fn new(max: u64, backend: Arc<backend::Backend>) -> Quota {
        crate::metrics::metrics()
            .quota_backend_bytes
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        Quota {
            max,
            backend,
            sized_at: AtomicU64::new(u64::MAX),
            size: AtomicU64::new(0),
        }
    }

    /// etcd's `Available`: whether a write of `cost` fits (`size + cost < quota`, strictly); a
    /// request that writes nothing always does.
    pub(crate) fn admits(&self, cost: u64) -> bool {
        if cost == 0 || self.max == u64::MAX {
            return true;
        }
        self.size().saturating_add(cost) < self.max
    }

    /// The database size, read again only after a commit.
    fn size(&self) -> u64 {
        let commits = self.backend.commit_count();
        if self.sized_at.load(Ordering::Acquire) == commits {
            return self.size.load(Ordering::Relaxed);
        }
        match self.backend.size() {
            Ok(size) => {
                self.size.store(size, Ordering::Relaxed);
                self.sized_at.store(commits, Ordering::Release);
                size
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the backend size; using the last one");
                self.size.load(Ordering::Relaxed)
            }
        }
    }

    /// Forgets the cached size (after a defragmentation, which shrinks the file without a
    /// commit).
    pub(crate) fn refresh(&self) {
        self.sized_at.store(u64::MAX, Ordering::Release);
    }
}

/// etcd's cost of a put: its key, its value and a fixed overhead.
pub(crate) fn put_cost(put: &PutRequest) -> u64 {
    KV_OVERHEAD + put.key.len() as u64 + put.value.len() as u64
}

/// etcd's cost of a txn: the costlier branch, counting its puts only (nested txns and deletes
/// cost nothing).
pub(crate) fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::{DeleteRangeRequest, RangeRequest};

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    fn op(r: request_op::Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn costs_are_etcds() {
        assert_eq!(put_cost(&put("k", "vv")), 259);
        let txn = TxnRequest {
            success: vec![
                op(request_op::Request::RequestPut(put("a", ""))),
                op(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest::default(),
                )),
                op(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![op(request_op::Request::RequestPut(put("n", "n")))],
                    ..Default::default()
                })),
            ],
            failure: vec![
                op(request_op::Request::RequestPut(put("b", ""))),
                op(request_op::Request::RequestPut(put("c", ""))),
            ],
            ..Default::default()
        };
        assert_eq!(txn_cost(&txn), 2 * 257);
        let reads = TxnRequest {
            success: vec![op(request_op::Request::RequestRange(
                RangeRequest::default(),
            ))],
            ..Default::default()
        };
        assert_eq!(txn_cost(&reads), 0);
    }

    #[test]
    fn admits_strictly_below_the_quota_and_sees_commits() {
        let dir = tempfile::tempdir().unwrap();
        let be = Arc::new(
            backend::Backend::open(
                dir.path().join("db"),
                backend::BackendConfig::default(),
                &crate::server::schema::TABLES,
            )
            .unwrap(),
        );
        let size = be.size().unwrap();
        let quota = Quota::new(size + 100, be.clone());
        assert!(quota.admits(99));
        assert!(!quota.admits(100));
        assert!(quota.admits(0));
        let mut tx = be.batch_tx();
        tx.put(
            crate::server::schema::ALARM_TABLE,
            vec![1; 64],
            vec![7; 1 << 20],
        );
        drop(tx);
        be.force_commit().unwrap();
        assert!(be.size().unwrap() > size + 100);
        assert!(!quota.admits(1));
        assert!(Quota::new(u64::MAX, be).admits(u64::MAX - 1));
    }
}
