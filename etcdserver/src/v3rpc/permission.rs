//! The permission checks etcd makes at the API rather than at apply (`doSerialize`,
//! `requireAuthInfo`, `IsAdminPermitted` in `v3_server.go`, `member.go`, `maintenance.go`):
//! reads served from the local store, admin-only RPCs, and what any authenticated user may do.
//! The checks on key-value writes are made at apply, from the proposal's header
//! (`server::kv_permissions`).

use api::etcdserverpb::InternalRaftRequest;
use auth::{AuthError, AuthInfo, AuthStore};
use tonic::{Request, Status};

use crate::core::ServerCore;
use crate::v3rpc::identity::{auth_info, request_header};

use crate::error::ServerError;
use crate::server::kv_permissions::Permissions;
use crate::v3rpc::status::raw_auth_status;

/// Who `request` comes from while auth is on (its token's user); with auth off nothing is
/// looked at and the answer is "no user".
pub(crate) async fn identity<C: ServerCore, T>(
    core: &C,
    request: &Request<T>,
) -> Result<AuthInfo, Status> {
    if !core.auth_store().is_enabled() {
        return Ok(AuthInfo::default());
    }
    auth_info(core, request).await
}

/// `req` proposed on behalf of `info`: every member's apply checks it against that identity.
pub(crate) fn stamp(req: &mut InternalRaftRequest, info: AuthInfo) {
    req.header = Some(request_header(info));
}

/// Whether `info` stands for no user at all (no token and no client certificate): etcd's
/// `authInfo == nil`. A certificate without a common name is an empty name at a revision.
pub(crate) fn is_anonymous(info: &AuthInfo) -> bool {
    *info == AuthInfo::default()
}

/// etcd's `requireAuthInfo` (3.5.28): with auth on, any authenticated user, else
/// `user name is empty`.
pub(crate) fn require_user(auth: &AuthStore, info: &AuthInfo) -> Result<(), ServerError> {
    if auth.is_enabled() && is_anonymous(info) {
        return Err(ServerError::Auth(AuthError::UserEmpty));
    }
    Ok(())
}

/// etcd's admin check (the root role), with etcd's gRPC errors.
pub(crate) fn require_admin(auth: &AuthStore, info: &AuthInfo) -> Result<(), ServerError> {
    auth.is_admin_permitted(info).map_err(ServerError::Auth)
}

/// The admin check of Defragment, Snapshot, Hash and HashKV: etcd returns the auth store's
/// own error there, unmapped, so clients see code `Unknown` and the `auth: ...` text.
pub(crate) fn require_admin_raw(auth: &AuthStore, info: &AuthInfo) -> Result<(), Status> {
    auth.is_admin_permitted(info)
        .map_err(|e| raw_auth_status(&e))
}

/// etcd's `doSerialize` for a read served from the local store, in two steps: [`check_read`]
/// checks the request before the read, [`CheckedRead::finish`] after it fails with `revision of
/// auth store is old` if the auth store changed meanwhile (the read may have used permissions
/// that no longer hold).
#[must_use = "finish the read to catch a concurrent auth change"]
pub(crate) struct CheckedRead<'a> {
    /// The store and the revision the check was made at, when auth is on.
    checked_at: Option<(&'a AuthStore, u64)>,
}

/// The first step of etcd's `doSerialize`: with auth on, `check` (given the request's
/// permissions) must pass. With auth off nothing runs but a flag read.
pub(crate) fn check_read<'a>(
    auth: &'a AuthStore,
    info: &AuthInfo,
    lessor: Option<&lease::Lessor>,
    check: impl FnOnce(&Permissions<'_>) -> Result<(), AuthError>,
) -> Result<CheckedRead<'a>, ServerError> {
    if !auth.is_enabled() {
        return Ok(CheckedRead { checked_at: None });
    }
    check(&Permissions { auth, info, lessor }).map_err(ServerError::Auth)?;
    Ok(CheckedRead {
        checked_at: (info.revision != 0).then_some((auth, info.revision)),
    })
}

impl CheckedRead<'_> {
    pub(crate) fn finish(self) -> Result<(), ServerError> {
        match self.checked_at {
            Some((auth, revision)) if auth.revision() != revision => {
                Err(ServerError::Auth(AuthError::AuthOldRevision))
            }
            _ => Ok(()),
        }
    }
}

/// The reason a watch refused by its permission check is canceled with: the gRPC status text
/// etcd's clients print (`rpc error: code = PermissionDenied desc = etcdserver: permission
/// denied`). Errors other than the token's and the user's become "permission denied", as etcd.
pub(crate) fn watch_cancel_reason(e: AuthError) -> String {
    let e = match e {
        e @ (AuthError::InvalidAuthToken | AuthError::AuthOldRevision | AuthError::UserEmpty) => e,
        _ => AuthError::PermissionDenied,
    };
    status_text(&Status::from(ServerError::Auth(e)))
}

/// A status as grpc-go prints it: `rpc error: code = <name> desc = <message>`.
pub(crate) fn status_text(status: &Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        go_code_name(status.code()),
        status.message()
    )
}

/// grpc-go's name of the codes an auth error maps to.
fn go_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::Unauthenticated => "Unauthenticated",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        _ => "Unknown",
    }
}
