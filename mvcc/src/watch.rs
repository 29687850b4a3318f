//! Watchers: the synced ones get each revision from the write path as it is published; the
//! unsynced ones (starting in the past, or back from being a victim) catch up from the backend
//! on the sync thread, in bounded rounds, without holding up writers; victims are watchers
//! whose stream was full: their undelivered response is parked and retried, never dropped.
//!
//! Invariant: a watcher is in exactly one of synced / unsynced / victim. `min_rev` is the next
//! revision it must receive; every response moves it forward past everything the response
//! covered, so events arrive in revision order without gaps or duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use backend::Table;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::revision::is_tombstone;
use crate::store::{Inner, SyncMsg};
use crate::{Event, EventType, KeyRange, KeyValue, Result, Revision};

/// Identifies a watcher within its stream.
pub type WatchId = i64;

/// One message for a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watcher it is for; -1 for a stream-wide progress notification.
    pub watch_id: WatchId,
    /// Events in revision order; all events of a revision are in the same response.
    pub events: Vec<Event>,
    /// The store revision when the response was made: no events up to it are missing.
    pub revision: i64,
    /// Non-zero: the watcher's start revision was compacted (this is the compaction
    /// revision) and the watcher is gone.
    pub compact_revision: i64,
}

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// Empty means `"\0"`.
    pub key: Vec<u8>,
    /// etcd's convention (see [`KeyRange::new`]).
    pub range_end: Vec<u8>,
    /// First revision to report; 0 = the next one.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    /// Attach each event's previous value (omitted when compacted or for creations).
    pub prev_kv: bool,
    /// 0 = the smallest unused id of the stream.
    pub watch_id: WatchId,
}

/// Why a watch was refused; the texts are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
}

type WatcherKey = (u64, WatchId);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Synced,
    Unsynced,
    Victim,
}

struct Watcher {
    range: KeyRange,
    min_rev: i64,
    no_put: bool,
    no_delete: bool,
    group: Group,
    tx: mpsc::Sender<WatchResponse>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        if ev.is_put() {
            !self.no_put
        } else {
            !self.no_delete
        }
    }
}

#[derive(Default)]
pub(crate) struct Hub {
    watchers: HashMap<WatcherKey, Watcher>,
    /// Synced single-key watchers by key, for a cheap fan-out.
    synced_keys: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    synced_ranges: HashSet<WatcherKey>,
    unsynced: HashSet<WatcherKey>,
    /// The parked response and the `min_rev` to set once it is delivered.
    victims: HashMap<WatcherKey, (WatchResponse, i64)>,
    next_stream: u64,
}

impl Hub {
    fn set_group(&mut self, wk: WatcherKey, group: Group) {
        let Some(w) = self.watchers.get_mut(&wk) else {
            return;
        };
        let old = std::mem::replace(&mut w.group, group);
        let range = w.range.clone();
        match old {
            Group::Synced => self.unlink_synced(wk, &range),
            Group::Unsynced => {
                self.unsynced.remove(&wk);
            }
            Group::Victim => {}
        }
        match group {
            Group::Synced => match range {
                KeyRange::Single(k) => {
                    self.synced_keys.entry(k).or_default().insert(wk);
                }
                KeyRange::Span { .. } => {
                    self.synced_ranges.insert(wk);
                }
            },
            Group::Unsynced => {
                self.unsynced.insert(wk);
            }
            Group::Victim => {}
        }
    }

    fn unlink_synced(&mut self, wk: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                if let Some(set) = self.synced_keys.get_mut(k) {
                    set.remove(&wk);
                    if set.is_empty() {
                        self.synced_keys.remove(k);
                    }
                }
            }
            KeyRange::Span { .. } => {
                self.synced_ranges.remove(&wk);
            }
        }
    }

    fn remove(&mut self, wk: WatcherKey) -> bool {
        let Some(w) = self.watchers.remove(&wk) else {
            return false;
        };
        match w.group {
            Group::Synced => self.unlink_synced(wk, &w.range),
            Group::Unsynced => {
                self.unsynced.remove(&wk);
            }
            Group::Victim => {
                self.victims.remove(&wk);
            }
        }
        true
    }

    /// Sends every synced watcher back to catching up (after the store's contents changed
    /// under it).
    pub(crate) fn unsync_all(&mut self) {
        let synced: Vec<WatcherKey> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.group == Group::Synced)
            .map(|(wk, _)| *wk)
            .collect();
        for wk in synced {
            self.set_group(wk, Group::Unsynced);
        }
    }

    /// Hands the events of revision `rev` to the synced watchers; a full stream makes its
    /// watcher a victim holding this response.
    pub(crate) fn notify(&mut self, rev: i64, events: &[Event]) {
        let mut batches: HashMap<WatcherKey, Vec<Event>> = HashMap::new();
        for ev in events {
            let key = ev.key();
            if let Some(set) = self.synced_keys.get(key) {
                for wk in set {
                    batches.entry(*wk).or_default().push(ev.clone());
                }
            }
            for wk in &self.synced_ranges {
                if self.watchers.get(wk).is_some_and(|w| w.range.contains(key)) {
                    batches.entry(*wk).or_default().push(ev.clone());
                }
            }
        }
        for (wk, mut evs) in batches {
            let Some(w) = self.watchers.get(&wk) else {
                continue;
            };
            if rev < w.min_rev {
                continue;
            }
            evs.retain(|e| w.wants(e));
            if evs.is_empty() {
                continue;
            }
            let resp = WatchResponse {
                watch_id: wk.1,
                events: evs,
                revision: rev,
                compact_revision: 0,
            };
            self.deliver(wk, resp, rev + 1);
        }
    }

    /// Sends `resp`; on success the watcher's next revision is `next_rev`. Returns whether the
    /// response is delivered (a full stream parks it with the watcher as a victim).
    fn deliver(&mut self, wk: WatcherKey, resp: WatchResponse, next_rev: i64) -> bool {
        let Some(w) = self.watchers.get_mut(&wk) else {
            return false;
        };
        match w.tx.try_send(resp) {
            Ok(()) => {
                w.min_rev = w.min_rev.max(next_rev);
                true
            }
            Err(TrySendError::Full(resp)) => {
                tracing::debug!(watch_id = wk.1, "watch stream full; watcher set aside");
                self.set_group(wk, Group::Victim);
                self.victims.insert(wk, (resp, next_rev));
                false
            }
            Err(TrySendError::Closed(_)) => {
                self.remove(wk);
                false
            }
        }
    }
}

/// Runs sync rounds until there is nothing left that can progress now.
pub(crate) fn sync_until_idle(
    inner: &Arc<Inner>,
    stop: &crossbeam_channel::Receiver<()>,
) -> Result<()> {
    loop {
        retry_victims(inner);
        if !sync_unsynced(inner)? {
            return Ok(());
        }
        if !matches!(stop.try_recv(), Err(crossbeam_channel::TryRecvError::Empty)) {
            return Ok(());
        }
    }
}

fn retry_victims(inner: &Inner) {
    let mut hub = inner.hub.lock();
    let current = inner.revs.read().current;
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
fn sync_unsynced(inner: &Inner) -> Result<bool> {
    // 1. Under the hub lock: drop compacted watchers, note what to read.
    let (targets, current, epoch) = {
        let mut hub = inner.hub.lock();
        let revs = *inner.revs.read();
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
        (targets, revs.current, inner.epoch.load(Ordering::Acquire))
    };
    let Some(from) = targets.iter().map(|t| t.min_rev).min() else {
        return Ok(false);
    };

    // 2. Without it: read the revisions from the backend, whole revisions only.
    let (events, upto) = read_events(inner, from, current)?;
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
    let mut hub = inner.hub.lock();
    if inner.epoch.load(Ordering::Acquire) != epoch {
        return Ok(true); // the store was restored from a snapshot under us: read again
    }
    let revs = *inner.revs.read();
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
fn read_events(inner: &Inner, from: i64, to: i64) -> Result<(Vec<Event>, i64)> {
    let start = Revision::new(from, 0).to_bytes();
    let end = Revision::new(to + 1, 0).to_bytes();
    let limit = inner.config.watch_sync_batch.max(1);
    let mut events = Vec::new();
    let mut last_main = from - 1;
    let mut cut = false;
    let mut failure = None;
    inner
        .backend
        .read()
        .scan(Table::Key, &start, Some(&end), |k, v| {
            let Some(rev) = Revision::from_bytes(k) else {
                return true;
            };
            if events.len() >= limit && rev.main != last_main {
                cut = true;
                return false;
            }
            match <KeyValue as prost::Message>::decode(v) {
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
                    failure = Some(crate::Error::Corrupt(format!("value at {rev}: {e}")));
                    false
                }
            }
        })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((events, if cut { last_main } else { to }))
}

/// Watchers sharing one ordered stream of responses (one gRPC watch stream, typically).
/// Dropping it cancels its watchers.
pub struct WatchStream {
    inner: Arc<Inner>,
    stream: u64,
    tx: mpsc::Sender<WatchResponse>,
    rx: mpsc::Receiver<WatchResponse>,
    /// Live watchers and whether they want previous values.
    watchers: HashMap<WatchId, bool>,
    next_id: WatchId,
}

impl WatchStream {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let (tx, rx) = mpsc::channel(inner.config.watch_stream_capacity.max(1));
        let stream = {
            let mut hub = inner.hub.lock();
            hub.next_stream += 1;
            hub.next_stream
        };
        Self {
            inner,
            stream,
            tx,
            rx,
            watchers: HashMap::new(),
            next_id: 0,
        }
    }

    /// Adds a watcher; events from its start revision on arrive on this stream.
    pub fn watch(&mut self, req: &WatchRequest) -> Result<WatchId, WatchError> {
        // As etcd's watch server: an empty key means "\0".
        let key: &[u8] = if req.key.is_empty() { &[0] } else { &req.key };
        let range = KeyRange::new(key, &req.range_end);
        if range.is_empty() {
            return Err(WatchError::EmptyRange);
        }
        let id = if req.watch_id == 0 {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        } else if self.watchers.contains_key(&req.watch_id) {
            return Err(WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        let wk = (self.stream, id);
        let mut hub = self.inner.hub.lock();
        let current = self.inner.revs.read().current;
        let min_rev = if req.start_revision <= 0 {
            current + 1
        } else {
            req.start_revision
        };
        hub.watchers.insert(
            wk,
            Watcher {
                range,
                min_rev,
                no_put: req.no_put,
                no_delete: req.no_delete,
                group: Group::Victim, // replaced right below
                tx: self.tx.clone(),
            },
        );
        let synced = min_rev > current;
        hub.set_group(
            wk,
            if synced {
                Group::Synced
            } else {
                Group::Unsynced
            },
        );
        drop(hub);
        if !synced {
            let _ = self.inner.sync_wake.send(SyncMsg::Wake);
        }
        self.watchers.insert(id, req.prev_kv);
        Ok(id)
    }

    /// Removes a watcher; false when the id is unknown. Responses it still had queued are
    /// dropped by `recv`.
    pub fn cancel(&mut self, id: WatchId) -> bool {
        if self.watchers.remove(&id).is_none() {
            return false;
        }
        self.inner.hub.lock().remove((self.stream, id));
        true
    }

    /// Queues a progress notification (no events, the current revision) for one watcher.
    /// Only a synced watcher gets one: the revision then covers every event it will not get
    /// again. False when the watcher is catching up, set aside or unknown.
    pub fn request_progress(&self, id: WatchId) -> bool {
        let hub = self.inner.hub.lock();
        let Some(w) = hub.watchers.get(&(self.stream, id)) else {
            return false;
        };
        if w.group != Group::Synced {
            return false;
        }
        let resp = WatchResponse {
            watch_id: id,
            revision: self.inner.revs.read().current,
            ..Default::default()
        };
        w.tx.try_send(resp).is_ok()
    }

    /// Queues one stream-wide progress notification (`watch_id == -1`) if every watcher of the
    /// stream is synced; false otherwise.
    pub fn request_progress_all(&self) -> bool {
        let hub = self.inner.hub.lock();
        let all_synced = self.watchers.keys().all(|id| {
            hub.watchers
                .get(&(self.stream, *id))
                .is_some_and(|w| w.group == Group::Synced)
        });
        if !all_synced {
            return false;
        }
        let resp = WatchResponse {
            watch_id: -1,
            revision: self.inner.revs.read().current,
            ..Default::default()
        };
        self.tx.try_send(resp).is_ok()
    }

    /// The next response (async).
    pub async fn recv(&mut self) -> Option<WatchResponse> {
        loop {
            let resp = self.rx.recv().await?;
            if let Some(resp) = self.finish(resp) {
                return Some(resp);
            }
        }
    }

    /// The next response, if one waits.
    pub fn try_recv(&mut self) -> Option<WatchResponse> {
        loop {
            let resp = self.rx.try_recv().ok()?;
            if let Some(resp) = self.finish(resp) {
                return Some(resp);
            }
        }
    }

    /// The next response, waiting at most `timeout` (for threads outside an async runtime).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<WatchResponse> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(resp) = self.try_recv() {
                return Some(resp);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
        }
    }

    /// Drops responses of cancelled watchers, forgets compacted ones, fills `prev_kv`.
    fn finish(&mut self, mut resp: WatchResponse) -> Option<WatchResponse> {
        if resp.watch_id == -1 {
            return Some(resp);
        }
        let prev_kv = *self.watchers.get(&resp.watch_id)?;
        if resp.compact_revision != 0 {
            self.watchers.remove(&resp.watch_id);
        }
        if prev_kv {
            for ev in &mut resp.events {
                let Some(kv) = &ev.kv else { continue };
                if ev.is_put() && kv.version == 1 {
                    continue;
                }
                match self.inner.value_at(&kv.key, kv.mod_revision - 1) {
                    Ok(prev) => ev.prev_kv = prev,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading previous value for a watch event")
                    }
                }
            }
        }
        Some(resp)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut hub = self.inner.hub.lock();
        for id in self.watchers.keys() {
            hub.remove((self.stream, *id));
        }
    }
}
