use std::path::PathBuf;

/// One variant per auth error etcd has. `Display` is etcd's text without the `etcdserver: `
/// prefix; the server edge maps each to its gRPC code and etcd's full message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("root user does not exist")]
    RootUserNotExist,
    #[error("root user does not have root role")]
    RootRoleNotExist,
    #[error("user name is empty")]
    UserEmpty,
    #[error("user name already exists")]
    UserAlreadyExist,
    #[error("user name not found")]
    UserNotFound,
    #[error("role name already exists")]
    RoleAlreadyExist,
    #[error("role name not found")]
    RoleNotFound,
    #[error("role name is empty")]
    RoleEmpty,
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd does not map this one, so clients see the raw `auth:` text with code Unknown.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("permission denied")]
    PermissionDenied,
    #[error("role is not granted to the user")]
    RoleNotGranted,
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    #[error("invalid auth token")]
    InvalidAuthToken,
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    #[error("revision of auth store is old")]
    AuthOldRevision,
    #[error("permission not given")]
    PermissionNotGiven,
    /// Unmapped in etcd too (code Unknown).
    #[error("auth: token signing attempted with verify-only key")]
    SigningWithVerifyOnlyKey,
    #[error("auth: invalid auth options")]
    InvalidAuthOpts,
    #[error("auth: invalid auth signature method")]
    InvalidSignMethod,
    #[error("auth: missing key data")]
    MissingKey,
    #[error("auth: public and private keys don't match")]
    KeyMismatch,
    #[error("auth: cannot use key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("auth: backend: {0}")]
    Backend(String),
}

impl From<backend::Error> for AuthError {
    fn from(e: backend::Error) -> Self {
        AuthError::Backend(e.to_string())
    }
}
