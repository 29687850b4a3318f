use api::authpb;
use api::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest};
use backend::{Backend, BatchTx};

use crate::{AuthError, TokenOptions};

/// Who a request is from: the user of its token or client certificate, and the auth revision
/// it was checked at. `AuthInfo::default()` (empty name, revision 0) is "no user".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

pub struct AuthStore {}

impl AuthStore {
    pub fn new(tokens: TokenOptions, bcrypt_cost: u32) -> AuthStore {
        let _ = (tokens, bcrypt_cost);
        todo!()
    }
    pub fn recover(&self, backend: &Backend) -> Result<(), AuthError> {
        let _ = backend;
        todo!()
    }
    pub fn auth_enable(&self, tx: &mut BatchTx<'_>) -> Result<(), AuthError> {
        let _ = tx;
        todo!()
    }
    pub fn auth_disable(&self, tx: &mut BatchTx<'_>) {
        let _ = tx;
        todo!()
    }
    pub fn user_add(&self, tx: &mut BatchTx<'_>, r: AuthUserAddRequest) -> Result<(), AuthError> {
        let _ = (tx, r);
        todo!()
    }
    pub fn user_delete(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        let _ = (tx, name);
        todo!()
    }
    pub fn user_change_password(
        &self,
        tx: &mut BatchTx<'_>,
        r: AuthUserChangePasswordRequest,
    ) -> Result<(), AuthError> {
        let _ = (tx, r);
        todo!()
    }
    pub fn user_grant_role(
        &self,
        tx: &mut BatchTx<'_>,
        user: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        let _ = (tx, user, role);
        todo!()
    }
    pub fn user_revoke_role(
        &self,
        tx: &mut BatchTx<'_>,
        user: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        let _ = (tx, user, role);
        todo!()
    }
    pub fn role_add(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        let _ = (tx, name);
        todo!()
    }
    pub fn role_delete(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        let _ = (tx, name);
        todo!()
    }
    pub fn role_grant_permission(
        &self,
        tx: &mut BatchTx<'_>,
        role: &str,
        perm: Option<authpb::Permission>,
    ) -> Result<(), AuthError> {
        let _ = (tx, role, perm);
        todo!()
    }
    pub fn role_revoke_permission(
        &self,
        tx: &mut BatchTx<'_>,
        role: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let _ = (tx, role, key, range_end);
        todo!()
    }
    pub fn assign_token(
        &self,
        name: &str,
        simple_token: &str,
        index: u64,
    ) -> Result<String, AuthError> {
        let _ = (name, simple_token, index);
        todo!()
    }
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, AuthError> {
        let _ = name;
        todo!()
    }
    pub fn user_list(&self) -> Vec<String> {
        todo!()
    }
    pub fn role_get(&self, name: &str) -> Result<Vec<authpb::Permission>, AuthError> {
        let _ = name;
        todo!()
    }
    pub fn role_list(&self) -> Vec<String> {
        todo!()
    }
    pub fn is_enabled(&self) -> bool {
        todo!()
    }
    pub fn revision(&self) -> u64 {
        todo!()
    }
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        let _ = (user, role);
        todo!()
    }
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let _ = (name, password);
        todo!()
    }
    pub fn gen_simple_token_prefix(&self) -> String {
        todo!()
    }
    pub fn hash_password(&self, password: &str) -> String {
        let _ = password;
        todo!()
    }
    pub fn simple_token_index(token: &str) -> Option<u64> {
        let _ = token;
        todo!()
    }
    pub fn auth_info_from_token(&self, token: &str) -> Result<AuthInfo, AuthError> {
        let _ = token;
        todo!()
    }
    pub fn expire_tokens(&self) {
        todo!()
    }
    pub fn is_put_permitted(&self, info: &AuthInfo, key: &[u8]) -> Result<(), AuthError> {
        let _ = (info, key);
        todo!()
    }
    pub fn is_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let _ = (info, key, range_end);
        todo!()
    }
    pub fn is_delete_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let _ = (info, key, range_end);
        todo!()
    }
    pub fn is_admin_permitted(&self, info: &AuthInfo) -> Result<(), AuthError> {
        let _ = info;
        todo!()
    }
}
