//! The multi-version store: reads at any uncompacted revision, write transactions that commit
//! all their changes at one revision, compaction, hashing and the consistent index.
//!
//! Invariants:
//! - one [`WriteTxn`] at a time (`write_lock`); it holds the backend's batch for its whole life,
//!   so a backend commit contains whole transactions, including the consistent index;
//! - a transaction writes the backend and the index first and publishes its revision last, under
//!   the watch hub lock, so readers (who read at `current`) never see half a transaction and
//!   watchers get every revision exactly once;
//! - `compact` moves only under `write_lock`, and before any backend row is deleted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use backend::{Backend, BatchTx, EngineView, Table};
use crossbeam_channel::Sender;
use parking_lot::{Mutex, MutexGuard, RwLock};
use prost::Message;

use crate::index::TreeIndex;
use crate::key_index::KeyIndex;
use crate::request::*;
use crate::revision::is_tombstone;
use crate::watch::{Hub, WatchStream};
use crate::{Error, Event, EventType, KeyRange, KeyValue, Result, Revision};

const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
const META_TERM: &[u8] = b"term";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// Key table rows read per backend read lock when rebuilding the index.
const RESTORE_CHUNK: usize = 10_000;
/// Values fetched per backend read lock when answering a range.
const FETCH_CHUNK: usize = 256;

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

pub(crate) enum SyncMsg {
    Wake,
}

pub(crate) struct Inner {
    pub backend: Arc<Backend>,
    pub index: TreeIndex,
    pub config: StoreConfig,
    write_lock: Mutex<()>,
    /// Held by a running compaction job, so jobs remove rows one after the other.
    compaction_lock: Mutex<()>,
    /// Bumped by `restore`: a compaction job or a watcher catch-up round that read the older
    /// contents must not go on.
    pub epoch: AtomicU64,
    pub revs: RwLock<Revs>,
    pub hub: Mutex<Hub>,
    consistent_index: AtomicU64,
    consistent_term: AtomicU64,
    pub sync_wake: Sender<SyncMsg>,
}

/// The mvcc store with its watchers. Share it with `Arc<Store>`; dropping it stops the watch
/// sync thread.
pub struct Store {
    inner: Arc<Inner>,
    stop_sync: Option<Sender<()>>,
    sync_thread: Option<JoinHandle<()>>,
}

fn meta_u64(value: Option<Vec<u8>>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt("meta integer is not 8 bytes".into())),
    }
}

fn meta_rev(value: Option<Vec<u8>>) -> Result<Option<i64>> {
    value
        .map(|v| {
            Revision::from_bytes(&v)
                .map(|r| r.main)
                .ok_or_else(|| Error::Corrupt("meta revision is malformed".into()))
        })
        .transpose()
}

fn decode_kv(rev_key: &[u8], value: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(value).map_err(|e| {
        Error::Corrupt(format!(
            "value at {:?}: {e}",
            Revision::from_bytes(rev_key).map(|r| r.to_string())
        ))
    })
}

impl Store {
    /// Opens the store on `backend`: rebuilds the key index from the key table, restores the
    /// compaction state and finishes a compaction a crash interrupted.
    pub fn open(backend: Arc<Backend>, config: StoreConfig) -> Result<Store> {
        let (index, meta) = load(&backend)?;
        let Loaded {
            consistent_index,
            term,
            current,
            compact,
            scheduled_compact,
        } = meta;
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            backend,
            index,
            config,
            write_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            epoch: AtomicU64::new(0),
            revs: RwLock::new(Revs { current, compact }),
            hub: Mutex::new(Hub::default()),
            consistent_index: AtomicU64::new(consistent_index),
            consistent_term: AtomicU64::new(term),
            sync_wake: wake_tx,
        });
        tracing::info!(current, compact, consistent_index, "mvcc store restored");
        if let Some(scheduled) = scheduled_compact {
            tracing::info!(scheduled, "resuming interrupted compaction");
            Compaction::schedule(&inner, scheduled)?.run()?;
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let sync_thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("mvcc-watch-sync".into())
                .spawn(move || {
                    let interval = inner.config.watch_sync_interval;
                    loop {
                        crossbeam_channel::select! {
                            recv(stop_rx) -> _ => return,
                            recv(wake_rx) -> _ => {},
                            default(interval) => {},
                        }
                        while let Ok(SyncMsg::Wake) = wake_rx.try_recv() {}
                        if let Err(e) = crate::watch::sync_until_idle(&inner, &stop_rx) {
                            tracing::error!(error = %e, "watch sync failed");
                        }
                    }
                })
                .map_err(|e| Error::Backend(backend::Error::Io(e)))?
        };
        Ok(Store {
            inner,
            stop_sync: Some(stop_tx),
            sync_thread: Some(sync_thread),
        })
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.inner.backend
    }

    /// Revision of the last completed write (1 on an empty store).
    pub fn current_revision(&self) -> i64 {
        self.inner.revs.read().current
    }

    /// Revision of the last compaction, -1 when the store was never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.inner.revs.read().compact
    }

    /// The raft index and term of the last entry applied through [`Store::apply`].
    pub fn consistent_index(&self) -> (u64, u64) {
        let _w = self.inner.write_lock.lock();
        (
            self.inner.consistent_index.load(Ordering::Acquire),
            self.inner.consistent_term.load(Ordering::Acquire),
        )
    }

    /// Range with etcd's semantics (see [`RangeRequest`]).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let revs = *self.inner.revs.read();
        self.inner.range_at(req, revs.current, revs.compact)
    }

    /// Starts the write transaction; waits while another one runs.
    pub fn write(&self) -> WriteTxn<'_> {
        let guard = self.inner.write_lock.lock();
        let tx = self.inner.backend.batch_tx();
        let begin = self.inner.revs.read().current;
        WriteTxn {
            inner: &self.inner,
            changes: Vec::new(),
            begin,
            tx,
            _guard: guard,
        }
    }

    /// Applies raft entry `index` with `f`, unless it was applied already: the index and term
    /// are written in the same backend batch as `f`'s changes, so after a crash an entry is
    /// applied either completely and exactly once or not at all. Returns `None` for an entry
    /// at or below the consistent index. `f` must work through the transaction it is given:
    /// calling the store's own write methods from it would wait for itself.
    pub fn apply<R>(
        &self,
        index: u64,
        term: u64,
        f: impl FnOnce(&mut WriteTxn<'_>) -> R,
    ) -> Option<R> {
        let mut txn = self.write();
        if index <= self.inner.consistent_index.load(Ordering::Acquire) {
            return None;
        }
        let result = f(&mut txn);
        let tx = txn.backend_tx();
        tx.put(Table::Meta, META_CONSISTENT_INDEX, &index.to_be_bytes());
        tx.put(Table::Meta, META_TERM, &term.to_be_bytes());
        self.inner.consistent_index.store(index, Ordering::Release);
        self.inner.consistent_term.store(term, Ordering::Release);
        Some(result)
    }

    pub fn put(&self, req: &PutRequest) -> Result<PutResponse> {
        let mut txn = self.write();
        let mut resp = txn.put(req)?;
        resp.revision = txn.end();
        Ok(resp)
    }

    pub fn delete_range(&self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let mut txn = self.write();
        let mut resp = txn.delete_range(req)?;
        resp.revision = txn.end();
        Ok(resp)
    }

    /// A transaction; `lease_exists` tells whether a lease named by a put may be attached.
    pub fn txn(&self, req: &TxnRequest, lease_exists: &dyn Fn(i64) -> bool) -> Result<TxnResponse> {
        let mut txn = self.write();
        let mut resp = txn.txn(req, lease_exists)?;
        let rev = txn.end();
        set_revision(&mut resp, rev);
        Ok(resp)
    }

    /// Compacts the index at `rev` and records the compaction; the returned job removes the
    /// obsolete backend rows in batches (run it on any thread; writes go on meanwhile). A crash
    /// before the job finishes is resumed by the next [`Store::open`].
    pub fn compact(&self, rev: i64) -> Result<Compaction> {
        let _w = self.inner.write_lock.lock();
        {
            let revs = self.inner.revs.read();
            if rev <= revs.compact {
                return Err(Error::Compacted);
            }
            if rev > revs.current {
                return Err(Error::FutureRevision);
            }
        }
        Compaction::schedule(&self.inner, rev)
    }

    /// etcd's `HashByRev`: crc32c of the key table up to `rev` (0: current), skipping rows a
    /// compaction has scheduled for removal.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        let (view, keep, revs, rev) = {
            let _w = self.inner.write_lock.lock();
            let revs = *self.inner.revs.read();
            if rev > 0 && rev <= revs.compact {
                return Err(Error::Compacted);
            }
            if rev > revs.current {
                return Err(Error::FutureRevision);
            }
            let rev = if rev <= 0 { revs.current } else { rev };
            let keep = self.inner.index.keep(rev);
            (self.inner.backend.committed_view()?, keep, revs, rev)
        };
        let upper = Revision::new(rev + 1, 0);
        let lower = Revision::new(revs.compact + 1, 0);
        let mut crc = crc32c::crc32c(Table::Key.name().as_bytes());
        view.scan(Table::Key, &[], None, &mut |k, v| {
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

    /// Every live key with a lease, for the lessor to re-attach after a restart.
    pub fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        let all = RangeRequest::range(vec![0u8], vec![0u8]);
        Ok(self
            .range(&all)?
            .kvs
            .into_iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key, kv.lease))
            .collect())
    }

    /// Installs a raft snapshot: replaces the backend's contents with `source`'s (see
    /// [`Backend::replace_contents`]) and reloads the index, revisions, compaction state and
    /// consistent index from it. Watchers stay: each catches up from its next revision (or
    /// learns that it was compacted). A compaction job of the old contents stops.
    pub fn restore(&self, source: &dyn EngineView) -> Result<()> {
        let _w = self.inner.write_lock.lock();
        // Before the contents change: compaction batches check it under the backend batch.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.backend.replace_contents(source)?;
        let (index, meta) = load(&self.inner.backend)?;
        {
            let mut hub = self.inner.hub.lock();
            self.inner.index.replace(index);
            *self.inner.revs.write() = Revs {
                current: meta.current,
                compact: meta.compact,
            };
            self.inner
                .consistent_index
                .store(meta.consistent_index, Ordering::Release);
            self.inner
                .consistent_term
                .store(meta.term, Ordering::Release);
            hub.unsync_all();
        }
        tracing::info!(
            current = meta.current,
            compact = meta.compact,
            "mvcc store restored from a snapshot"
        );
        if let Some(scheduled) = meta.scheduled_compact {
            Compaction::schedule(&self.inner, scheduled)?.run()?;
        }
        let _ = self.inner.sync_wake.send(SyncMsg::Wake);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn commit(&self) -> Result<()> {
        Ok(self.inner.backend.force_commit()?)
    }

    /// A stream of watch responses for any number of watchers.
    pub fn watch_stream(&self) -> WatchStream {
        WatchStream::new(self.inner.clone())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        drop(self.stop_sync.take());
        if let Some(handle) = self.sync_thread.take() {
            if handle.join().is_err() {
                tracing::error!("watch sync thread panicked");
            }
        }
    }
}

fn set_revision(resp: &mut TxnResponse, rev: i64) {
    resp.revision = rev;
    for r in &mut resp.responses {
        match r {
            ResponseOp::Range(r) => r.revision = rev,
            ResponseOp::Put(r) => r.revision = rev,
            ResponseOp::DeleteRange(r) => r.revision = rev,
            ResponseOp::Txn(t) => set_revision(t, rev),
        }
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
            meta_u64(r.get(Table::Meta, META_CONSISTENT_INDEX)?)?,
            meta_u64(r.get(Table::Meta, META_TERM)?)?,
            meta_rev(r.get(Table::Meta, META_FINISHED_COMPACT)?)?,
            meta_rev(r.get(Table::Meta, META_SCHEDULED_COMPACT)?)?,
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
        backend.read().scan(Table::Key, &start, None, |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            rows.len() < RESTORE_CHUNK
        })?;
        for (k, v) in &rows {
            let rev = Revision::from_bytes(k)
                .ok_or_else(|| Error::Corrupt(format!("key table row {k:?} is not a revision")))?;
            let kv = decode_kv(k, v)?;
            last = rev.main;
            let known = index.with_key_mut(&kv.key, |ki| {
                let Some(ki) = ki else { return false };
                if !is_tombstone(k) {
                    ki.put(rev);
                } else if !ki.tombstone(rev) {
                    tracing::warn!(%rev, "tombstone of a deleted key while restoring");
                }
                true
            });
            // A key first seen through a tombstone was deleted before the last compaction.
            if !known && !is_tombstone(k) {
                index.restore(
                    kv.key.clone(),
                    KeyIndex::restore(Revision::new(kv.create_revision, 0), rev, kv.version),
                );
            }
        }
        match rows.last() {
            Some((k, _)) if rows.len() == RESTORE_CHUNK => {
                start = k.clone();
                start.push(0);
            }
            _ => return Ok(last),
        }
    }
}

impl Inner {
    /// A range as etcd's apply layer does it, reading at `current` (the newest visible revision).
    pub(crate) fn range_at(
        &self,
        req: &RangeRequest,
        current: i64,
        compact: i64,
    ) -> Result<RangeResponse> {
        let rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        if rev > current {
            return Err(Error::FutureRevision);
        }
        if rev < compact {
            return Err(Error::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        if req.count_only {
            let (_, total) = self.index.revisions(&range, rev, 1);
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count: total as i64,
                revision: current,
            });
        }
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let sort_order = match (req.sort_order, req.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        };
        let limit = usize::try_from(req.limit).unwrap_or(0);
        // Fetch one more than asked to know whether there is more.
        let fetch = if filtered || sort_order != SortOrder::None || limit == 0 {
            0
        } else {
            limit + 1
        };
        let (revs, total) = self.index.revisions(&range, rev, fetch);
        let mut kvs = self.fetch(&revs, rev)?;
        let in_bounds =
            |v: i64, min: i64, max: i64| (min == 0 || v >= min) && (max == 0 || v <= max);
        if filtered {
            kvs.retain(|kv| {
                in_bounds(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
                    && in_bounds(
                        kv.create_revision,
                        req.min_create_revision,
                        req.max_create_revision,
                    )
            });
        }
        sort_kvs(&mut kvs, sort_order, req.sort_target);
        let mut more = false;
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        Ok(RangeResponse {
            kvs,
            more,
            count: total as i64,
            revision: current,
        })
    }

    /// The stored values at `revs`, read for a range at `at_rev`.
    pub(crate) fn fetch(&self, revs: &[Revision], at_rev: i64) -> Result<Vec<KeyValue>> {
        let mut kvs = Vec::with_capacity(revs.len());
        for chunk in revs.chunks(FETCH_CHUNK) {
            let read = self.backend.read();
            for rev in chunk {
                let key = rev.to_bytes();
                match read.get(Table::Key, &key)? {
                    Some(v) => kvs.push(decode_kv(&key, &v)?),
                    None => {
                        // A compaction that started after our revision check removed it.
                        if self.revs.read().compact > at_rev {
                            return Err(Error::Compacted);
                        }
                        return Err(Error::Corrupt(format!(
                            "revision {rev} is in the index only"
                        )));
                    }
                }
            }
        }
        Ok(kvs)
    }

    /// The value of one key at `rev`, `None` if it did not exist or is compacted away.
    pub(crate) fn value_at(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let compact = self.revs.read().compact;
        if rev < compact || rev <= 0 {
            return Ok(None);
        }
        let Some(found) = self.index.get(key, rev) else {
            return Ok(None);
        };
        match self.fetch(&[found.modified], rev) {
            Ok(mut kvs) => Ok(kvs.pop()),
            Err(Error::Compacted) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    if order == SortOrder::None {
        return;
    }
    // Key order is the natural order: only a descending sort has work to do.
    match target {
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        if target == SortTarget::Key {
            kvs.reverse();
        } else {
            // Reverse the order of the targets but keep equal targets in key order.
            kvs.reverse();
            let mut i = 0;
            while i < kvs.len() {
                let mut j = i + 1;
                while j < kvs.len() && same_target(&kvs[i], &kvs[j], target) {
                    j += 1;
                }
                kvs[i..j].reverse();
                i = j;
            }
        }
    }
}

fn same_target(a: &KeyValue, b: &KeyValue, target: SortTarget) -> bool {
    match target {
        SortTarget::Key => a.key == b.key,
        SortTarget::Version => a.version == b.version,
        SortTarget::Create => a.create_revision == b.create_revision,
        SortTarget::Mod => a.mod_revision == b.mod_revision,
        SortTarget::Value => a.value == b.value,
    }
}

/// The write transaction. Every change it makes gets the revision `begin + 1` (sub-revisions
/// order them); the revision is published when it ends (dropped or [`WriteTxn::end`]), and
/// only if something changed.
pub struct WriteTxn<'a> {
    inner: &'a Inner,
    changes: Vec<Event>,
    begin: i64,
    // Fields drop in order: the backend batch is released before the write lock.
    tx: BatchTx<'a>,
    _guard: MutexGuard<'a, ()>,
}

impl<'a> WriteTxn<'a> {
    /// The revision the store had when the transaction began.
    pub fn begin_revision(&self) -> i64 {
        self.begin
    }

    /// The revision reads inside the transaction see: including its own changes.
    fn read_revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    /// The backend transaction, for the server's own tables (lease, auth, members...).
    pub fn backend_tx(&mut self) -> &mut BatchTx<'a> {
        &mut self.tx
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let compact = self.inner.revs.read().compact;
        self.inner.range_at(req, self.read_revision(), compact)
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let rev = self.begin + 1;
        let found = self.inner.index.get(&req.key, rev);
        let needs_prev = req.prev_kv || req.ignore_value || req.ignore_lease;
        let prev = match (needs_prev, found) {
            (true, Some(f)) => self.inner.fetch(&[f.modified], rev)?.pop(),
            _ => None,
        };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let at = Revision::new(rev, self.changes.len() as i64);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: found.map_or(rev, |f| f.created.main),
            mod_revision: rev,
            version: found.map_or(0, |f| f.version) + 1,
            value,
            lease,
        };
        self.backend_tx()
            .put(Table::Key, &at.to_bytes(), &kv.encode_to_vec());
        self.inner.index.put(&req.key, at);
        self.changes.push(Event::new(EventType::Put, kv));
        Ok(PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
            revision: rev,
        })
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let read_rev = self.read_revision();
        let range = KeyRange::new(&req.key, &req.range_end);
        let keys = self.inner.index.keys(&range, read_rev);
        let prev_kvs = if req.prev_kv {
            let revs: Vec<Revision> = keys
                .iter()
                .filter_map(|k| self.inner.index.get(k, read_rev).map(|f| f.modified))
                .collect();
            self.inner.fetch(&revs, read_rev)?
        } else {
            Vec::new()
        };
        let rev = self.begin + 1;
        for key in &keys {
            let at = Revision::new(rev, self.changes.len() as i64);
            let tombstone = KeyValue {
                key: key.clone(),
                ..Default::default()
            };
            self.backend_tx().put(
                Table::Key,
                &at.to_tombstone_bytes(),
                &tombstone.encode_to_vec(),
            );
            self.inner.index.tombstone(key, at);
            self.changes.push(Event::new(
                EventType::Delete,
                KeyValue {
                    mod_revision: rev,
                    ..tombstone
                },
            ));
        }
        Ok(DeleteRangeResponse {
            deleted: keys.len() as i64,
            prev_kvs,
            revision: self.read_revision(),
        })
    }

    /// etcd's txn: the compares of the whole path (nested txns included) are evaluated first
    /// against the state before the txn, then every op of the chosen path is checked
    /// (`ignore_*` on missing keys, unknown leases, compacted or future range revisions), and
    /// only then executed; a failed check changes nothing.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.compare_path(req, &mut path)?;
        self.check_path(
            req,
            &mut path.iter().copied(),
            lease_exists,
            &mut Vec::new(),
        )?;
        self.execute(req, &mut path.into_iter())
    }

    fn compare_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let RequestOp::Txn(nested) = op {
                self.compare_path(nested, path)?;
            }
        }
        Ok(())
    }

    fn compare(&self, c: &Compare) -> Result<bool> {
        let resp = self.range(&RangeRequest::range(c.key.clone(), c.range_end.clone()))?;
        if resp.kvs.is_empty() {
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(resp.kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// Checks the ops of the chosen path in order, tracking which keys earlier ops of the
    /// path create (`true`) or delete (`false`), so an `ignore_*` put after a delete of its key
    /// is refused before anything is written.
    fn check_path(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        lease_exists: &dyn Fn(i64) -> bool,
        effects: &mut Vec<(KeyRange, bool)>,
    ) -> Result<()> {
        let ops = if path.next().unwrap_or(false) {
            &req.success
        } else {
            &req.failure
        };
        let compact = self.inner.revs.read().compact;
        for op in ops {
            match op {
                RequestOp::Put(p) => {
                    if p.ignore_value || p.ignore_lease {
                        let exists = effects
                            .iter()
                            .rev()
                            .find(|(range, _)| range.contains(&p.key))
                            .map_or_else(
                                || self.inner.index.get(&p.key, self.begin).is_some(),
                                |e| e.1,
                            );
                        if !exists {
                            return Err(Error::KeyNotFound);
                        }
                    }
                    if !p.ignore_lease && p.lease != 0 && !lease_exists(p.lease) {
                        return Err(Error::LeaseNotFound(p.lease));
                    }
                    effects.push((KeyRange::Single(p.key.clone()), true));
                }
                RequestOp::DeleteRange(d) => {
                    effects.push((KeyRange::new(&d.key, &d.range_end), false));
                }
                RequestOp::Range(r) if r.revision > 0 => {
                    if r.revision < compact {
                        return Err(Error::Compacted);
                    }
                    // The txn's own revision is readable once it has written something.
                    let writes_before = effects.iter().any(|(_, created)| *created)
                        || effects
                            .iter()
                            .any(|(range, _)| !self.inner.index.keys(range, self.begin).is_empty());
                    let newest = if writes_before {
                        self.begin + 1
                    } else {
                        self.begin
                    };
                    if r.revision > newest {
                        return Err(Error::FutureRevision);
                    }
                }
                RequestOp::Txn(nested) => self.check_path(nested, path, lease_exists, effects)?,
                RequestOp::Range(_) => {}
            }
        }
        Ok(())
    }

    fn execute(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.execute(t, path)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            revision: self.read_revision(),
        })
    }

    /// Ends the transaction; returns the store's revision after it.
    pub fn end(self) -> i64 {
        self.read_revision()
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if !self.changes.is_empty() {
            let rev = self.begin + 1;
            let events = std::mem::take(&mut self.changes);
            // Publish under the hub lock: a watcher moving from unsynced to synced sees either
            // all of this revision in the backend or gets it from notify, never both or neither.
            let mut hub = self.inner.hub.lock();
            hub.notify(rev, &events);
            self.inner.revs.write().current = rev;
        }
    }
}

/// A compaction whose index part is done; [`Compaction::run`] removes the backend rows.
pub struct Compaction {
    inner: Arc<Inner>,
    rev: i64,
    keep: HashSet<Revision>,
    epoch: u64,
}

impl Compaction {
    /// Caller holds the write lock (or is the only user, at open).
    fn schedule(inner: &Arc<Inner>, rev: i64) -> Result<Compaction> {
        inner.revs.write().compact = rev;
        inner.backend.batch_tx().put(
            Table::Meta,
            META_SCHEDULED_COMPACT,
            &Revision::new(rev, 0).to_bytes(),
        );
        // The schedule must be durable before any row goes, so a crash resumes it.
        inner.backend.force_commit()?;
        let keep = inner.index.compact(rev);
        Ok(Compaction {
            inner: inner.clone(),
            rev,
            keep,
            epoch: inner.epoch.load(Ordering::Acquire),
        })
    }

    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Removes rows at or below the compaction revision that nothing can read any more, in
    /// batches with the backend released in between; records the compaction as finished.
    pub fn run(self) -> Result<()> {
        let _one_at_a_time = self.inner.compaction_lock.lock();
        let end = Revision::new(self.rev + 1, 0).to_bytes();
        let batch = self.inner.config.compaction_batch_limit.max(1);
        let mut start = Vec::new();
        let mut removed = 0usize;
        loop {
            let mut keys: Vec<Vec<u8>> = Vec::with_capacity(batch);
            self.inner
                .backend
                .read()
                .scan(Table::Key, &start, Some(&end), |k, _| {
                    keys.push(k.to_vec());
                    keys.len() < batch
                })?;
            let done = keys.len() < batch;
            {
                let mut tx = self.inner.backend.batch_tx();
                if self.inner.epoch.load(Ordering::Acquire) != self.epoch {
                    tracing::info!(
                        rev = self.rev,
                        "compaction abandoned: the store was restored"
                    );
                    return Ok(());
                }
                for k in &keys {
                    let keep = Revision::from_bytes(k).is_some_and(|r| self.keep.contains(&r));
                    if !keep {
                        tx.delete(Table::Key, k);
                        removed += 1;
                    }
                }
                if done {
                    // Jobs may be run out of order; the record only moves forward.
                    let finished = meta_rev(
                        self.inner
                            .backend
                            .read()
                            .get(Table::Meta, META_FINISHED_COMPACT)?,
                    )?;
                    if finished.is_none_or(|f| f < self.rev) {
                        tx.put(
                            Table::Meta,
                            META_FINISHED_COMPACT,
                            &Revision::new(self.rev, 0).to_bytes(),
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
            if !self.inner.config.compaction_batch_pause.is_zero() {
                std::thread::sleep(self.inner.config.compaction_batch_pause);
            }
        }
        tracing::info!(rev = self.rev, removed, "compaction finished");
        Ok(())
    }
}
