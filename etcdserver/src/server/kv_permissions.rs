//! etcd's permission checks on key-value and lease requests (`authApplierV3` in
//! `apply_auth.go`, and `checkTxnAuth`, which the read-only Txn path shares): applied to a
//! committed entry with the identity in its header, and to the reads served at the API.
//!
//! The rules follow the later 3.4/3.5 patch releases where they differ from 3.4.23: the ops
//! of nested txns are checked (3.4.42 / 3.5.28), and a put inside a txn gets the same lease and
//! `prev_kv` checks as a plain put (3.4.44 / 3.5.30).

use api::etcdserverpb as pb;
use api::etcdserverpb::request_op::Request;
use auth::{AuthError, AuthInfo, AuthStore};
use lease::Lessor;

/// One request's checks: the store, who asks, and the lessor that knows which keys each lease
/// holds (`None` for members without leases, as the test cores).
pub(crate) struct Permissions<'a> {
    pub auth: &'a AuthStore,
    pub info: &'a AuthInfo,
    pub lessor: Option<&'a Lessor>,
}

impl Permissions<'_> {
    /// Put: WRITE on the key; WRITE on every key already on the lease it attaches (else the
    /// user could attach a key to a lease whose revoke it is denied); READ with `prev_kv`.
    pub fn put(&self, r: &pb::PutRequest) -> Result<(), AuthError> {
        self.auth.is_put_permitted(self.info, &r.key)?;
        self.lease_keys_writable(r.lease)?;
        if r.prev_kv {
            self.auth.is_range_permitted(self.info, &r.key, &[])?;
        }
        Ok(())
    }

    /// DeleteRange: WRITE on the range; READ too with `prev_kv`.
    pub fn delete_range(&self, r: &pb::DeleteRangeRequest) -> Result<(), AuthError> {
        self.auth
            .is_delete_range_permitted(self.info, &r.key, &r.range_end)?;
        if r.prev_kv {
            self.auth
                .is_range_permitted(self.info, &r.key, &r.range_end)?;
        }
        Ok(())
    }

    /// Range: READ on the range.
    pub fn range(&self, r: &pb::RangeRequest) -> Result<(), AuthError> {
        self.auth
            .is_range_permitted(self.info, &r.key, &r.range_end)
    }

    /// Txn: READ on what each compare reads, then each op of both branches as on its own,
    /// nested txns included (etcd's `checkTxnAuth`).
    pub fn txn(&self, t: &pb::TxnRequest) -> Result<(), AuthError> {
        for c in &t.compare {
            self.auth
                .is_range_permitted(self.info, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(Request::RequestRange(r)) => self.range(r)?,
                Some(Request::RequestPut(r)) => self.put(r)?,
                Some(Request::RequestDeleteRange(r)) => {
                    // The txn path checks READ first (etcd's `checkTxnReqsPermission`).
                    if r.prev_kv {
                        self.auth
                            .is_range_permitted(self.info, &r.key, &r.range_end)?;
                    }
                    self.auth
                        .is_delete_range_permitted(self.info, &r.key, &r.range_end)?;
                }
                Some(Request::RequestTxn(nested)) => self.txn(nested)?,
                None => {}
            }
        }
        Ok(())
    }

    /// LeaseRevoke deletes the lease's keys: WRITE on each of them.
    pub fn lease_revoke(&self, id: i64) -> Result<(), AuthError> {
        self.lease_keys_writable(id)
    }

    /// WRITE on every key attached to `lease` (etcd's `checkLeasePuts`); an admin passes
    /// without the walk, as in etcd 3.5.
    fn lease_keys_writable(&self, lease: i64) -> Result<(), AuthError> {
        let Some(lessor) = self.lessor else {
            return Ok(());
        };
        if lease == 0 || !lessor.exists(lease) {
            return Ok(());
        }
        if self.auth.is_admin_permitted(self.info).is_ok() {
            return Ok(());
        }
        lessor.try_for_each_key(lease, |key| self.auth.is_put_permitted(self.info, key))
    }
}

/// The identity a proposal carries in its header (`RequestHeader{username, auth_revision}`),
/// moved out of it.
pub(crate) fn take_identity(header: &mut Option<pb::RequestHeader>) -> AuthInfo {
    match header {
        Some(h) => AuthInfo {
            username: std::mem::take(&mut h.username),
            revision: h.auth_revision,
        },
        None => AuthInfo::default(),
    }
}

#[cfg(test)]
mod tests;
