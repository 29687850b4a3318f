//! The auth store (etcd's store.go): users, roles and their permissions, the enabled flag and
//! the auth revision, kept in memory and written through the apply's batch.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use api::authpb;
use api::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest};
use backend::{Backend, BatchTx};
use base64::Engine as _;
use parking_lot::RwLock;

use crate::range_perm_cache::{self, UserPermissions};
use crate::schema;
use crate::token::TokenProvider;
use crate::{AuthError, TokenOptions};

pub(crate) const ROOT_USER: &str = "root";
pub(crate) const ROOT_ROLE: &str = "root";

const DEFAULT_BCRYPT_COST: u32 = 10;
/// Go's bcrypt.MinCost and MaxCost.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Who a request is from: the user of its token or client certificate, and the auth revision
/// it was checked at. `AuthInfo::default()` (empty name, revision 0) is "no user".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// Everything one lock guards, so a check sees users, roles, cache and revision of one moment.
pub(crate) struct State {
    pub(crate) enabled: bool,
    pub(crate) revision: u64,
    pub(crate) users: BTreeMap<String, authpb::User>,
    pub(crate) roles: BTreeMap<String, authpb::Role>,
    pub(crate) permissions: HashMap<String, UserPermissions>,
}

impl State {
    /// etcd's `commitRevision`.
    fn bump_revision(&mut self, tx: &mut BatchTx<'_>) {
        self.revision += 1;
        schema::put_revision(tx, self.revision);
    }

    /// etcd's `refreshRangePermCache`.
    fn refresh_permissions(&mut self) {
        self.permissions = range_perm_cache::build(&self.users, &self.roles);
    }

    fn user(&self, name: &str) -> Result<&authpb::User, AuthError> {
        self.users.get(name).ok_or(AuthError::UserNotFound)
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut authpb::User, AuthError> {
        self.users.get_mut(name).ok_or(AuthError::UserNotFound)
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut authpb::Role, AuthError> {
        self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)
    }
}

pub(crate) fn has_root_role(user: &authpb::User) -> bool {
    user.roles
        .binary_search_by(|role| role.as_str().cmp(ROOT_ROLE))
        .is_ok()
}

fn is_no_password(user: &authpb::User) -> bool {
    user.options.as_ref().is_some_and(|o| o.no_password)
}

/// etcd's auth store. `Send + Sync`, shared as `Arc<AuthStore>`; permission checks take the
/// read lock only and allocate nothing.
pub struct AuthStore {
    pub(crate) state: RwLock<State>,
    tokens: TokenProvider,
    bcrypt_cost: u32,
}

impl AuthStore {
    /// `bcrypt_cost` outside 4..=31 becomes 10 (with a warning), as etcd. The store starts
    /// empty, disabled, at revision 1; [`AuthStore::recover`] loads what the backend holds.
    pub fn new(tokens: TokenOptions, bcrypt_cost: u32) -> AuthStore {
        let bcrypt_cost = if BCRYPT_COSTS.contains(&bcrypt_cost) {
            bcrypt_cost
        } else {
            tracing::warn!(
                given_cost = bcrypt_cost,
                default_cost = DEFAULT_BCRYPT_COST,
                "use default bcrypt cost instead of the invalid given cost"
            );
            DEFAULT_BCRYPT_COST
        };
        AuthStore {
            state: RwLock::new(State {
                enabled: false,
                revision: 1,
                users: BTreeMap::new(),
                roles: BTreeMap::new(),
                permissions: HashMap::new(),
            }),
            tokens: TokenProvider::new(tokens),
            bcrypt_cost,
        }
    }

    /// (Re)loads enabled, revision (a stored 0 or none is 1), users and roles from the backend:
    /// at start-up and after a snapshot is restored. Drops simple tokens when auth ends up
    /// disabled. Writes nothing (etcd stores revision 1 at first start; here the first bump
    /// stores 2), so it may be called while the caller holds no or any transaction.
    pub fn recover(&self, backend: &Backend) -> Result<(), AuthError> {
        let stored = schema::load(backend)?;
        let mut state = self.state.write();
        state.enabled = stored.enabled;
        state.revision = stored.revision.max(1);
        state.users = stored.users;
        state.roles = stored.roles;
        state.refresh_permissions();
        if state.enabled {
            self.tokens.enable();
        } else {
            self.tokens.disable();
        }
        tracing::info!(
            enabled = state.enabled,
            revision = state.revision,
            users = state.users.len(),
            roles = state.roles.len(),
            "recovered auth store"
        );
        Ok(())
    }

    // ---- apply side ----

    /// Needs user root holding role root; already enabled is a no-op. Does not bump the
    /// revision.
    pub fn auth_enable(&self, tx: &mut BatchTx<'_>) -> Result<(), AuthError> {
        let mut state = self.state.write();
        if state.enabled {
            tracing::info!("authentication is already enabled; ignored auth enable request");
            return Ok(());
        }
        let root = state
            .users
            .get(ROOT_USER)
            .ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        schema::put_enabled(tx, true);
        state.enabled = true;
        self.tokens.enable();
        state.refresh_permissions();
        tracing::info!("enabled authentication");
        Ok(())
    }

    /// Bumps the revision and drops every simple token; already disabled is a no-op.
    pub fn auth_disable(&self, tx: &mut BatchTx<'_>) {
        let mut state = self.state.write();
        if !state.enabled {
            return;
        }
        schema::put_enabled(tx, false);
        state.bump_revision(tx);
        state.enabled = false;
        self.tokens.disable();
        tracing::info!("disabled authentication");
    }

    /// etcd 3.5: a given `hashedPassword` (std base64 of the bcrypt text) is stored as is,
    /// else a non-empty `password` is hashed here; a `no_password` user gets no password.
    pub fn user_add(&self, tx: &mut BatchTx<'_>, r: AuthUserAddRequest) -> Result<(), AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let options = r.options.unwrap_or_default();
        let mut state = self.state.write();
        if state.users.contains_key(&r.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let password = if options.no_password {
            Vec::new()
        } else {
            // bcrypt outside the lock would let two adds of one name race; apply is serial
            // and 3.5 servers send the hash, so this runs only for old entries.
            self.select_password(&r.password, &r.hashed_password)?
        };
        let user = authpb::User {
            name: r.name.clone().into_bytes(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        schema::put_user(tx, &user);
        tracing::info!(user = %r.name, "added a user");
        state.users.insert(r.name, user);
        state.bump_revision(tx);
        state.refresh_permissions();
        Ok(())
    }

    /// Root cannot be deleted while auth is enabled. Drops the user's simple tokens.
    pub fn user_delete(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        let mut state = self.state.write();
        if state.enabled && name == ROOT_USER {
            tracing::error!("cannot delete 'root' user");
            return Err(AuthError::InvalidAuthMgmt);
        }
        state.users.remove(name).ok_or(AuthError::UserNotFound)?;
        schema::delete_user(tx, name);
        state.bump_revision(tx);
        state.refresh_permissions();
        self.tokens.invalidate_user(name);
        tracing::info!(user = name, "deleted a user");
        Ok(())
    }

    /// Drops the user's simple tokens. A `no_password` user keeps no password.
    pub fn user_change_password(
        &self,
        tx: &mut BatchTx<'_>,
        r: AuthUserChangePasswordRequest,
    ) -> Result<(), AuthError> {
        let mut state = self.state.write();
        let no_password = is_no_password(state.user(&r.name)?);
        let password = if no_password {
            Vec::new()
        } else {
            self.select_password(&r.password, &r.hashed_password)?
        };
        let user = state.user_mut(&r.name)?;
        user.password = password;
        schema::put_user(tx, user);
        state.bump_revision(tx);
        state.refresh_permissions();
        self.tokens.invalidate_user(&r.name);
        tracing::info!(user = %r.name, "changed a password of a user");
        Ok(())
    }

    /// Role root need not exist; a role the user holds already is a no-op.
    pub fn user_grant_role(
        &self,
        tx: &mut BatchTx<'_>,
        user: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        let mut state = self.state.write();
        state.user(user)?;
        if role != ROOT_ROLE && !state.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let record = state.user_mut(user)?;
        let Err(at) = record
            .roles
            .binary_search_by(|held| held.as_str().cmp(role))
        else {
            tracing::warn!(user, role, "ignored grant role request to a user");
            return Ok(());
        };
        record.roles.insert(at, role.to_owned());
        schema::put_user(tx, record);
        state.bump_revision(tx);
        state.refresh_permissions();
        tracing::info!(user, role, "granted a role to a user");
        Ok(())
    }

    /// Root cannot lose role root while auth is enabled.
    pub fn user_revoke_role(
        &self,
        tx: &mut BatchTx<'_>,
        user: &str,
        role: &str,
    ) -> Result<(), AuthError> {
        let mut state = self.state.write();
        if state.enabled && user == ROOT_USER && role == ROOT_ROLE {
            tracing::error!("'root' user cannot revoke 'root' role");
            return Err(AuthError::InvalidAuthMgmt);
        }
        let record = state.user_mut(user)?;
        let held = record.roles.len();
        record.roles.retain(|r| r != role);
        if record.roles.len() == held {
            return Err(AuthError::RoleNotGranted);
        }
        schema::put_user(tx, record);
        state.bump_revision(tx);
        state.refresh_permissions();
        tracing::info!(user, role, "revoked a role from a user");
        Ok(())
    }

    pub fn role_add(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        let mut state = self.state.write();
        if state.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = authpb::Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        schema::put_role(tx, &role);
        state.roles.insert(name.to_owned(), role);
        state.bump_revision(tx);
        // A user may already name this role (granted before it was deleted and re-added).
        state.refresh_permissions();
        tracing::info!(role = name, "created a role");
        Ok(())
    }

    /// Role root cannot be deleted while auth is enabled; the role is taken from every user.
    pub fn role_delete(&self, tx: &mut BatchTx<'_>, name: &str) -> Result<(), AuthError> {
        let mut state = self.state.write();
        if state.enabled && name == ROOT_ROLE {
            tracing::error!("cannot delete 'root' role");
            return Err(AuthError::InvalidAuthMgmt);
        }
        state.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
        schema::delete_role(tx, name);
        for user in state.users.values_mut() {
            let held = user.roles.len();
            user.roles.retain(|r| r != name);
            if user.roles.len() != held {
                schema::put_user(tx, user);
            }
        }
        state.bump_revision(tx);
        state.refresh_permissions();
        tracing::info!(role = name, "deleted a role");
        Ok(())
    }

    /// etcd 3.5's checks (`permission not given`, `invalid auth management` for a bad range);
    /// the same (key, range_end) gets its type replaced, else the permission is inserted in
    /// key order.
    pub fn role_grant_permission(
        &self,
        tx: &mut BatchTx<'_>,
        role: &str,
        perm: Option<authpb::Permission>,
    ) -> Result<(), AuthError> {
        let perm = perm.ok_or(AuthError::PermissionNotGiven)?;
        if !range_perm_cache::is_valid_permission_range(&perm.key, &perm.range_end) {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let mut state = self.state.write();
        let record = state.role_mut(role)?;
        let permissions = &mut record.key_permission;
        match permissions
            .iter_mut()
            .find(|p| p.key == perm.key && p.range_end == perm.range_end)
        {
            Some(existing) => existing.perm_type = perm.perm_type,
            None => {
                let at = permissions.partition_point(|p| p.key <= perm.key);
                permissions.insert(at, perm);
            }
        }
        schema::put_role(tx, record);
        state.bump_revision(tx);
        state.refresh_permissions();
        tracing::info!(role, "granted/updated a permission to a role");
        Ok(())
    }

    /// Needs the exact (key, range_end) pair.
    pub fn role_revoke_permission(
        &self,
        tx: &mut BatchTx<'_>,
        role: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let mut state = self.state.write();
        let record = state.role_mut(role)?;
        let held = record.key_permission.len();
        record
            .key_permission
            .retain(|p| p.key != key || p.range_end != range_end);
        if record.key_permission.len() == held {
            return Err(AuthError::PermissionNotGranted);
        }
        schema::put_role(tx, record);
        state.bump_revision(tx);
        state.refresh_permissions();
        tracing::info!(role, "revoked a permission on range");
        Ok(())
    }

    /// Apply of `InternalAuthenticateRequest` at raft index `index` (etcd's `Authenticate`):
    /// the token for `name` (simple: "<simple_token>.<index>", remembered on every member;
    /// JWT: signed now, at the current revision).
    pub fn assign_token(
        &self,
        name: &str,
        simple_token: &str,
        index: u64,
    ) -> Result<String, AuthError> {
        let revision = {
            let state = self.state.read();
            if !state.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let user = state.users.get(name).ok_or(AuthError::AuthFailed)?;
            if is_no_password(user) {
                return Err(AuthError::AuthFailed);
            }
            state.revision
        };
        self.tokens.assign(name, revision, simple_token, index)
    }

    // ---- reads ----

    /// The user's roles.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, AuthError> {
        Ok(self.state.read().user(name)?.roles.clone())
    }

    /// Every user name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.state.read().users.keys().cloned().collect()
    }

    /// The role's permissions, sorted by key.
    pub fn role_get(&self, name: &str) -> Result<Vec<authpb::Permission>, AuthError> {
        let state = self.state.read();
        let role = state.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        Ok(role.key_permission.clone())
    }

    /// Every role name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.state.read().roles.keys().cloned().collect()
    }

    pub fn is_enabled(&self) -> bool {
        self.state.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// RoleGet's self-exception: whether `user` exists and holds `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.state
            .read()
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // ---- API side ----

    /// bcrypt check for Authenticate, outside raft and outside the store lock; slow at high
    /// cost, so call it off the async threads. Returns the revision it checked at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = {
            let state = self.state.read();
            if !state.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let user = state.users.get(name).ok_or(AuthError::AuthFailed)?;
            if is_no_password(user) {
                return Err(AuthError::NoPasswordUser);
            }
            (user.password.clone(), state.revision)
        };
        let matches = std::str::from_utf8(&hash)
            .ok()
            .and_then(|hash| bcrypt::verify(password, hash).ok())
            .unwrap_or(false);
        if !matches {
            tracing::info!(user = name, "invalid password");
            return Err(AuthError::AuthFailed);
        }
        Ok(revision)
    }

    /// The 16 random [a-zA-Z] letters of a new simple token ("" for JWT and the no-op
    /// provider, as etcd).
    pub fn gen_simple_token_prefix(&self) -> String {
        self.tokens.gen_prefix()
    }

    /// A bcrypt hash of `password` at the configured cost: the "$2a$..." text etcd stores.
    /// Requests carry it std-base64 encoded in `hashedPassword`.
    pub fn hash_password(&self, password: &str) -> String {
        bcrypt::hash_with_result(password, self.bcrypt_cost)
            .expect("the bcrypt cost was checked in AuthStore::new")
            .format_for_version(bcrypt::Version::TwoA)
    }

    /// The raft index a simple token was assigned at ("x.<index>"). None for other tokens.
    pub fn simple_token_index(token: &str) -> Option<u64> {
        crate::simple_token::index_of(token)
    }

    /// The identity a token stands for (simple: looked up and its TTL renewed, at the current
    /// revision; JWT: verified, revision from its claims). Unknown, expired or forged =>
    /// `InvalidAuthToken`. With auth disabled no token means anyone: `AuthInfo::default()`,
    /// as etcd's `AuthInfoFromCtx`.
    pub fn auth_info_from_token(&self, token: &str) -> Result<AuthInfo, AuthError> {
        let current = {
            let state = self.state.read();
            if !state.enabled {
                return Ok(AuthInfo::default());
            }
            state.revision
        };
        let (username, revision) = self
            .tokens
            .info(token, current)
            .ok_or(AuthError::InvalidAuthToken)?;
        Ok(AuthInfo { username, revision })
    }

    /// Drops expired simple tokens; the server calls it every second.
    pub fn expire_tokens(&self) {
        self.tokens.expire(Instant::now());
    }

    #[cfg(test)]
    pub(crate) fn expire_tokens_at(&self, now: Instant) {
        self.tokens.expire(now);
    }

    /// etcd's `selectPassword`: a non-empty password with no hash is hashed here; otherwise
    /// the hash is base64-decoded (an empty one gives an empty, unusable password). A hash
    /// that is not base64 fails with etcd's `ErrNoPasswordUser`.
    fn select_password(&self, password: &str, hashed: &str) -> Result<Vec<u8>, AuthError> {
        if !password.is_empty() && hashed.is_empty() {
            return Ok(self.hash_password(password).into_bytes());
        }
        base64::engine::general_purpose::STANDARD
            .decode(hashed)
            .map_err(|_| AuthError::NoPasswordUser)
    }
}
