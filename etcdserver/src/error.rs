//! The server's errors (etcd's `etcdserver/errors.go` and the texts of `v3rpc/rpctypes`): what
//! a request can fail with, in etcd's exact words, since clientv3 and etcdctl recognise errors
//! by message. `v3rpc::status` gives each its gRPC code.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: request timed out, possibly due to connection lost")]
    TimeoutDueToConnectionLost,
    #[error("etcdserver: request timed out, waiting for the applied index took too long")]
    TimeoutWaitAppliedIndex,
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: watch canceled")]
    WatchCanceled,
    // downgrade
    #[error("etcdserver: unknown method")]
    UnknownMethod,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess,
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    #[error("etcdserver: cluster version not found during downgrade")]
    ClusterVersionUnavailable,
    /// The auth store refused the request; `v3rpc::status` gives it etcd's code and message.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// A local failure (disk, corrupt state) that the client cannot act on.
    #[error("{0}")]
    Internal(String),
}

impl<E: Into<ServerError>> From<lease::LeaseError<E>> for ServerError {
    fn from(e: lease::LeaseError<E>) -> ServerError {
        match e {
            lease::LeaseError::NotFound => ServerError::LeaseNotFound,
            lease::LeaseError::Exists => ServerError::LeaseExists,
            lease::LeaseError::TtlTooLarge => ServerError::LeaseTtlTooLarge,
            lease::LeaseError::Store(e) => e.into(),
        }
    }
}

/// For the lessor's requests that cannot fail in storage (`LeaseError<Infallible>`).
impl From<std::convert::Infallible> for ServerError {
    fn from(never: std::convert::Infallible) -> ServerError {
        match never {}
    }
}

impl From<mvcc::Error> for ServerError {
    fn from(e: mvcc::Error) -> ServerError {
        match e {
            mvcc::Error::Compacted => ServerError::Compacted,
            mvcc::Error::FutureRevision => ServerError::FutureRevision,
            mvcc::Error::KeyNotFound => ServerError::KeyNotFound,
            mvcc::Error::LeaseNotFound(_) => ServerError::LeaseNotFound,
            other => ServerError::Internal(other.to_string()),
        }
    }
}
