//! etcd's `HashByRev`: a checksum of the key table up to a revision, which members holding
//! the same history agree on (the corruption checks compare them); the hashes compactions
//! recorded are kept in `hash_storage`.

use crate::hash_storage::{KvHash, KvHasher};
use crate::kvstore::KvStore;
use crate::schema::KEY_TABLE;
use crate::{Error, Result};

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
