//! What a hash is and how it is computed (etcd's `kvHasher`), and the hashes recorded at each
//! finished compaction (etcd 3.5's `hashStorage`, for the compaction hash check). The store's
//! `HashByRev` is in `hash`.

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::schema::KEY_TABLE;
use crate::Revision;

/// How many compaction hashes a store keeps (etcd's `hashStorageMaxSize`).
pub const COMPACTION_HASHES_KEPT: usize = 10;

/// What `hash_kv` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// crc32c over the key table up to `revision`, as etcd's `HashByRev` computes it.
    pub hash: u32,
    /// The compaction revision the hash accounts for (-1: none).
    pub compact_revision: i64,
    /// The revision hashed.
    pub revision: i64,
    /// The store's current revision.
    pub current_revision: i64,
}

/// etcd's `kvHasher`: feeds key table rows in key order; rows above `revision` are left
/// out, and so are rows at or below `compact_revision` that the compaction at `revision` does
/// not keep (they are scheduled for removal, and may or may not be gone yet).
pub(crate) struct KvHasher<'a> {
    crc: u32,
    compact_revision: i64,
    revision: i64,
    keep: &'a HashSet<Revision>,
}

impl<'a> KvHasher<'a> {
    pub(crate) fn new(compact_revision: i64, revision: i64, keep: &'a HashSet<Revision>) -> Self {
        KvHasher {
            crc: crc32c::crc32c(KEY_TABLE.name().as_bytes()),
            compact_revision,
            revision,
            keep,
        }
    }

    /// Adds one row; false once `k` is above the hashed revision (no later row counts).
    pub(crate) fn write(&mut self, k: &[u8], v: &[u8]) -> bool {
        let Some(kr) = Revision::from_bytes(k) else {
            return true;
        };
        if kr >= Revision::new(self.revision + 1, 0) {
            return false;
        }
        if kr < Revision::new(self.compact_revision + 1, 0)
            && !self.keep.is_empty()
            && !self.keep.contains(&kr)
        {
            return true;
        }
        self.crc = crc32c::crc32c_append(self.crc, k);
        self.crc = crc32c::crc32c_append(self.crc, v);
        true
    }

    pub(crate) fn finish(&self, current_revision: i64) -> KvHash {
        KvHash {
            hash: self.crc,
            compact_revision: self.compact_revision,
            revision: self.revision,
            current_revision,
        }
    }
}

/// The hashes of the last [`COMPACTION_HASHES_KEPT`] finished compactions, each of the key
/// table up to the compaction revision as it was just before (so with the previous compaction
/// revision): every member computes the same ones, since compactions go through raft.
#[derive(Default)]
pub(crate) struct CompactionHashes(Mutex<Vec<KvHash>>);

impl CompactionHashes {
    pub(crate) fn record(&self, hash: KvHash) {
        tracing::info!(
            hash = hash.hash,
            revision = hash.revision,
            compact_revision = hash.compact_revision,
            "storing new hash"
        );
        let mut hashes = self.0.lock();
        hashes.retain(|h| h.revision != hash.revision);
        hashes.push(hash);
        hashes.sort_by_key(|h| std::cmp::Reverse(h.revision));
        hashes.truncate(COMPACTION_HASHES_KEPT);
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<KvHash> {
        self.0.lock().clone()
    }

    pub(crate) fn at(&self, revision: i64) -> Option<KvHash> {
        self.0
            .lock()
            .iter()
            .find(|h| h.revision == revision)
            .copied()
    }
}
