//! The v3 gRPC services (etcd's `server/etcdserver/api/v3rpc`): one file per service, the
//! learner guard in front of them, and the mapping of the server's errors to etcd's statuses.

pub(crate) mod auth;
pub(crate) mod cluster;
pub(crate) mod election;
pub(crate) mod identity;
pub(crate) mod kv;
pub(crate) mod learner_guard;
pub(crate) mod lease;
pub(crate) mod lock;
pub(crate) mod maintenance;
// downgrade (request limits)
pub(crate) mod message_size;
pub(crate) mod permission;
pub(crate) mod status;
#[cfg(any(test, feature = "testing"))]
pub mod test_server;
pub(crate) mod watch;
