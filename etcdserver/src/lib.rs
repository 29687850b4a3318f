//! The etcd server (etcd's `server/etcdserver`, `server/embed` and `etcdmain`): raft, the WAL,
//! snapshots and the mvcc store wired together behind etcd's v3 gRPC API; builds the `etcd`
//! binary.
//!
//! Where things are, by etcd's names:
//! - `server/`: the member (etcd's `etcdserver`): bootstrap, the raft loop, apply, the
//!   proposal and read waiters, membership and reconfiguration, leases, snapshots, compaction.
//! - `v3rpc/`: the gRPC services (etcd's `api/v3rpc`), one file per service, and the one place
//!   where the server's errors become etcd's gRPC statuses.
//! - `http/`: the client HTTP endpoints (health, version, metrics) and the peer routes.
//! - `embed/`: listeners and serving (etcd's `embed`), with the `:authority` filter.

pub mod config;
mod convert;
mod core;
mod embed;
mod error;
mod http;
mod metrics;
// restore
pub mod restore;
mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transport;
mod v3rpc;

pub use crate::config::AutoCompaction;
pub use crate::config::SERVER_VERSION;
pub use crate::core::{Applied, AuthApplied, Limits, ServerCore};
pub use crate::embed::{run, run_server, ListenAddrs, RunError};
pub use crate::error::ServerError;
pub use crate::http::peer::router as peer_router;
pub use crate::server::membership::{Member, Membership, MembershipError};
pub use crate::server::{
    EtcdServer, JoinError, ServerParams, StartError, Threads, SNAPSHOT_CATCH_UP_ENTRIES,
};
#[cfg(any(test, feature = "testing"))]
pub use crate::v3rpc::test_server::TestServer;
