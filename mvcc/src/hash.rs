//! etcd's `HashByRev`: a checksum of the key table up to a revision, which members holding
//! the same history agree on (the corruption checks compare them), and the hashes recorded at
//! each finished compaction (etcd 3.5's `hashStorage`, for the compaction hash check).

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::kvstore::KvStore;
use crate::schema::KEY_TABLE;
use crate::{Error, Result, Revision};

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
        hashes.sort_by(|a, b| b.revision.cmp(&a.revision));
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

impl KvStore {
    /// etcd's `HashByRev`: crc32c of the key table up to `rev` (0: current), skipping rows a
    /// compaction has scheduled for removal.
    pub(crate) fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        let (view, keep, revs, rev) = {
            let _w = self.write_lock.lock();
            let revs = *self.revs.read();
            if rev > 0 && rev <= revs.compact {
                return Err(Error::Compacted);
            }
            if rev > revs.current {
                return Err(Error::FutureRevision);
            }
            let rev = if rev <= 0 { revs.current } else { rev };
            let keep = self.index.keep(rev);
            (self.backend.committed_view()?, keep, revs, rev)
        };
        let mut hasher = KvHasher::new(revs.compact, rev, &keep);
        view.scan(KEY_TABLE, &[], None, &mut |k, v| hasher.write(k, v))?;
        Ok(hasher.finish(revs.current))
    }

    /// The hash recorded by the compaction at `rev` (etcd 3.5's `HashByRev` answers with it
    /// when asked for that revision), with the current revision as of now.
    pub(crate) fn compaction_hash(&self, rev: i64) -> Option<KvHash> {
        let mut hash = self.compaction_hashes.at(rev)?;
        hash.current_revision = self.revs.read().current;
        Some(hash)
    }
}
