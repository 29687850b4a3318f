//! Raft wire messages (etcd raftpb names and field numbers) as prost types.
