//! The `etcd` binary end to end: flags, leases, membership and reconfiguration. One test binary, so
//! the workspace links it once.

#[path = "../common/mod.rs"]
mod common;

mod etcd_cli;
mod lease;
mod member;
mod reconfig;
