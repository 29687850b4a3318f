//! Load generator for etcd v3 servers.
