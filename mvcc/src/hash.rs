//! etcd's `HashByRev`: a checksum of the key table up to a revision, which members holding
//! the same history agree on (the corruption check compares them).

use crate::kvstore::KvStore;
use crate::schema::KEY_TABLE;
use crate::{Error, Result, Revision};

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
        let upper = Revision::new(rev + 1, 0);
        let lower = Revision::new(revs.compact + 1, 0);
        let mut crc = crc32c::crc32c(KEY_TABLE.name().as_bytes());
        view.scan(KEY_TABLE, &[], None, &mut |k, v| {
            let Some(kr) = Revision::from_bytes(k) else {
                return true;
            };
            if kr >= upper {
                return false;
            }
            if kr < lower && !keep.is_empty() && !keep.contains(&kr) {
                return true;
            }
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
            true
        })?;
        Ok(KvHash {
            hash: crc,
            compact_revision: revs.compact,
            revision: rev,
            current_revision: revs.current,
        })
    }
}
