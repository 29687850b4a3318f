//! The etcd server (etcd's `server/etcdserver`, `server/embed` and `etcdmain`): raft, the WAL,
//! snapshots and the mvcc store wired together behind etcd's v3 gRPC API; builds the `etcd`
//! binary.

pub mod apply;
mod authority;
mod compactor;
pub mod config;
pub mod convert;
pub mod core;
pub mod election_service;
pub mod error;
pub mod http;
mod join;
pub mod kv_service;
mod learner_guard;
pub mod lease_service;
pub mod lessor;
pub mod lock_service;
mod maintenance;
pub mod membership;
pub mod metrics;
mod metrics_hooks;
mod peer_post;
mod raft_loop;
mod reconfig;
mod schema;
pub mod serve;
pub mod server;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod watch_service;

pub use crate::config::AutoCompaction;
pub use crate::config::{CLUSTER_VERSION, SERVER_VERSION};
pub use crate::core::{Applied, Limits, ServerCore};
pub use crate::error::ServerError;
pub use crate::serve::{run, run_server, ListenAddrs, RunError};
pub use crate::server::{EtcdServer, ServerParams, SNAPSHOT_CATCH_UP_ENTRIES};
