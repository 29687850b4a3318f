//! The store with its watchers (etcd's `watchableStore`): the public [`Store`], and the sync
//! thread that brings unsynced watchers up to date from the backend, in bounded rounds,
//! without holding up writers, and retries victims.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use backend::{Backend, EngineView};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tokio::sync::mpsc::error::TrySendError;

use crate::hash_storage::KvHash;
use crate::kvstore::{decode_kv, KvStore, StoreConfig};
use crate::kvstore_compaction::Compaction;
use crate::kvstore_txn::WriteTxn;
use crate::request::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use crate::revision::is_tombstone;
use crate::schema::KEY_TABLE;
use crate::watch_stream::WatchStream;
use crate::watcher_group::{Group, WatcherKey, Watchers};
use crate::{Error, Event, EventType, KeyRange, Result, Revision, WatchResponse};

/// The mvcc store with its watchers. Share it with `Arc<Store>`; dropping it stops the watch
/// sync thread. Every write goes through [`Store::apply`], which records the raft entry it
/// applies.
pub struct Store {
    kv: Arc<KvStore>,
    watchers: Arc<Watchers>,
    stop_sync: Option<Sender<()>>,
    sync_thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Opens the store on `backend` (which holds at least [`crate::TABLES`]): rebuilds the key
    /// index from the key table, restores the compaction state and finishes a compaction a
    /// crash interrupted.
    pub fn open(backend: Arc<Backend>, config: StoreConfig) -> Result<Store> {
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded();
        let watchers = Arc::new(Watchers::new(wake_tx));
        let (kv, scheduled) = KvStore::open(backend, config, watchers.clone())?;
        let kv = Arc::new(kv);
        if let Some(scheduled) = scheduled {
            tracing::info!(scheduled, "resuming interrupted compaction");
            kv.schedule_compaction(scheduled)?.run()?;
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let sync_thread = {
            let kv = kv.clone();
            let watchers = watchers.clone();
            std::thread::Builder::new()
                .name("mvcc-watch-sync".into())
                .spawn(move || {
                    let interval = kv.config.watch_sync_interval;
                    loop {
                        crossbeam_channel::select! {
                            recv(stop_rx) -> _ => return,
                            recv(wake_rx) -> _ => {},
                            default(interval) => {},
                        }
                        while wake_rx.try_recv().is_ok() {}
                        if let Err(e) = sync_until_idle(&kv, &watchers, &stop_rx) {
                            tracing::error!(error = %e, "watch sync failed");
                        }
                    }
                })
                .map_err(Error::SyncThread)?
        };
        Ok(Store {
            kv,
            watchers,
            stop_sync: Some(stop_tx),
            sync_thread: Some(sync_thread),
        })
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.kv.backend
    }

    /// Revision of the last completed write (1 on an empty store).
    pub fn current_revision(&self) -> i64 {
        self.kv.revs.read().current
    }

    /// Revision of the last compaction, -1 when the store was never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.kv.revs.read().compact
    }

    /// The raft index and term of the last entry applied through [`Store::apply`].
    pub fn consistent_index(&self) -> (u64, u64) {
        self.kv.consistent_index()
    }

    /// Range with etcd's semantics (see [`RangeRequest`]).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.kv.range(req)
    }

    /// A txn of ranges and compares only, at one revision (a put or delete is refused).
    pub fn read_txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.kv.read_txn(req)
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
        self.kv.apply(index, term, f)
    }

    /// Compacts the index at `rev` and records the compaction; the returned job removes the
    /// obsolete backend rows in batches (run it on any thread; writes go on meanwhile). A crash
    /// before the job finishes is resumed by the next [`Store::open`].
    pub fn compact(&self, rev: i64) -> Result<Compaction> {
        self.kv.compact(rev)
    }

    /// etcd's `HashByRev`: crc32c of the key table up to `rev` (0: current), skipping rows a
    /// compaction has scheduled for removal.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        self.kv.hash_kv(rev)
    }

    /// The hash of the key table up to `rev` that the compaction at `rev` recorded, if this
    /// store ran it and still keeps it (etcd 3.5's `HashByRev` answers with it first).
    pub fn compaction_hash(&self, rev: i64) -> Option<KvHash> {
        self.kv.compaction_hash(rev)
    }

    /// The hashes the last compactions recorded, newest first (at most
    /// [`crate::COMPACTION_HASHES_KEPT`]).
    pub fn compaction_hashes(&self) -> Vec<KvHash> {
        self.kv.compaction_hashes.list()
    }

    /// Every live key with a lease, for the lessor to re-attach after a restart.
    pub fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        self.kv.leased_keys()
    }

    /// Installs a raft snapshot: replaces the backend's contents with `source`'s (see
    /// [`Backend::replace_contents`]) and reloads the index, revisions, compaction state and
    /// consistent index from it. Watchers stay: each catches up from its next revision (or
    /// learns that it was compacted). A compaction job of the old contents stops.
    pub fn restore(&self, source: &dyn EngineView) -> Result<()> {
        let _w = self.kv.write_lock.lock();
        if let Some(scheduled) = self.kv.restore_locked(source)? {
            self.kv.schedule_compaction(scheduled)?.run()?;
        }
        self.watchers.wake_sync();
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn commit(&self) -> Result<()> {
        Ok(self.kv.backend.force_commit()?)
    }

    /// A stream of watch responses for any number of watchers.
    pub fn watch_stream(&self) -> WatchStream {
        WatchStream::new(self.kv.clone(), self.watchers.clone())
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

/// An unsynced watcher as one catch-up round sees it.
struct Target {
    wk: WatcherKey,
    min_rev: i64,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
}

impl Target {
    fn wants(&self, ev: &Event) -> bool {
        if ev.is_put() {
            !self.no_put
        } else {
            !self.no_delete
        }
    }
}

/// Runs sync rounds until there is nothing left that can progress now.
fn sync_until_idle(kv: &KvStore, watchers: &Watchers, stop: &Receiver<()>) -> Result<()> {
    loop {
        retry_victims(kv, watchers);
        if !sync_unsynced(kv, watchers)? {
            return Ok(());
        }
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            return Ok(());
        }
    }
}

fn retry_victims(kv: &KvStore, watchers: &Watchers) {
    let mut hub = watchers.hub.lock();
    let current = kv.revs.read().current;
    let victims: Vec<WatcherKey> = hub.victims.keys().copied().collect();
    for wk in victims {
        let Some((resp, next_rev)) = hub.victims.remove(&wk) else {
            continue;
        };
        let Some(w) = hub.watchers.get_mut(&wk) else {
            continue;
        };
        match w.tx.try_send(resp) {
            Ok(()) => {
                w.min_rev = w.min_rev.max(next_rev);
                let group = if w.min_rev > current {
                    Group::Synced
                } else {
                    Group::Unsynced
                };
                hub.set_group(wk, group);
            }
            Err(TrySendError::Full(resp)) => {
                hub.victims.insert(wk, (resp, next_rev));
            }
            Err(TrySendError::Closed(_)) => {
                hub.remove(wk);
            }
        }
    }
}

/// One catch-up round; true when it made progress and unsynced watchers remain.
fn sync_unsynced(kv: &KvStore, watchers: &Watchers) -> Result<bool> {
    // 1. Under the hub lock: drop compacted watchers, note what to read.
    let (targets, current, epoch) = {
        let mut hub = watchers.hub.lock();
        let revs = *kv.revs.read();
        let keys: Vec<WatcherKey> = hub.unsynced.iter().copied().collect();
        let mut targets = Vec::new();
        for wk in keys {
            let Some(w) = hub.watchers.get(&wk) else {
                continue;
            };
            if w.min_rev < revs.compact {
                let resp = WatchResponse {
                    watch_id: wk.1,
                    events: Vec::new(),
                    revision: revs.current,
                    compact_revision: revs.compact,
                };
                match w.tx.try_send(resp) {
                    Ok(()) | Err(TrySendError::Closed(_)) => {
                        hub.remove(wk);
                    }
                    Err(TrySendError::Full(_)) => {} // tried again next round
                }
                continue;
            }
            if w.min_rev > revs.current {
                hub.set_group(wk, Group::Synced);
                continue;
            }
            targets.push(Target {
                wk,
                min_rev: w.min_rev,
                range: w.range.clone(),
                no_put: w.no_put,
                no_delete: w.no_delete,
            });
        }
        (targets, revs.current, kv.epoch.load(Ordering::Acquire))
    };
    let Some(from) = targets.iter().map(|t| t.min_rev).min() else {
        return Ok(false);
    };

    // 2. Without it: read the revisions from the backend, whole revisions only.
    let (events, upto) = read_events(kv, from, current)?;
    // Only this thread moves an unsynced watcher, so each one's events can be picked out
    // before taking the hub lock again.
    let picked: Vec<(Target, Vec<Event>)> = targets
        .into_iter()
        .map(|t| {
            let evs = events
                .iter()
                .filter(|e| e.revision() >= t.min_rev && t.range.contains(e.key()) && t.wants(e))
                .cloned()
                .collect();
            (t, evs)
        })
        .collect();

    // 3. Under the hub lock again: deliver and promote.
    let mut hub = watchers.hub.lock();
    if kv.epoch.load(Ordering::Acquire) != epoch {
        return Ok(true); // the store was restored from a snapshot under us: read again
    }
    let revs = *kv.revs.read();
    for (target, evs) in picked {
        let wk = target.wk;
        let Some(w) = hub.watchers.get(&wk) else {
            continue;
        };
        if w.group != Group::Unsynced || w.min_rev != target.min_rev || w.min_rev < revs.compact {
            continue; // cancelled, moved, or compacted meanwhile: next round handles it
        }
        let delivered = if evs.is_empty() {
            if let Some(w) = hub.watchers.get_mut(&wk) {
                w.min_rev = w.min_rev.max(upto + 1);
            }
            true
        } else {
            let resp = WatchResponse {
                watch_id: wk.1,
                events: evs,
                revision: revs.current,
                compact_revision: 0,
            };
            hub.deliver(wk, resp, upto + 1)
        };
        if delivered {
            if let Some(w) = hub.watchers.get(&wk) {
                if w.min_rev > revs.current {
                    hub.set_group(wk, Group::Synced);
                }
            }
        }
    }
    Ok(!hub.unsynced.is_empty())
}

/// Events of revisions `from..=to` from the key table, cut at a revision boundary after about
/// `watch_sync_batch` rows; returns them and the last revision they fully cover.
fn read_events(kv: &KvStore, from: i64, to: i64) -> Result<(Vec<Event>, i64)> {
    let start = Revision::new(from, 0).to_bytes();
    let end = Revision::new(to + 1, 0).to_bytes();
    let limit = kv.config.watch_sync_batch.max(1);
    let mut events = Vec::new();
    let mut last_main = from - 1;
    let mut cut = false;
    let mut failure = None;
    kv.backend
        .read()
        .scan(KEY_TABLE, &start, Some(&end), |k, v| {
            let Some(rev) = Revision::from_bytes(k) else {
                return true;
            };
            if events.len() >= limit && rev.main != last_main {
                cut = true;
                return false;
            }
            match decode_kv(rev, v) {
                Ok(mut kv) => {
                    let kind = if is_tombstone(k) {
                        kv.mod_revision = rev.main;
                        EventType::Delete
                    } else {
                        EventType::Put
                    };
                    events.push(Event::new(kind, kv));
                    last_main = rev.main;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((events, if cut { last_main } else { to }))
}
