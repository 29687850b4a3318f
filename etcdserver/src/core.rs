//! The seam between the gRPC/HTTP front end and the server core: what a service may ask of
//! the member it runs on. The real implementation is the raft-backed server; tests of the
//! services use a core that applies requests directly.

use std::future::Future;
use std::sync::Arc;

use api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, InternalRaftRequest, PutResponse, RangeResponse,
    ResponseHeader, TxnResponse,
};

use crate::error::ServerError;

/// Request limits set by flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `--max-request-bytes`: the largest request a client may send (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// `--max-txn-ops`: the most compares, or ops in one branch, of a txn (etcd: 128).
    pub max_txn_ops: usize,
    /// `--max-concurrent-streams`: HTTP/2 streams one client connection may have open at once;
    /// more wait at the client (etcd: `math.MaxUint32`).
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            max_concurrent_streams: u32::MAX,
        }
    }
}

/// What applying one committed request produced, for the waiter of the proposal.
#[derive(Debug)]
pub enum Applied {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// `done` fires when the compaction's removal of old rows has finished (etcd waits for it
    /// when the request is `physical`).
    Compaction {
        response: CompactionResponse,
        done: Option<tokio::sync::oneshot::Receiver<()>>,
    },
    /// A lease granted: its id and the TTL granted.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    /// A lease revoked, with its keys.
    LeaseRevoke,
    /// An auth request applied (etcd's `applierV3` auth methods).
    Auth(AuthApplied),
    /// A request whose effect is on the cluster, not on the key space (attributes...).
    Empty,
    // quota
    /// An Alarm request applied: the alarms it listed, raised or cleared.
    Alarms(Vec<api::etcdserverpb::AlarmMember>),
}

/// What applying an auth request produced, beyond success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthApplied {
    /// A change to users, roles or the enabled flag.
    Done,
    /// Authenticate: the token assigned.
    Token(String),
    /// UserGet (the user's roles), UserList, RoleList: names.
    Names(Vec<String>),
    /// RoleGet: the role's permissions.
    Permissions(Vec<api::authpb::Permission>),
    /// AuthStatus.
    Status { enabled: bool, revision: u64 },
}

/// The member a service runs on.
pub trait ServerCore: Send + Sync + 'static {
    /// The key-value store this member applies to.
    fn store(&self) -> &Arc<mvcc::Store>;
    fn cluster_id(&self) -> u64;
    fn member_id(&self) -> u64;
    /// This member's current raft term.
    fn term(&self) -> u64;
    /// The current leader, if this member knows one.
    fn leader_id(&self) -> Option<u64>;
    fn limits(&self) -> Limits;
    /// The member's users, roles and tokens.
    fn auth_store(&self) -> &Arc<auth::AuthStore>;

    // downgrade
    /// The cluster version (`X.Y.0`) once the leader has set one; cores without raft have
    /// none (`/version` then says `not_decided`, as etcd does before it is set).
    fn cluster_version(&self) -> Option<String> {
        None
    }

    /// A header as etcd fills it: cluster and member ids, the raft term and the store's
    /// current revision.
    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.member_id(),
            revision: self.store().current_revision(),
            raft_term: self.term(),
        }
    }

    /// Replicates `req` through raft and returns what applying it produced, or why it could
    /// not be (no leader, timeout, stopped...). The core assigns the request id.
    fn propose(
        &self,
        req: InternalRaftRequest,
    ) -> impl Future<Output = Result<Applied, ServerError>> + Send;

    /// Returns once this member has applied everything committed before the call (etcd's
    /// linearizable read barrier, served by a batched ReadIndex).
    fn read_barrier(&self) -> impl Future<Output = Result<(), ServerError>> + Send;

    /// Returns once this member has applied raft entry `index`, or fails after the request
    /// timeout (a simple auth token names the entry that assigned it).
    fn wait_applied(&self, index: u64) -> impl Future<Output = Result<(), ServerError>> + Send;

    // quota
    /// etcd's quota check before proposing a write costing `cost` bytes (`quotaAlarmer`):
    /// `NoSpace`, after raising the NOSPACE alarm, when it does not fit. Cores without a
    /// quota (the test cores) admit everything.
    fn check_quota(&self, cost: u64) -> impl Future<Output = Result<(), ServerError>> + Send {
        let _ = cost;
        std::future::ready(Ok(()))
    }

    /// Grants a lease of `ttl` seconds with an id the server chooses, for the Lock and Election
    /// services' requests with lease 0 (etcd's `concurrency.NewSession`). Cores without a lessor
    /// (the test cores) refuse.
    fn grant_session_lease(
        &self,
        ttl: i64,
    ) -> impl Future<Output = Result<i64, ServerError>> + Send {
        let _ = ttl;
        std::future::ready(Err(ServerError::Internal(
            "this server core has no lessor".into(),
        )))
    }
}
