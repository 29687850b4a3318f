//! The etcdctl command-line client.
