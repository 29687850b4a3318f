//! Raft snapshot files and received backend database files.
