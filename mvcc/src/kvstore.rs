//! The multi-version store's state: the backend, the key index, the revisions, the
//! consistent index; opening it from the backend and replacing its contents with a snapshot.
//! Reads and writes are in `kvstore_txn`, compaction in `kvstore_compaction`, hashing in
//! `hash`; the watchers learn of each revision through [`RevisionObserver`].
//!
//! Invariants:
//! - one write transaction at a time (`write_lock`); it holds the backend's batch for its
//!   whole life, so a backend commit contains whole transactions, including the consistent
//!   index;
//! - a transaction writes the backend and the index first and publishes its revision last,
//!   inside [`RevisionObserver::publish`], so readers (who read at `current`) never see half
//!   a transaction and watchers get every revision exactly once;
//! - `compact` moves only under `write_lock`, and before any backend row is deleted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BatchTx, EngineView};
use parking_lot::{Mutex, RwLock};
use prost::Message;

use crate::error::Corruption;
use crate::index::TreeIndex;
use crate::key_index::KeyIndex;
use crate::revision::is_tombstone;
use crate::schema::{
    KEY_TABLE, META_CONSISTENT_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE,
    META_TERM,
};
use crate::{Event, KeyValue, Result, Revision};

/// Key table rows read per backend read lock when rebuilding the index.
const RESTORE_CHUNK: usize = 10_000;

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Backend rows deleted per batch while compacting (etcd: 1000).
    pub compaction_batch_limit: usize,
    /// Pause between compaction batches, so writers get the backend (etcd: 10 ms).
    pub compaction_batch_pause: Duration,
    /// How often unsynced and slow (victim) watchers are retried (etcd: 100 ms).
    pub watch_sync_interval: Duration,
    /// Backend rows read per catch-up round of unsynced watchers.
    pub watch_sync_batch: usize,
    /// Responses buffered per watch stream before its watchers are set aside (etcd: 128).
    pub watch_stream_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            compaction_batch_limit: 1000,
            compaction_batch_pause: Duration::from_millis(10),
            watch_sync_interval: Duration::from_millis(100),
            watch_sync_batch: 10_000,
            watch_stream_capacity: 128,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Revs {
    /// Revision of the last completed write transaction (1 on an empty store).
    pub current: i64,
    /// Main revision of the last compaction, -1 when none.
    pub compact: i64,
}

/// Who learns of the store's changes (the watchers). Each call runs the store's own update
/// inside, so the observer can make it atomic with its own bookkeeping.
pub(crate) trait RevisionObserver: Send + Sync {
    /// A write transaction made `events` at `rev`; `make_visible` publishes the revision to
    /// readers.
    fn publish(&self, rev: i64, events: Vec<Event>, make_visible: &mut dyn FnMut());
    /// `swap` replaces the store's contents (a snapshot was installed).
    fn replace(&self, swap: &mut dyn FnMut());
}

pub(crate) struct KvStore {
    pub backend: Arc<Backend>,
    pub index: TreeIndex,
    pub config: StoreConfig,
    pub write_lock: Mutex<()>,
    /// Held by a running compaction job, so jobs remove rows one after the other.
    pub compaction_lock: Mutex<()>,
    /// Bumped by `restore`: a compaction job or a watcher catch-up round that read the older
    /// contents must not go on.
    pub epoch: AtomicU64,
    pub revs: RwLock<Revs>,
    pub observer: Arc<dyn RevisionObserver>,
    consistent_index: AtomicU64,
    consistent_term: AtomicU64,
}

fn meta_u64(value: Option<Vec<u8>>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => Ok(v
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Corruption::MetaInteger)?),
    }
}

pub(crate) fn meta_rev(value: Option<Vec<u8>>) -> Result<Option<i64>> {
    Ok(value
        .map(|v| {
            Revision::from_bytes(&v)
                .map(|r| r.main)
                .ok_or(Corruption::MetaRevision)
        })
        .transpose()?)
}

pub(crate) fn decode_kv(revision: Revision, value: &[u8]) -> Result<KeyValue> {
    Ok(KeyValue::decode(value).map_err(|source| Corruption::Value { revision, source })?)
}

impl KvStore {
    /// Opens the store on `backend`: rebuilds the key index from the key table and restores
    /// the compaction state. Returns the compaction a crash interrupted, for the caller to
    /// finish before anything else uses the store.
    pub(crate) fn open(
        backend: Arc<Backend>,
        config: StoreConfig,
        observer: Arc<dyn RevisionObserver>,
    ) -> Result<(KvStore, Option<i64>)> {
        let (index, meta) = load(&backend)?;
        let Loaded {
            consistent_index,
            term,
            current,
            compact,
            scheduled_compact,
        } = meta;
        tracing::info!(current, compact, consistent_index, "mvcc store restored");
        let store = KvStore {
            backend,
            index,
            config,
            write_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            epoch: AtomicU64::new(0),
            revs: RwLock::new(Revs { current, compact }),
            observer,
            consistent_index: AtomicU64::new(consistent_index),
            consistent_term: AtomicU64::new(term),
        };
        Ok((store, scheduled_compact))
    }

    /// The raft index and term of the last entry applied.
    pub(crate) fn consistent_index(&self) -> (u64, u64) {
        let _w = self.write_lock.lock();
        (
            self.consistent_index.load(Ordering::Acquire),
            self.consistent_term.load(Ordering::Acquire),
        )
    }

    /// Whether raft entry `index` was applied already. The caller holds the write lock.
    pub(crate) fn applied(&self, index: u64) -> bool {
        index <= self.consistent_index.load(Ordering::Acquire)
    }

    /// Records entry `index` of `term` as applied, in the batch of its changes. The caller
    /// holds the write lock.
    pub(crate) fn set_consistent_index(&self, tx: &mut BatchTx<'_>, index: u64, term: u64) {
        crate::offline::write_consistent_index(tx, index, term);
        self.consistent_index.store(index, Ordering::Release);
        self.consistent_term.store(term, Ordering::Release);
    }

    /// Replaces the backend's contents with `source`'s (see [`Backend::replace_contents`])
    /// and reloads the index, revisions, compaction state and consistent index from it.
    /// Returns the compaction the snapshot had scheduled but not finished. The caller holds
    /// the write lock.
    pub(crate) fn restore_locked(&self, source: &dyn EngineView) -> Result<Option<i64>> {
        // Before the contents change: compaction batches check it under the backend batch.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.backend.replace_contents(source)?;
        let (index, meta) = load(&self.backend)?;
        let mut index = Some(index);
        self.observer.replace(&mut || {
            if let Some(index) = index.take() {
                self.index.replace(index);
            }
            *self.revs.write() = Revs {
                current: meta.current,
                compact: meta.compact,
            };
            self.consistent_index
                .store(meta.consistent_index, Ordering::Release);
            self.consistent_term.store(meta.term, Ordering::Release);
        });
        tracing::info!(
            current = meta.current,
            compact = meta.compact,
            "mvcc store restored from a snapshot"
        );
        Ok(meta.scheduled_compact)
    }
}

/// What [`load`] finds in the backend besides the index.
struct Loaded {
    consistent_index: u64,
    term: u64,
    current: i64,
    compact: i64,
    /// A compaction that was scheduled but not finished.
    scheduled_compact: Option<i64>,
}

fn load(backend: &Backend) -> Result<(TreeIndex, Loaded)> {
    let (consistent_index, term, finished, scheduled) = {
        let r = backend.read();
        (
            meta_u64(r.get(META_TABLE, META_CONSISTENT_INDEX)?)?,
            meta_u64(r.get(META_TABLE, META_TERM)?)?,
            meta_rev(r.get(META_TABLE, META_FINISHED_COMPACT)?)?,
            meta_rev(r.get(META_TABLE, META_SCHEDULED_COMPACT)?)?,
        )
    };
    let index = TreeIndex::default();
    let last = restore_index(backend, &index)?;
    let compact = finished.unwrap_or(-1);
    // Compaction may have removed every row up to its revision.
    let current = last.max(1).max(compact);
    Ok((
        index,
        Loaded {
            consistent_index,
            term,
            current,
            compact,
            scheduled_compact: scheduled.filter(|&s| s > compact),
        },
    ))
}

/// Rebuilds the index from the key table; returns the largest main revision seen (0: none).
fn restore_index(backend: &Backend, index: &TreeIndex) -> Result<i64> {
    let mut start = Vec::new();
    let mut last = 0;
    loop {
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        backend.read().scan(KEY_TABLE, &start, None, |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            rows.len() < RESTORE_CHUNK
        })?;
        let full = rows.len() == RESTORE_CHUNK;
        let mut next_start = None;
        for (k, v) in rows {
            let rev =
                Revision::from_bytes(&k).ok_or_else(|| Corruption::NotARevision(k.clone()))?;
            let kv = decode_kv(rev, &v)?;
            last = rev.main;
            let known = index.with_key_mut(&kv.key, |ki| {
                let Some(ki) = ki else { return false };
                if !is_tombstone(&k) {
                    ki.put(rev);
                } else if !ki.tombstone(rev) {
                    tracing::warn!(%rev, "tombstone of a deleted key while restoring");
                }
                true
            });
            // A key first seen through a tombstone was deleted before the last compaction.
            if !known && !is_tombstone(&k) {
                index.restore(
                    kv.key,
                    KeyIndex::restore(Revision::new(kv.create_revision, 0), rev, kv.version),
                );
            }
            next_start = Some(k);
        }
        match next_start {
            Some(mut k) if full => {
                k.push(0);
                start = k;
            }
            _ => return Ok(last),
        }
    }
}
