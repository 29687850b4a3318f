//! Importing a real etcd's bbolt database (owner: the migration part of issue 14; see
//! /work/ops-api.md): what `snapshot status` reports of one, and the copy of its buckets into
//! an etcd-rs backend, whose tables keep etcd's names, keys and values.

mod import;
mod status;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use import::import_bbolt;
pub use status::bbolt_status;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a bbolt database, or a page of it cannot be read.
    #[error("{0}")]
    Bbolt(#[from] bbolt::Error),
    /// bbolt's `tx.Check()` found errors (etcd's `snapshot status` message).
    #[error("snapshot file integrity check failed. {} errors found.\n{}", .0.len(), .0.join("\n"))]
    Integrity(Vec<String>),
    /// A top-level key that is not a bucket (etcd's `snapshot status` message).
    #[error("cannot get hash of bucket {0}")]
    NotABucket(String),
    /// An entry etcd would not have written: the import stops rather than copy it.
    #[error("bucket {bucket}: entry {key:?}: {what}")]
    BadEntry {
        bucket: &'static str,
        key: String,
        what: String,
    },
    #[error("{0}")]
    Backend(#[from] backend::Error),
    #[error("the destination backend has no table {0}")]
    NoTable(&'static str),
}

/// What an import copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows of the `key` bucket: every revision of every key, tombstones included.
    pub keys: u64,
    /// The last revision in the `key` bucket (0 when it is empty).
    pub revision: i64,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
}

/// Bytes of a bbolt file bbolt reads its first meta page from.
const META_PROBE: usize = 32;

/// Whether `path` is a bbolt file (its first meta page's magic), with or without the SHA-256
/// trailer a `snapshot save` appends.
pub fn is_bbolt(path: &Path) -> std::io::Result<bool> {
    let mut head = Vec::with_capacity(META_PROBE);
    File::open(path)?
        .take(META_PROBE as u64)
        .read_to_end(&mut head)?;
    Ok(bbolt::has_magic(&head))
}

/// Opens the file and runs bbolt's `tx.Check()` on it, as etcd does before it reads one.
fn open_checked(path: &Path) -> Result<bbolt::Db, MigrateError> {
    let db = bbolt::Db::open(path)?;
    let errors = db.check();
    if errors.is_empty() {
        Ok(db)
    } else {
        Err(MigrateError::Integrity(errors))
    }
}
