//! An offline tool that damages a stopped member's data the way a bad disk or a bug would,
//! silently: the value of one key's newest revision is rewritten in the backend's `key`
//! table, and nothing else changes (the consistent index, the revisions, the WAL). The member
//! restarts as if nothing happened, but its `HashKV` no longer matches its peers'; the
//! corruption checks are what must notice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backend::{Backend, BackendConfig};
use prost::Message;

/// Why the data could not be damaged.
#[derive(Debug, thiserror::Error)]
pub enum DamageError {
    #[error("no backend at {0} (is this a member's data dir?)")]
    NoBackend(PathBuf),
    #[error("backend: {0}")]
    Backend(#[from] backend::Error),
    #[error("row {0:?} of the key table is not a revision")]
    NotARevision(Vec<u8>),
    #[error("value at revision {revision}: {source}")]
    Decode {
        revision: i64,
        source: prost::DecodeError,
    },
    #[error("no live revision of key {0:?} in the key table")]
    KeyNotFound(String),
}

/// What was damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The main revision whose value was rewritten.
    pub revision: i64,
    pub old_value: Vec<u8>,
}

/// The backend file of a member's data dir (etcd's `member/snap/db`).
pub fn backend_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Rewrites the value of `key`'s newest revision to `value` in the stopped member's data dir,
/// keeping everything else (its create/mod revision, version, lease, the consistent index).
pub fn damage_latest_value(
    data_dir: &Path,
    key: &[u8],
    value: &[u8],
) -> Result<Damaged, DamageError> {
    let path = backend_path(data_dir);
    if !path.is_file() {
        return Err(DamageError::NoBackend(path));
    }
    let backend = Arc::new(Backend::open(
        &path,
        BackendConfig::default(),
        &mvcc::TABLES,
    )?);
    let mut newest: Option<(Vec<u8>, mvcc::KeyValue)> = None;
    let mut failure = None;
    backend.read().scan(mvcc::KEY_TABLE, &[], None, |k, v| {
        let Some(rev) = mvcc::Revision::from_bytes(k) else {
            failure = Some(DamageError::NotARevision(k.to_vec()));
            return false;
        };
        match mvcc::KeyValue::decode(v) {
            Ok(kv) if kv.key == key => {
                // A deletion ends the key's generation: only a later put counts.
                newest = (!mvcc::is_tombstone(k)).then(|| (k.to_vec(), kv));
            }
            Ok(_) => {}
            Err(source) => {
                failure = Some(DamageError::Decode {
                    revision: rev.main,
                    source,
                });
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let Some((row, mut kv)) = newest else {
        return Err(DamageError::KeyNotFound(
            String::from_utf8_lossy(key).into_owned(),
        ));
    };
    let damaged = Damaged {
        revision: kv.mod_revision,
        old_value: std::mem::replace(&mut kv.value, value.to_vec()),
    };
    backend
        .batch_tx()
        .put(mvcc::KEY_TABLE, row, kv.encode_to_vec());
    backend.force_commit()?;
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_the_newest_live_value_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = backend_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (before, ci) = {
            let backend =
                Arc::new(Backend::open(&path, BackendConfig::default(), &mvcc::TABLES).unwrap());
            let store = mvcc::Store::open(backend, mvcc::StoreConfig::default()).unwrap();
            for (i, v) in ["a", "b", "c"].iter().enumerate() {
                store.apply(i as u64 + 1, 1, |t| {
                    t.put(mvcc::PutRequest::new("k", *v)).unwrap();
                    t.put(mvcc::PutRequest::new("other", *v)).unwrap();
                });
            }
            store.commit().unwrap();
            (store.hash_kv(0).unwrap(), store.consistent_index())
        };
        let damaged = damage_latest_value(dir.path(), b"k", b"rot").unwrap();
        assert_eq!(
            damaged,
            Damaged {
                revision: 4,
                old_value: b"c".to_vec()
            }
        );

        let backend =
            Arc::new(Backend::open(&path, BackendConfig::default(), &mvcc::TABLES).unwrap());
        let store = mvcc::Store::open(backend, mvcc::StoreConfig::default()).unwrap();
        assert_eq!(store.consistent_index(), ci);
        assert_eq!(store.current_revision(), before.current_revision);
        let kv = store
            .range(&mvcc::RangeRequest::key("k"))
            .unwrap()
            .kvs
            .pop()
            .unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision, kv.version),
            (&b"rot"[..], 4, 3)
        );
        assert_ne!(store.hash_kv(0).unwrap().hash, before.hash);
        assert_eq!(store.hash_kv(3).unwrap().hash, {
            // Revisions before the damaged one hash as before: compare with a fresh copy.
            let fresh = mvcc::Store::open(
                Arc::new(Backend::in_memory(BackendConfig::default(), &mvcc::TABLES).unwrap()),
                mvcc::StoreConfig::default(),
            )
            .unwrap();
            for (i, v) in ["a", "b"].iter().enumerate() {
                fresh.apply(i as u64 + 1, 1, |t| {
                    t.put(mvcc::PutRequest::new("k", *v)).unwrap();
                    t.put(mvcc::PutRequest::new("other", *v)).unwrap();
                });
            }
            fresh.hash_kv(3).unwrap().hash
        });
        // The tool opens the file itself: the store must let it go first.
        drop(store);
        assert!(matches!(
            damage_latest_value(dir.path(), b"missing", b"x"),
            Err(DamageError::KeyNotFound(_))
        ));
        assert!(matches!(
            damage_latest_value(&dir.path().join("nowhere"), b"k", b"x"),
            Err(DamageError::NoBackend(_))
        ));
    }
}
