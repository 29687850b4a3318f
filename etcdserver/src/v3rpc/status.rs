//! The one place where the server's errors become gRPC statuses: etcd's code for each, with
//! etcd's message (etcd's `v3rpc/util.go` and `rpctypes`).

use auth::AuthError;
use tonic::{Code, Status};

use crate::error::ServerError;

/// The gRPC code etcd answers `e` with (etcd's `rpctypes` and `togRPCError`).
pub(crate) fn code(e: &ServerError) -> Code {
    use ServerError::*;
    match e {
        EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
        | MemberBadUrls | RequestTooLarge => Code::InvalidArgument,
        Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
        NoSpace => Code::ResourceExhausted,
        // etcd's map holds clientv3's error value for this one, not the server's, so the
        // lookup misses and etcd 3.4 and 3.5 answer it with code Unknown.
        TooManyRequests => Code::Unknown,
        LeaseNotFound | MemberNotFound => Code::NotFound,
        LeaseExists
        | MemberExist
        | PeerUrlExist
        | NotEnoughStartedMembers
        | MemberNotLearner
        | LearnerNotReady
        | TooManyLearners
        | NotLeader
        | BadLeaderTransferee => Code::FailedPrecondition,
        NoLeader
        | LeaderChanged
        | Stopped
        | Timeout
        | TimeoutDueToLeaderFail
        | TimeoutDueToConnectionLost
        | TimeoutWaitAppliedIndex
        | UnhealthyCluster
        | NotSupportedForLearner => Code::Unavailable,
        Corrupt => Code::DataLoss,
        WatchCanceled => Code::Cancelled,
        Auth(e) => auth_code_and_message(e).0,
        Internal(_) => Code::Unknown,
        // downgrade
        WrongDowngradeVersionFormat | InvalidDowngradeTargetVersion => Code::InvalidArgument,
        DowngradeInProcess | NoInflightDowngrade => Code::FailedPrecondition,
        ClusterVersionUnavailable => Code::Unavailable,
        // Not in etcd's map either: its raw error, code Unknown.
        UnknownMethod => Code::Unknown,
    }
}

/// etcd's status for an auth error: the ones in etcd's `rpctypes` table get their code and
/// `etcdserver: ...` text; the others reach the client as etcd's raw `auth: ...` error, code
/// Unknown (a password for a no-password user, a verify-only JWT key, a backend failure).
fn auth_code_and_message(e: &AuthError) -> (Code, Option<&'static str>) {
    use AuthError::*;
    let (code, message) = match e {
        RootUserNotExist => (
            Code::FailedPrecondition,
            "etcdserver: root user does not exist",
        ),
        RootRoleNotExist => (
            Code::FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        UserAlreadyExist => (
            Code::FailedPrecondition,
            "etcdserver: user name already exists",
        ),
        UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
        UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
        RoleAlreadyExist => (
            Code::FailedPrecondition,
            "etcdserver: role name already exists",
        ),
        RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
        RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
        AuthFailed => (
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        PermissionNotGiven => (Code::InvalidArgument, "etcdserver: permission not given"),
        PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
        RoleNotGranted => (
            Code::FailedPrecondition,
            "etcdserver: role is not granted to the user",
        ),
        PermissionNotGranted => (
            Code::FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        AuthNotEnabled => (
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled",
        ),
        InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
        InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
        AuthOldRevision => (
            Code::InvalidArgument,
            "etcdserver: revision of auth store is old",
        ),
        _ => return (Code::Unknown, None),
    };
    (code, Some(message))
}

/// The auth store's raw error as etcd's clients get it when etcd does not map it: code
/// Unknown, etcd's `auth: ...` text. Also etcd 3.4's answer to a maintenance RPC (Defragment,
/// Snapshot, Hash, HashKV) that fails its admin check (`auth: permission denied`).
pub(crate) fn raw_auth_status(e: &AuthError) -> Status {
    // etcd's auth package words a few errors differently from the gRPC table.
    let raw = match e {
        AuthError::UserAlreadyExist => Some("auth: user already exists"),
        AuthError::UserNotFound => Some("auth: user not found"),
        AuthError::RoleAlreadyExist => Some("auth: role already exists"),
        AuthError::RoleNotFound => Some("auth: role not found"),
        AuthError::AuthOldRevision => Some("auth: revision in header is old"),
        _ => None,
    };
    let message = match raw {
        Some(raw) => raw.to_owned(),
        None => {
            let text = e.to_string();
            if text.starts_with("auth: ") {
                text
            } else {
                format!("auth: {text}")
            }
        }
    };
    Status::new(Code::Unknown, message)
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        if let ServerError::Auth(auth) = &e {
            let (code, message) = auth_code_and_message(auth);
            return match message {
                Some(message) => Status::new(code, message),
                None => raw_auth_status(auth),
            };
        }
        Status::new(code(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_code_and_text() {
        let s = Status::from(ServerError::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = Status::from(ServerError::from(mvcc::Error::LeaseNotFound(7)));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s = Status::from(ServerError::from(
            lease::LeaseError::<std::convert::Infallible>::TtlTooLarge,
        ));
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: too large lease TTL");
        let s = Status::from(ServerError::from(lease::LeaseError::<mvcc::Error>::Exists));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "etcdserver: lease already exists");
    }

    #[test]
    fn auth_errors_carry_etcds_code_and_text() {
        let cases = [
            (
                AuthError::RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                AuthError::RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                AuthError::UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                AuthError::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                AuthError::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                AuthError::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                AuthError::AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            (
                AuthError::AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
        ];
        for (e, code, message) in cases {
            let s = Status::from(ServerError::Auth(e));
            assert_eq!((s.code(), s.message()), (code, message));
        }
        let s = Status::from(ServerError::Auth(AuthError::NoPasswordUser));
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(
            s.message(),
            "auth: authentication failed, password was given for no password user"
        );
        let s = raw_auth_status(&AuthError::PermissionDenied);
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unknown, "auth: permission denied")
        );
    }
}
