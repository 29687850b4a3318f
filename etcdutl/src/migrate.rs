//! Importing a real etcd's bbolt database (owner: the migration part of issue 14; see
//! /work/ops-api.md). The bodies are placeholders until that part lands.

use std::path::Path;

use crate::SnapshotStatus;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What an import copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub keys: u64,
    pub revision: i64,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
}

/// Whether `path` is a bbolt file (its first meta page's magic), with or without the SHA-256
/// trailer a `snapshot save` appends.
pub fn is_bbolt(path: &Path) -> std::io::Result<bool> {
    let _ = path;
    todo!("migration part")
}

/// `snapshot status` of a real etcd's database file, as etcd computes it.
pub fn bbolt_status(path: &Path) -> Result<SnapshotStatus, MigrateError> {
    let _ = path;
    todo!("migration part")
}

/// Copies every key revision, the compaction point, leases, users, roles, auth state and alarms
/// of the bbolt file at `src` into `dst`, in our encoding; membership is left out (restore
/// writes the new cluster's).
pub fn import_bbolt(src: &Path, dst: &backend::Backend) -> Result<ImportSummary, MigrateError> {
    let _ = (src, dst);
    todo!("migration part")
}
