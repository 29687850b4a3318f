//! The watchers of a store, in three groups: synced ones get each revision from the write
//! path as it is published; unsynced ones (starting in the past, or back from being a victim)
//! catch up from the backend on the sync thread (`watchable_store`); victims are watchers
//! whose stream was full: their undelivered response is parked and retried, never dropped.
//!
//! Invariant: a watcher is in exactly one of synced / unsynced / victim. `min_rev` is the next
//! revision it must receive; every response moves it forward past everything the response
//! covered, so events arrive in revision order without gaps or duplicates.

use std::collections::{HashMap, HashSet};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use tokio::sync::mpsc::error::TrySendError;

use crate::kvstore::RevisionObserver;
use crate::watch_channel::ResponseSender;
use crate::{Event, KeyRange, WatchId, WatchResponse};

/// The watchers and the sync thread's wake-up: what the store notifies of its changes.
pub(crate) struct Watchers {
    pub hub: Mutex<Hub>,
    sync_wake: Sender<()>,
}

impl Watchers {
    pub(crate) fn new(sync_wake: Sender<()>) -> Self {
        Self {
            hub: Mutex::new(Hub::default()),
            sync_wake,
        }
    }

    /// Asks the sync thread for a catch-up round now.
    pub(crate) fn wake_sync(&self) {
        let _ = self.sync_wake.send(());
    }
}

impl RevisionObserver for Watchers {
    fn publish(&self, rev: i64, events: Vec<Event>, make_visible: &mut dyn FnMut()) {
        let mut hub = self.hub.lock();
        hub.notify(rev, events);
        make_visible();
    }

    fn replace(&self, swap: &mut dyn FnMut()) {
        let mut hub = self.hub.lock();
        swap();
        hub.unsync_all();
    }
}

/// A watcher's stream and its id there.
pub(crate) type WatcherKey = (u64, WatchId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Synced,
    Unsynced,
    Victim,
}

pub(crate) struct Watcher {
    pub range: KeyRange,
    pub min_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub group: Group,
    pub tx: ResponseSender,
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
    pub watchers: HashMap<WatcherKey, Watcher>,
    /// Synced single-key watchers by key, for a cheap fan-out.
    synced_keys: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    synced_ranges: HashSet<WatcherKey>,
    pub unsynced: HashSet<WatcherKey>,
    /// The parked response and the `min_rev` to set once it is delivered.
    pub victims: HashMap<WatcherKey, (WatchResponse, i64)>,
    pub next_stream: u64,
}

impl Hub {
    pub(crate) fn set_group(&mut self, wk: WatcherKey, group: Group) {
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

    pub(crate) fn remove(&mut self, wk: WatcherKey) -> bool {
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
    fn unsync_all(&mut self) {
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
    fn notify(&mut self, rev: i64, events: Vec<Event>) {
        let mut batches: HashMap<WatcherKey, Vec<Event>> = HashMap::new();
        let mut recipients = Vec::new();
        for ev in events {
            recipients.clear();
            let key = ev.key();
            if let Some(set) = self.synced_keys.get(key) {
                recipients.extend(set.iter().copied());
            }
            recipients.extend(
                self.synced_ranges
                    .iter()
                    .filter(|wk| self.watchers.get(wk).is_some_and(|w| w.range.contains(key))),
            );
            // Each recipient owns its copy; the last one gets the event itself.
            if let Some((last, others)) = recipients.split_last() {
                for wk in others {
                    batches.entry(*wk).or_default().push(ev.clone());
                }
                batches.entry(*last).or_default().push(ev);
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
    pub(crate) fn deliver(&mut self, wk: WatcherKey, resp: WatchResponse, next_rev: i64) -> bool {
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
