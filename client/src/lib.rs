//! Async etcd v3 client in the spirit of Go's clientv3: several endpoints with failover,
//! retries of safe requests, dial and request timeouts, username/password auth with token
//! refresh, and every service of the v3 API (KV, Watch, Lease, Cluster, Maintenance, Auth,
//! Lock, Election), plus the client-side lock and election recipes etcdctl uses.
//!
//! Requests and responses are the `api` crate's generated types, so every option etcd has is
//! reachable; helpers cover the common cases.

#[macro_use]
mod client;
pub mod concurrency;
mod error;
mod kv;
mod lease;
mod maintenance;
mod services;
mod tls;
mod watch;

pub use api;
pub use client::{normalize_endpoint, Client, ClientOptions};
pub use error::{go_code_name, messages, Error, Result};
pub use kv::{prefix_range_end, txn, FROM_KEY_RANGE_END};
pub use lease::{KeepAlive, LeaseKeepAliveStream};
pub use tls::{TlsError, TlsOptions};
pub use watch::{WatchOptions, WatchStream, Watcher};
