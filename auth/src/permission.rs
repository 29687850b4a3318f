//! Permission checks (etcd's `isOpPermitted`, `IsAdminPermitted` and range_perm_cache.go's
//! checks): read lock only, no allocation.

use crate::range_perm_cache::{is_open_ended, KeyRanges};
use crate::store::{has_root_role, State};
use crate::{AuthError, AuthInfo, AuthStore};

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

impl AuthStore {
    /// WRITE on `key`.
    pub fn is_put_permitted(&self, info: &AuthInfo, key: &[u8]) -> Result<(), AuthError> {
        self.is_op_permitted(info, key, &[], Access::Write)
    }

    /// READ on `key` (empty `range_end`) or all of `[key, range_end)` ("\x00": open-ended).
    pub fn is_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        self.is_op_permitted(info, key, range_end, Access::Read)
    }

    /// WRITE on `key` or all of `[key, range_end)`.
    pub fn is_delete_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        self.is_op_permitted(info, key, range_end, Access::Write)
    }

    /// The root role. Auth off => Ok; no user => `UserEmpty`; unknown user => `UserNotFound`;
    /// no root role => `PermissionDenied`. The revision is not checked, as in etcd.
    pub fn is_admin_permitted(&self, info: &AuthInfo) -> Result<(), AuthError> {
        let state = self.state.read();
        if !state.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let user = state
            .users
            .get(&info.username)
            .ok_or(AuthError::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    fn is_op_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        let state = self.state.read();
        if !state.enabled {
            return Ok(());
        }
        if info.revision == 0 || info.username.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < state.revision {
            tracing::warn!(
                current = state.revision,
                request = info.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(AuthError::AuthOldRevision);
        }
        if permits(&state, &info.username, key, range_end, access) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }
}

fn permits(state: &State, username: &str, key: &[u8], range_end: &[u8], access: Access) -> bool {
    let Some(user) = state.users.get(username) else {
        tracing::error!(user = username, "cannot find a user for permission check");
        return false;
    };
    if has_root_role(user) {
        return true;
    }
    let Some(permissions) = state.permissions.get(username) else {
        return false;
    };
    let ranges: &KeyRanges = match access {
        Access::Read => &permissions.read,
        Access::Write => &permissions.write,
    };
    if range_end.is_empty() {
        ranges.contains_key(key)
    } else if is_open_ended(range_end) {
        ranges.covers(key, None)
    } else {
        ranges.covers(key, Some(range_end))
    }
}
