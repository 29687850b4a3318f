//! etcd's `snapshot status` of a bbolt file (3.4's `snapshot.v3Manager.Status`, 3.5's
//! etcdutl): a CRC-32C over every bucket's name and its keys and values in bbolt's order, the
//! last revision of the `key` bucket, the count of keys in all buckets, and `tx.Size()`.

use std::path::Path;

use bbolt::Value;

use super::{open_checked, MigrateError};
use crate::SnapshotStatus;

/// `snapshot status` of a real etcd's database file, as etcd computes it.
pub fn bbolt_status(path: &Path) -> Result<SnapshotStatus, MigrateError> {
    let db = open_checked(path)?;
    let mut hash = 0u32;
    let mut revision = 0i64;
    let mut total_key = 0u64;
    db.root().for_each(|name, value| {
        let Value::Bucket(bucket) = value else {
            return Err(MigrateError::NotABucket(
                String::from_utf8_lossy(name).into_owned(),
            ));
        };
        hash = crc32c::crc32c_append(hash, name);
        let is_key_bucket = name == b"key";
        bucket.for_each(|key, value| {
            hash = crc32c::crc32c_append(hash, key);
            // A nested bucket's value is nil to etcd's ForEach: nothing to hash.
            if let Value::Data(data) = value {
                hash = crc32c::crc32c_append(hash, data);
            }
            if is_key_bucket {
                revision = main_revision(key)?;
            }
            total_key += 1;
            Ok::<(), MigrateError>(())
        })
    })?;
    Ok(SnapshotStatus {
        hash,
        revision,
        total_key,
        total_size: db.size(),
    })
}

/// The main revision of a `key` bucket key (etcd's `bytesToRev(k).main`).
fn main_revision(key: &[u8]) -> Result<i64, MigrateError> {
    mvcc::Revision::from_bytes(key)
        .map(|rev| rev.main)
        .ok_or_else(|| MigrateError::BadEntry {
            bucket: "key",
            key: format!("{key:x?}"),
            what: "not a revision".into(),
        })
}
