//! The etcd server (etcd's `server/etcdserver`, `server/embed` and `etcdmain`): raft, the WAL,
//! snapshots and the mvcc store wired together behind etcd's v3 gRPC API; builds the `etcd`
//! binary.

pub mod config;
pub mod core;
pub mod error;
pub mod http;
pub mod metrics;

pub use crate::core::{Applied, Limits, ServerCore};
pub use crate::error::ServerError;
