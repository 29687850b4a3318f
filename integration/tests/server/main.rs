//! Server behaviour tests: each body runs against Debian's etcd 3.4 (the control) and against our
//! `etcd` (see `integration::server_tests!`). One test binary for all of them, so the workspace
//! links it once.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod auth_permissions;
mod corruption;
mod downgrade;
mod etcdctl;
mod faults;
mod kv;
mod leases;
mod limits;
mod member;
mod membership_changes;
mod quota;
mod recipes;
mod tls;
mod tls_auth;
