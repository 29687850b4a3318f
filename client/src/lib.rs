//! Async etcd v3 client.
