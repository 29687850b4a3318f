//! Our etcdctl against a running server, compared with Debian's etcdctl 3.4 line for line. One test
//! binary, so the workspace links it once.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod cluster;
mod kv;
mod lease;
mod recipes;
mod tls;
mod watch;
