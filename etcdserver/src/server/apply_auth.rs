//! Applying committed auth requests (etcd's `applierV3backend` auth methods behind its
//! `authApplierV3`): user and role management, auth enable/disable, token assignment and the
//! auth status, each in the backend batch of its entry so the auth state commits together with
//! the consistent index. The admin check is made here, at apply, against the identity in the
//! entry's header, as etcd makes it: every member decides the same.

use std::sync::Arc;

use api::etcdserverpb::InternalRaftRequest;
use auth::{AuthError, AuthStore};
use backend::BatchTx;

use crate::core::{Applied, AuthApplied};
use crate::v3rpc::identity::proposer_of;

/// Whether `req` is an auth request (one of `InternalRaftRequest`'s `auth_*` fields, or
/// `authenticate`).
pub(crate) fn is_auth_request(req: &InternalRaftRequest) -> bool {
    req.auth_enable.is_some()
        || req.auth_disable.is_some()
        || req.auth_status.is_some()
        || req.authenticate.is_some()
        || req.auth_user_add.is_some()
        || req.auth_user_delete.is_some()
        || req.auth_user_get.is_some()
        || req.auth_user_change_password.is_some()
        || req.auth_user_grant_role.is_some()
        || req.auth_user_revoke_role.is_some()
        || req.auth_user_list.is_some()
        || req.auth_role_list.is_some()
        || req.auth_role_add.is_some()
        || req.auth_role_delete.is_some()
        || req.auth_role_get.is_some()
        || req.auth_role_grant_permission.is_some()
        || req.auth_role_revoke_permission.is_some()
}

/// etcd's `needAdminPermission`: what only a user with the root role may do once auth is on.
/// UserGet and RoleGet have their own rule; Authenticate and AuthStatus need nothing.
fn needs_admin(req: &InternalRaftRequest) -> bool {
    req.auth_enable.is_some()
        || req.auth_disable.is_some()
        || req.auth_user_add.is_some()
        || req.auth_user_delete.is_some()
        || req.auth_user_change_password.is_some()
        || req.auth_user_grant_role.is_some()
        || req.auth_user_revoke_role.is_some()
        || req.auth_user_list.is_some()
        || req.auth_role_list.is_some()
        || req.auth_role_add.is_some()
        || req.auth_role_delete.is_some()
        || req.auth_role_grant_permission.is_some()
        || req.auth_role_revoke_permission.is_some()
}

/// Applies the auth requests of committed entries to the member's auth store.
pub(crate) struct AuthApplier {
    store: Arc<AuthStore>,
}

impl AuthApplier {
    pub(crate) fn new(store: Arc<AuthStore>) -> AuthApplier {
        AuthApplier { store }
    }

    /// Applies auth request `req` of entry `index` (on `mvcc`, which records the index in the
    /// same batch); `None` when the store had applied the entry already.
    pub(crate) fn apply(
        &self,
        mvcc: &mvcc::Store,
        index: u64,
        term: u64,
        req: InternalRaftRequest,
    ) -> Option<Result<Applied, AuthError>> {
        let applied = mvcc.apply(index, term, |txn| {
            self.apply_in(txn.backend_tx(), index, req)
        });
        crate::metrics::hooks::auth_revision(self.store.revision());
        Some(applied?.map(Applied::Auth))
    }

    fn apply_in(
        &self,
        tx: &mut BatchTx<'_>,
        index: u64,
        req: InternalRaftRequest,
    ) -> Result<AuthApplied, AuthError> {
        let store = &*self.store;
        let proposer = proposer_of(&req);
        if needs_admin(&req) {
            store.is_admin_permitted(&proposer)?;
        }
        if req.auth_enable.is_some() {
            store.auth_enable(tx)?;
            return Ok(AuthApplied::Done);
        }
        if req.auth_disable.is_some() {
            store.auth_disable(tx);
            return Ok(AuthApplied::Done);
        }
        if req.auth_status.is_some() {
            return Ok(AuthApplied::Status {
                enabled: store.is_enabled(),
                revision: store.revision(),
            });
        }
        if let Some(r) = req.authenticate {
            let token = store.assign_token(&r.name, &r.simple_token, index)?;
            return Ok(AuthApplied::Token(token));
        }
        if let Some(r) = req.auth_user_add {
            store.user_add(tx, r)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_user_delete {
            store.user_delete(tx, &r.name)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_user_change_password {
            store.user_change_password(tx, r)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_user_grant_role {
            store.user_grant_role(tx, &r.user, &r.role)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_user_revoke_role {
            store.user_revoke_role(tx, &r.name, &r.role)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_user_get {
            // A user may read itself without the root role.
            if let Err(e) = store.is_admin_permitted(&proposer) {
                if r.name != proposer.username {
                    return Err(e);
                }
            }
            return Ok(AuthApplied::Names(store.user_get(&r.name)?));
        }
        if req.auth_user_list.is_some() {
            return Ok(AuthApplied::Names(store.user_list()));
        }
        if let Some(r) = req.auth_role_add {
            store.role_add(tx, &r.name)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_role_delete {
            store.role_delete(tx, &r.role)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_role_get {
            // A user may read the roles it has without the root role.
            if let Err(e) = store.is_admin_permitted(&proposer) {
                if !store.has_role(&proposer.username, &r.role) {
                    return Err(e);
                }
            }
            return Ok(AuthApplied::Permissions(store.role_get(&r.role)?));
        }
        if req.auth_role_list.is_some() {
            return Ok(AuthApplied::Names(store.role_list()));
        }
        if let Some(r) = req.auth_role_grant_permission {
            store.role_grant_permission(tx, &r.name, r.perm)?;
            return Ok(AuthApplied::Done);
        }
        if let Some(r) = req.auth_role_revoke_permission {
            store.role_revoke_permission(tx, &r.role, &r.key, &r.range_end)?;
            return Ok(AuthApplied::Done);
        }
        Ok(AuthApplied::Done)
    }
}
