//! The one place where the server's errors become gRPC statuses: etcd's code for each, with
//! etcd's message (etcd's `v3rpc/util.go`).

use tonic::{Code, Status};

use crate::error::ServerError;

/// The gRPC code etcd answers `e` with (etcd's `rpctypes` and `togRPCError`).
pub(crate) fn code(e: &ServerError) -> Code {
    use ServerError::*;
    match e {
        EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
        | MemberBadUrls | RequestTooLarge => Code::InvalidArgument,
        Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
        NoSpace | TooManyRequests => Code::ResourceExhausted,
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
        Internal(_) => Code::Unknown,
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
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
}
