//! Compaction: the index forgets revisions at once, the backend rows go in batches on a job
//! of their own, and a crash in between is resumed at the next open.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::hash_storage::KvHasher;
use crate::kvstore::{meta_rev, KvStore};
use crate::schema::{KEY_TABLE, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE};
use crate::{Error, Result, Revision};

/// A compaction whose index part is done; [`Compaction::run`] removes the backend rows.
pub struct Compaction {
    kv: Arc<KvStore>,
    rev: i64,
    /// The compaction revision before this one (-1: none), which the recorded hash accounts for.
    prev_compact: i64,
    keep: HashSet<Revision>,
    epoch: u64,
}

impl KvStore {
    /// Compacts the index at `rev` and records the compaction; the returned job removes the
    /// obsolete backend rows in batches (run it on any thread; writes go on meanwhile).
    pub(crate) fn compact(self: &Arc<Self>, rev: i64) -> Result<Compaction> {
        let _w = self.write_lock.lock();
        {
            let revs = self.revs.read();
            if rev <= revs.compact {
                return Err(Error::Compacted);
            }
            if rev > revs.current {
                return Err(Error::FutureRevision);
            }
        }
        self.schedule_compaction(rev)
    }

    /// Compacts the index at `rev` and durably records that rows up to it are to go. The
    /// caller holds the write lock (or is the only user, at open).
    pub(crate) fn schedule_compaction(self: &Arc<Self>, rev: i64) -> Result<Compaction> {
        let prev_compact = std::mem::replace(&mut self.revs.write().compact, rev);
        self.backend.batch_tx().put(
            META_TABLE,
            META_SCHEDULED_COMPACT.to_vec(),
            Revision::new(rev, 0).to_bytes().to_vec(),
        );
        // The schedule must be durable before any row goes, so a crash resumes it.
        self.backend.force_commit()?;
        let keep = self.index.compact(rev);
        Ok(Compaction {
            kv: self.clone(),
            rev,
            prev_compact,
            keep,
            epoch: self.epoch.load(Ordering::Acquire),
        })
    }
}

impl Compaction {
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Removes rows at or below the compaction revision that nothing can read any more, in
    /// batches with the backend released in between; records the compaction as finished, and
    /// its hash (etcd 3.5: the rows it walks are exactly those `HashByRev(rev)` hashes, so the
    /// hash costs no extra read).
    pub fn run(self) -> Result<()> {
        let _one_at_a_time = self.kv.compaction_lock.lock();
        let end = Revision::new(self.rev + 1, 0).to_bytes();
        let batch = self.kv.config.compaction_batch_limit.max(1);
        let mut start = Vec::new();
        let mut removed = 0usize;
        let mut hasher = KvHasher::new(self.prev_compact, self.rev, &self.keep);
        loop {
            let mut keys: Vec<Vec<u8>> = Vec::with_capacity(batch);
            self.kv
                .backend
                .read()
                .scan(KEY_TABLE, &start, Some(&end), |k, v| {
                    hasher.write(k, v);
                    keys.push(k.to_vec());
                    keys.len() < batch
                })?;
            let done = keys.len() < batch;
            {
                let mut tx = self.kv.backend.batch_tx();
                if self.kv.epoch.load(Ordering::Acquire) != self.epoch {
                    tracing::info!(
                        rev = self.rev,
                        "compaction abandoned: the store was restored"
                    );
                    return Ok(());
                }
                for k in &keys {
                    let keep = Revision::from_bytes(k).is_some_and(|r| self.keep.contains(&r));
                    if !keep {
                        tx.delete(KEY_TABLE, k.clone());
                        removed += 1;
                    }
                }
                if done {
                    // Jobs may be run out of order; the record only moves forward.
                    let finished = meta_rev(
                        self.kv
                            .backend
                            .read()
                            .get(META_TABLE, META_FINISHED_COMPACT)?,
                    )?;
                    if finished.is_none_or(|f| f < self.rev) {
                        tx.put(
                            META_TABLE,
                            META_FINISHED_COMPACT.to_vec(),
                            Revision::new(self.rev, 0).to_bytes().to_vec(),
                        );
                    }
                }
            }
            if done {
                break;
            }
            if let Some(last) = keys.pop() {
                start = last;
                start.push(0);
            }
            if !self.kv.config.compaction_batch_pause.is_zero() {
                std::thread::sleep(self.kv.config.compaction_batch_pause);
            }
        }
        let hash = hasher.finish(self.kv.revs.read().current);
        tracing::info!(
            rev = self.rev,
            removed,
            hash = hash.hash,
            "compaction finished"
        );
        self.kv.compaction_hashes.record(hash);
        Ok(())
    }
}
