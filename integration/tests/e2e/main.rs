//! End-to-end tests of whole clusters, the real clients (etcdctl 3.4, python etcd3), network faults and
//! the on-disk formats against a real etcd. One test binary, so the workspace links it once.

#[path = "../common/mod.rs"]
mod common;

mod client_python;
mod client_real_etcd;
mod faults_network;
mod lifecycle;
mod make_mirror;
mod migrate_etcd34;
mod single_node;
mod snap_etcd_compat;
mod snapshot_restore;
mod three_nodes;
mod tls;
mod traffic;
mod wal_etcd_compat;
