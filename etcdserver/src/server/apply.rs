//! Applying committed key-value requests to the mvcc store (etcd's `applierV3backend` for
//! Range, Put, DeleteRange, Txn and Compaction).
//!
//! Every entry is applied through [`mvcc::Store::apply`], which records the raft index in the
//! same backend batch as the changes: an entry is applied exactly once, also across restarts.
//! The responses carry only the revision; the service fills the rest of the header.

use std::sync::Arc;

use api::etcdserverpb::{CompactionResponse, InternalRaftRequest, ResponseHeader};
use tokio::sync::oneshot;

use super::alarms::{AlarmStore, ApplierMode};
use super::kv_permissions::{take_identity, Permissions};
use super::lease_store::TxnLeases;
use super::quota::{self, Quota};
use crate::convert::{self, EmptyRequestOp};
use crate::core::Applied;
use crate::error::ServerError;
use lease::Lessor;

/// Why a committed request failed to apply; its caller gets etcd's error for it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store refused it (compacted or future revision, a missing key...).
    #[error(transparent)]
    Store(#[from] mvcc::Error),
    /// A put names a lease the lessor does not know.
    #[error("lease {0:x} not found")]
    LeaseNotFound(i64),
    #[error(transparent)]
    EmptyRequestOp(#[from] EmptyRequestOp),
    /// The lessor refused a grant (unknown, existing or too long a lease).
    #[error(transparent)]
    LeaseGrant(#[from] lease::LeaseError),
    /// The lessor refused a revoke, or deleting the lease's keys failed.
    #[error(transparent)]
    LeaseRevoke(#[from] lease::LeaseError<mvcc::Error>),
    #[error("cannot start the compaction thread: {0}")]
    CompactionThread(std::io::Error),
    /// The identity in the entry's header may not do this (nothing was applied).
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Over the backend quota, or refused while NOSPACE is in force (etcd's capped applier).
    #[error("database space exceeded")]
    NoSpace,
    /// Refused while CORRUPT is in force (etcd's corrupt applier).
    #[error("corrupt cluster")]
    Corrupt,
}

/// What the caller of a failed request is told.
impl From<ApplyError> for ServerError {
    fn from(e: ApplyError) -> ServerError {
        match e {
            ApplyError::Store(e) => e.into(),
            ApplyError::LeaseNotFound(_) => ServerError::LeaseNotFound,
            ApplyError::EmptyRequestOp(e) => e.into(),
            ApplyError::LeaseGrant(e) => e.into(),
            ApplyError::LeaseRevoke(e) => e.into(),
            e @ ApplyError::CompactionThread(_) => ServerError::Internal(e.to_string()),
            ApplyError::Auth(e) => ServerError::Auth(e),
            ApplyError::NoSpace => ServerError::NoSpace,
            ApplyError::Corrupt => ServerError::Corrupt,
        }
    }
}

type LeaseCheck = Box<dyn Fn(i64) -> bool + Send + Sync>;

/// Applies the key-value part of committed raft entries.
pub struct KvApplier {
    store: Arc<mvcc::Store>,
    lease_exists: LeaseCheck,
    lessor: Option<Arc<Lessor>>,
    /// Checks each request against its header's identity while auth is enabled.
    auth: Option<Arc<auth::AuthStore>>,
    /// The alarms in force and the quota (a member's applier; the test appliers have none).
    alarms: Option<(Arc<AlarmStore>, Arc<Quota>)>,
}

impl KvApplier {
    #[cfg(test)]
    /// An applier for a member without leases: a put naming a lease fails with etcd's
    /// `requested lease not found`.
    pub fn new(store: Arc<mvcc::Store>) -> Self {
        Self::with_lease_check(store, |_| false)
    }

    #[cfg(any(test, feature = "testing"))]
    /// `lease_exists` tells whether a put may attach the lease it names.
    pub fn with_lease_check(
        store: Arc<mvcc::Store>,
        lease_exists: impl Fn(i64) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            store,
            lease_exists: Box::new(lease_exists),
            lessor: None,
            auth: None,
            alarms: None,
        }
    }

    /// An applier that applies lease requests to `lessor` and keeps its key attachments.
    pub fn with_lessor(store: Arc<mvcc::Store>, lessor: Arc<Lessor>) -> Self {
        let check = lessor.clone();
        Self {
            store,
            lease_exists: Box::new(move |id| check.exists(id)),
            lessor: Some(lessor),
            auth: None,
            alarms: None,
        }
    }

    /// Requests are checked against `auth` (etcd's `authApplierV3`) whenever it is enabled.
    pub fn with_auth(mut self, auth: Arc<auth::AuthStore>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Writes check `quota` and obey the alarms in force (etcd's quota, capped and corrupt
    /// appliers).
    pub(crate) fn with_alarms(mut self, alarms: Arc<AlarmStore>, quota: Arc<Quota>) -> Self {
        self.alarms = Some((alarms, quota));
        self
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn store(&self) -> &Arc<mvcc::Store> {
        &self.store
    }

    /// Applies entry `index` (of `term`); `None` when the store had applied it already. A
    /// request with no key-value part is only recorded as applied (`Applied::Empty`).
    ///
    /// Entries must be applied in index order from one thread at a time: that is what makes
    /// "at or below the consistent index" mean "applied already".
    pub fn apply(
        &self,
        index: u64,
        term: u64,
        mut req: InternalRaftRequest,
    ) -> Option<Result<Applied, ApplyError>> {
        let mut over_quota = false;
        if let Some((alarms, quota)) = &self.alarms {
            let refusal = match alarms.mode() {
                ApplierMode::Normal => None,
                ApplierMode::Capped => refused_when_capped(&req),
                ApplierMode::Corrupt => refused_when_corrupt(&req),
            };
            if let Some(e) = refusal {
                return self.store.apply(index, term, |_| Err(e));
            }
            over_quota = !quota.admits(cost(&req));
        }
        if let Some(c) = &req.compaction {
            return self.compact(index, term, c.revision);
        }
        let lease_exists = &*self.lease_exists;
        let lessor = self.lessor.as_deref();
        // With auth off this is the only cost: one flag read.
        let auth = self.auth.as_deref().filter(|a| a.is_enabled());
        let info = match auth {
            Some(_) => take_identity(&mut req.header),
            None => auth::AuthInfo::default(),
        };
        let permissions = auth.map(|auth| Permissions {
            auth,
            info: &info,
            lessor,
        });
        let permissions = permissions.as_ref();
        let applied = self.store.apply(index, term, |txn| {
            if let Some(r) = req.put {
                if let Some(p) = permissions {
                    p.put(&r)?;
                }
                let put = convert::put_request(r);
                if !put.ignore_lease && put.lease != 0 && !lease_exists(put.lease) {
                    return Err(ApplyError::LeaseNotFound(put.lease));
                }
                // The value moves into the store; only the key is kept for the lessor.
                let attach = lessor
                    .filter(|_| !put.ignore_lease)
                    .map(|l| (l, put.key.clone(), put.lease));
                let resp = txn.put(put)?;
                if let Some((l, key, lease)) = attach {
                    l.attach(&key, lease);
                }
                return Ok(Applied::Put(convert::put_response(resp)));
            }
            if let Some(r) = req.delete_range {
                if let Some(p) = permissions {
                    p.delete_range(&r)?;
                }
                let del = convert::delete_range_request(r);
                let resp = txn.delete_range(&del)?;
                if let Some(l) = lessor {
                    detach(l, &mvcc::KeyRange::new(&del.key, &del.range_end));
                }
                return Ok(Applied::DeleteRange(convert::delete_range_response(resp)));
            }
            if let Some(r) = req.txn {
                if let Some(p) = permissions {
                    p.txn(&r)?;
                }
                let txn_req = convert::txn_request(r)?;
                // The values move into the store; the lessor's part (keys and leases) is kept.
                let leases = lessor.map(|l| (l, LeaseOps::of(&txn_req)));
                let resp = txn.txn(txn_req, lease_exists)?;
                if let Some((l, ops)) = leases {
                    ops.record(l, &resp);
                }
                return Ok(Applied::Txn(convert::txn_response(resp)));
            }
            if let Some(lessor) = lessor {
                if let Some(r) = &req.lease_grant {
                    let ttl = lessor.grant(&mut TxnLeases(txn), r.id, r.ttl)?;
                    return Ok(Applied::LeaseGrant { id: r.id, ttl });
                }
                if let Some(r) = &req.lease_revoke {
                    if let Some(p) = permissions {
                        p.lease_revoke(r.id)?;
                    }
                    lessor.revoke(&mut TxnLeases(txn), r.id)?;
                    return Ok(Applied::LeaseRevoke);
                }
                if let Some(r) = &req.lease_checkpoint {
                    for c in &r.checkpoints {
                        lessor.checkpoint(&mut TxnLeases(txn), c.id, c.remaining_ttl);
                    }
                    return Ok(Applied::Empty);
                }
            }
            if let Some(r) = req.range {
                if let Some(p) = permissions {
                    p.range(&r)?;
                }
                let resp = txn.range(&convert::range_request(r))?;
                return Ok(Applied::Range(convert::range_response(resp)));
            }
            Ok(Applied::Empty)
        });
        // etcd's quota applier: the write is applied, but its caller is told there was no room.
        match applied {
            Some(Ok(_)) if over_quota => Some(Err(ApplyError::NoSpace)),
            other => other,
        }
    }
}

/// etcd's cost of a request against the quota: its puts, or a lease grant.
fn cost(req: &InternalRaftRequest) -> u64 {
    if let Some(p) = &req.put {
        quota::put_cost(p)
    } else if let Some(t) = &req.txn {
        quota::txn_cost(t)
    } else if req.lease_grant.is_some() {
        quota::LEASE_GRANT_COST
    } else {
        0
    }
}

/// What etcd's capped applier refuses while NOSPACE is in force: puts, lease grants and txns
/// that would put (whichever branch runs).
fn refused_when_capped(req: &InternalRaftRequest) -> Option<ApplyError> {
    let refused = req.put.is_some()
        || req.lease_grant.is_some()
        || req.txn.as_ref().is_some_and(|t| quota::txn_cost(t) > 0);
    refused.then_some(ApplyError::NoSpace)
}

/// What etcd's corrupt applier refuses while CORRUPT is in force: every key-space change,
/// compaction and lease grant or revoke (reads are served without the applier).
fn refused_when_corrupt(req: &InternalRaftRequest) -> Option<ApplyError> {
    let refused = req.put.is_some()
        || req.delete_range.is_some()
        || req.txn.is_some()
        || req.range.is_some()
        || req.compaction.is_some()
        || req.lease_grant.is_some()
        || req.lease_revoke.is_some();
    refused.then_some(ApplyError::Corrupt)
}

/// What a txn's ops mean to the lessor, taken before the txn consumes them: the keys a put
/// attaches to a lease and the ranges a delete detaches, both branches, nested txns included.
struct LeaseOps {
    success: Vec<LeaseOp>,
    failure: Vec<LeaseOp>,
}

enum LeaseOp {
    Attach { key: Vec<u8>, lease: i64 },
    Detach(mvcc::KeyRange),
    Txn(LeaseOps),
    Nothing,
}

impl LeaseOps {
    fn of(req: &mvcc::TxnRequest) -> LeaseOps {
        let ops = |ops: &[mvcc::RequestOp]| ops.iter().map(LeaseOp::of).collect();
        LeaseOps {
            success: ops(&req.success),
            failure: ops(&req.failure),
        }
    }

    /// Keeps the lessor's attachments in step with the ops the txn executed (the branch
    /// taken, in order, nested txns included).
    fn record(&self, lessor: &Lessor, resp: &mvcc::TxnResponse) {
        let ops = if resp.succeeded {
            &self.success
        } else {
            &self.failure
        };
        for (op, out) in ops.iter().zip(&resp.responses) {
            match (op, out) {
                (LeaseOp::Attach { key, lease }, _) => lessor.attach(key, *lease),
                (LeaseOp::Detach(range), _) => detach(lessor, range),
                (LeaseOp::Txn(nested), mvcc::ResponseOp::Txn(nested_resp)) => {
                    nested.record(lessor, nested_resp)
                }
                _ => {}
            }
        }
    }
}

impl LeaseOp {
    fn of(op: &mvcc::RequestOp) -> LeaseOp {
        match op {
            mvcc::RequestOp::Put(p) if !p.ignore_lease => LeaseOp::Attach {
                key: p.key.clone(),
                lease: p.lease,
            },
            mvcc::RequestOp::DeleteRange(d) => {
                LeaseOp::Detach(mvcc::KeyRange::new(&d.key, &d.range_end))
            }
            mvcc::RequestOp::Txn(nested) => LeaseOp::Txn(LeaseOps::of(nested)),
            mvcc::RequestOp::Put(_) | mvcc::RequestOp::Range(_) => LeaseOp::Nothing,
        }
    }
}

/// A delete of `range` was applied: the lessor forgets its keys.
fn detach(lessor: &Lessor, range: &mvcc::KeyRange) {
    match range {
        mvcc::KeyRange::Single(key) => lessor.detach(key),
        mvcc::KeyRange::Span { start, end } => lessor.detach_range(start, end.as_deref()),
    }
}

impl KvApplier {
    /// Compacts the index at `rev` now and removes the old rows on a thread of their own, as
    /// etcd's scheduled compaction does; `done` fires once they are gone.
    fn compact(&self, index: u64, term: u64, rev: i64) -> Option<Result<Applied, ApplyError>> {
        // `Store::compact` takes the store's write lock, so it cannot run inside
        // `Store::apply`; the index is checked first and recorded right after. A crash in
        // between re-applies the entry, and compacting the same revision again is refused
        // with `Compacted`, which changes nothing.
        if index <= self.store.consistent_index().0 {
            return None;
        }
        let scheduled = self.store.compact(rev);
        self.store.apply(index, term, |_| ())?;
        let job = match scheduled {
            Ok(job) => job,
            Err(e) => return Some(Err(e.into())),
        };
        let (done_tx, done) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("mvcc-compaction".into())
            .spawn(move || match job.run() {
                Ok(()) => {
                    let _ = done_tx.send(());
                }
                Err(e) => tracing::error!(rev, error = %e, "compaction failed"),
            });
        if let Err(e) = spawned {
            tracing::error!(rev, error = %e, "cannot start the compaction thread");
            return Some(Err(ApplyError::CompactionThread(e)));
        }
        let response = CompactionResponse {
            header: Some(ResponseHeader {
                revision: self.store.current_revision(),
                ..Default::default()
            }),
        };
        Some(Ok(Applied::Compaction {
            response,
            done: Some(done),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb as pb;
    use backend::{Backend, BackendConfig};

    fn applier() -> KvApplier {
        let backend = Arc::new(
            Backend::in_memory(BackendConfig::default(), &crate::server::schema::TABLES).unwrap(),
        );
        KvApplier::new(Arc::new(
            mvcc::Store::open(backend, mvcc::StoreConfig::default()).unwrap(),
        ))
    }

    fn put(key: &str, value: &str) -> InternalRaftRequest {
        InternalRaftRequest {
            put: Some(pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn revision_of(applied: Applied) -> i64 {
        match applied {
            Applied::Put(r) => r.header.unwrap().revision,
            Applied::DeleteRange(r) => r.header.unwrap().revision,
            Applied::Txn(r) => r.header.unwrap().revision,
            Applied::Range(r) => r.header.unwrap().revision,
            Applied::Compaction { response, .. } => response.header.unwrap().revision,
            Applied::LeaseGrant { .. }
            | Applied::LeaseRevoke
            | Applied::Auth(_)
            | Applied::Alarms(_)
            | Applied::Empty => 0,
        }
    }

    #[test]
    fn each_entry_applies_once() {
        let a = applier();
        let first = a.apply(1, 1, put("k", "v")).unwrap().unwrap();
        assert_eq!(revision_of(first), 2);
        assert!(a.apply(1, 1, put("k", "v2")).is_none());
        let second = a.apply(2, 1, put("k", "v3")).unwrap().unwrap();
        assert_eq!(revision_of(second), 3);
        assert_eq!(a.store().consistent_index(), (2, 1));
    }

    #[test]
    fn put_with_unknown_lease_is_refused_and_known_one_accepted() {
        let mut req = put("k", "v");
        req.put.as_mut().unwrap().lease = 42;
        let a = applier();
        assert_eq!(
            ServerError::from(a.apply(1, 1, req.clone()).unwrap().unwrap_err()),
            ServerError::LeaseNotFound
        );
        assert_eq!(a.store().current_revision(), 1);
        let store = a.store().clone();
        let leased = KvApplier::with_lease_check(store, |id| id == 42);
        let applied = leased.apply(2, 1, req).unwrap().unwrap();
        assert_eq!(revision_of(applied), 2);
        let got = leased.store().range(&mvcc::RangeRequest::key("k")).unwrap();
        assert_eq!(got.kvs[0].lease, 42);
    }

    #[test]
    fn delete_of_nothing_keeps_the_revision() {
        let a = applier();
        a.apply(1, 1, put("k", "v")).unwrap().unwrap();
        let del = |key: &str| InternalRaftRequest {
            delete_range: Some(pb::DeleteRangeRequest {
                key: key.into(),
                prev_kv: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let Applied::DeleteRange(none) = a.apply(2, 1, del("x")).unwrap().unwrap() else {
            panic!("delete response expected");
        };
        assert_eq!((none.deleted, none.header.unwrap().revision), (0, 2));
        let Applied::DeleteRange(one) = a.apply(3, 1, del("k")).unwrap().unwrap() else {
            panic!("delete response expected");
        };
        assert_eq!((one.deleted, one.header.unwrap().revision), (1, 3));
        assert_eq!(one.prev_kvs[0].value, b"v");
    }

    #[test]
    fn alarms_switch_to_the_capped_and_corrupt_appliers() {
        use api::etcdserverpb::alarm_request::AlarmAction;
        use api::etcdserverpb::{AlarmRequest, AlarmType};
        let a = applier();
        let backend = a.store().backend().clone();
        let alarms = Arc::new(AlarmStore::load(&backend).unwrap());
        let quota = Arc::new(Quota::new(u64::MAX, backend.clone()));
        let a = KvApplier::new(a.store().clone()).with_alarms(alarms.clone(), quota);
        let raise = |kind: AlarmType, action: AlarmAction| {
            alarms.apply(
                &mut backend.batch_tx(),
                &AlarmRequest {
                    action: action as i32,
                    member_id: 1,
                    alarm: kind as i32,
                },
            );
        };
        let del = InternalRaftRequest {
            delete_range: Some(pb::DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        a.apply(1, 1, put("k", "v")).unwrap().unwrap();
        raise(AlarmType::Nospace, AlarmAction::Activate);
        let refused = a.apply(2, 1, put("k", "v2")).unwrap().unwrap_err();
        assert_eq!(ServerError::from(refused), ServerError::NoSpace);
        assert_eq!(a.store().consistent_index().0, 2);
        raise(AlarmType::Corrupt, AlarmAction::Activate);
        let refused = a.apply(3, 1, del.clone()).unwrap().unwrap_err();
        assert_eq!(ServerError::from(refused), ServerError::Corrupt);
        raise(AlarmType::Corrupt, AlarmAction::Deactivate);
        // Capped again: deletes pass.
        a.apply(4, 1, del).unwrap().unwrap();
        raise(AlarmType::Nospace, AlarmAction::Deactivate);
        a.apply(5, 1, put("k", "v3")).unwrap().unwrap();
        assert_eq!(a.store().current_revision(), 4);
    }

    #[test]
    fn over_quota_writes_are_applied_but_answered_nospace() {
        let a = applier();
        let backend = a.store().backend().clone();
        let alarms = Arc::new(AlarmStore::load(&backend).unwrap());
        // The in-memory backend is 0 bytes: a put costs at least 256.
        let quota = Arc::new(Quota::new(300, backend));
        let a = KvApplier::new(a.store().clone()).with_alarms(alarms, quota);
        a.apply(1, 1, put("k", "v")).unwrap().unwrap();
        let refused = a
            .apply(2, 1, put("k", &"v".repeat(64)))
            .unwrap()
            .unwrap_err();
        assert_eq!(ServerError::from(refused), ServerError::NoSpace);
        assert_eq!(a.store().current_revision(), 3);
    }

    #[test]
    fn compaction_schedules_removal_and_reports_errors() {
        let a = applier();
        for (i, v) in ["1", "2", "3"].iter().enumerate() {
            a.apply(i as u64 + 1, 1, put("k", v)).unwrap().unwrap();
        }
        let compact = |rev| InternalRaftRequest {
            compaction: Some(pb::CompactionRequest {
                revision: rev,
                physical: true,
            }),
            ..Default::default()
        };
        assert_eq!(
            ServerError::from(a.apply(4, 1, compact(9)).unwrap().unwrap_err()),
            ServerError::FutureRevision
        );
        let Applied::Compaction { response, done } = a.apply(5, 1, compact(3)).unwrap().unwrap()
        else {
            panic!("compaction response expected");
        };
        assert_eq!(response.header.unwrap().revision, 4);
        done.unwrap().blocking_recv().unwrap();
        assert_eq!(a.store().compact_revision(), 3);
        assert!(a.apply(5, 1, compact(3)).is_none());
        assert_eq!(
            ServerError::from(a.apply(6, 1, compact(3)).unwrap().unwrap_err()),
            ServerError::Compacted
        );
        assert_eq!(a.store().consistent_index().0, 6);
    }
}
