//! The etcd server: raft, storage and the v3 gRPC services wired together.
