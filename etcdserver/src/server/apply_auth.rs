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

#[cfg(test)]
mod tests {
    use api::etcdserverpb as pb;
    use auth::{AuthError, AuthInfo};

    use crate::core::{Applied, AuthApplied, Limits, ServerCore};
    use crate::error::ServerError;
    use crate::testing::DirectCore;
    use crate::v3rpc::identity::on_behalf_of;

    fn user_add(name: &str) -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_user_add: Some(pb::AuthUserAddRequest {
                name: name.into(),
                password: "pw".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn grant(user: &str, role: &str) -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_user_grant_role: Some(pb::AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            }),
            ..Default::default()
        }
    }

    fn role_add(name: &str) -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_role_add: Some(pb::AuthRoleAddRequest { name: name.into() }),
            ..Default::default()
        }
    }

    fn user_get(name: &str) -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_user_get: Some(pb::AuthUserGetRequest { name: name.into() }),
            ..Default::default()
        }
    }

    fn role_get(role: &str) -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_role_get: Some(pb::AuthRoleGetRequest { role: role.into() }),
            ..Default::default()
        }
    }

    fn user_list() -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_user_list: Some(pb::AuthUserListRequest {}),
            ..Default::default()
        }
    }

    fn enable() -> pb::InternalRaftRequest {
        pb::InternalRaftRequest {
            auth_enable: Some(pb::AuthEnableRequest {}),
            ..Default::default()
        }
    }

    async fn apply(
        core: &DirectCore,
        who: &AuthInfo,
        req: pb::InternalRaftRequest,
    ) -> Result<AuthApplied, ServerError> {
        match core.propose(on_behalf_of(who.clone(), req)).await? {
            Applied::Auth(applied) => Ok(applied),
            other => panic!("not an auth answer: {other:?}"),
        }
    }

    #[tokio::test]
    async fn admin_requests_need_the_root_role_and_users_may_read_themselves() {
        let core = DirectCore::new(Limits::default()).unwrap();
        let nobody = AuthInfo::default();
        for req in [user_add("root"), user_add("alice"), role_add("r1")] {
            apply(&core, &nobody, req).await.unwrap();
        }
        assert_eq!(
            apply(&core, &nobody, enable()).await,
            Err(ServerError::Auth(AuthError::RootRoleNotExist))
        );
        for req in [grant("root", "root"), grant("alice", "r1"), enable()] {
            apply(&core, &nobody, req).await.unwrap();
        }
        let revision = core.auth_store().revision();
        let as_user = |name: &str| AuthInfo {
            username: name.into(),
            revision,
        };
        let (root, alice) = (as_user("root"), as_user("alice"));
        let denied = Err(ServerError::Auth(AuthError::PermissionDenied));

        assert_eq!(
            apply(&core, &nobody, user_list()).await,
            Err(ServerError::Auth(AuthError::UserEmpty))
        );
        assert_eq!(apply(&core, &alice, user_list()).await, denied);
        assert_eq!(apply(&core, &alice, user_add("eve")).await, denied);
        assert_eq!(apply(&core, &alice, user_get("root")).await, denied);
        assert_eq!(apply(&core, &alice, role_get("root")).await, denied);
        assert_eq!(
            apply(&core, &alice, user_get("alice")).await,
            Ok(AuthApplied::Names(vec!["r1".into()]))
        );
        assert_eq!(
            apply(&core, &alice, role_get("r1")).await,
            Ok(AuthApplied::Permissions(vec![]))
        );
        assert_eq!(
            apply(&core, &root, user_list()).await,
            Ok(AuthApplied::Names(vec!["alice".into(), "root".into()]))
        );
        // etcd's admin check looks the user up (not the revision).
        assert_eq!(
            apply(&core, &as_user("ghost"), user_list()).await,
            Err(ServerError::Auth(AuthError::UserNotFound))
        );
    }

    #[tokio::test]
    async fn a_token_is_assigned_at_apply_and_names_its_entry() {
        let core = DirectCore::new(Limits::default()).unwrap();
        let nobody = AuthInfo::default();
        for req in [user_add("root"), grant("root", "root"), enable()] {
            apply(&core, &nobody, req).await.unwrap();
        }
        let authenticate = pb::InternalRaftRequest {
            authenticate: Some(pb::InternalAuthenticateRequest {
                name: "root".into(),
                password: String::new(),
                simple_token: "abcdefghijklmnop".into(),
            }),
            ..Default::default()
        };
        let Ok(AuthApplied::Token(token)) = apply(&core, &nobody, authenticate).await else {
            panic!("a token expected");
        };
        assert_eq!(token, "abcdefghijklmnop.4");
        let info = core.auth_store().auth_info_from_token(&token).unwrap();
        assert_eq!(info.username, "root");
        // AuthStatus needs no permission and does not move the revision.
        let status = pb::InternalRaftRequest {
            auth_status: Some(pb::AuthStatusRequest {}),
            ..Default::default()
        };
        assert_eq!(
            apply(&core, &nobody, status).await,
            Ok(AuthApplied::Status {
                enabled: true,
                revision: info.revision,
            })
        );
    }
}
