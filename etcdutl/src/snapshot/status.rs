//! `snapshot status` (etcd's `v3Manager.Status`): hash, revision, total keys and total size of
//! a snapshot file, for our format as etcd defines them for a bbolt file.

use std::io::Read as _;
use std::path::Path;

use etcdserver::restore::TABLES;

use super::file::{Format, OpenError, SnapshotFile};
use crate::migrate::{self, MigrateError};
use crate::SnapshotStatus;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Open(#[from] OpenError),
    /// etcd's text for a database that fails `tx.Check()`; ours has one error at most.
    #[error("snapshot file integrity check failed. 1 errors found.\n{0}")]
    Integrity(backend::Error),
    /// Neither our snapshot format nor a bbolt file (bbolt's own text for that).
    #[error("invalid database")]
    NotADatabase,
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// The status of the snapshot file at `path`, in either format.
pub fn status(path: &Path) -> Result<SnapshotStatus, StatusError> {
    std::fs::metadata(path).map_err(|e| OpenError::new("stat", path, e))?;
    let mut snapshot = SnapshotFile::open(path, "open")?;
    match snapshot.format {
        Format::Ours => our_status(&mut snapshot),
        Format::Other => {
            if !migrate::is_bbolt(path).map_err(|e| OpenError::new("read", path, e))? {
                return Err(StatusError::NotADatabase);
            }
            Ok(migrate::bbolt_status(path)?)
        }
    }
}

/// etcd's definition over our tables: CRC-32C of each table's name followed by its keys and
/// values, tables in the backend's order; the highest main revision in `key`; the entries of
/// every table; the size of the database part of the file.
fn our_status(snapshot: &mut SnapshotFile) -> Result<SnapshotStatus, StatusError> {
    let total_size = snapshot.db_len;
    let mut hash = 0u32;
    let mut next_table = 0usize;
    let mut revision = 0i64;
    let mut total_key = 0u64;
    let key_table = TABLES
        .iter()
        .position(|t| *t == mvcc::KEY_TABLE)
        .expect("the server's tables include mvcc's key table");
    let mut names_up_to = |hash: &mut u32, position: usize| {
        while next_table <= position {
            *hash = crc32c::crc32c_append(*hash, TABLES[next_table].name().as_bytes());
            next_table += 1;
        }
    };
    let mut reader = (&mut snapshot.file).take(total_size);
    backend::read_snapshot(&mut reader, TABLES.len(), &mut |tag, key, value| {
        let position = usize::from(tag);
        names_up_to(&mut hash, position);
        hash = crc32c::crc32c_append(hash, key);
        hash = crc32c::crc32c_append(hash, value);
        if position == key_table {
            if let Some(rev) = mvcc::Revision::from_bytes(key) {
                revision = revision.max(rev.main);
            }
        }
        total_key += 1;
    })
    .map_err(StatusError::Integrity)?;
    names_up_to(&mut hash, TABLES.len() - 1);
    Ok(SnapshotStatus {
        hash,
        revision,
        total_key,
        total_size,
    })
}
