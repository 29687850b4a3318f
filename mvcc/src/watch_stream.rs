//! A stream of watch responses shared by any number of watchers (one gRPC watch stream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kvstore::KvStore;
use crate::watch_channel::{channel, ResponseReceiver, ResponseSender};
use crate::watcher_group::{Group, Watcher, Watchers};
use crate::{KeyRange, Result, WatchError, WatchId, WatchRequest, WatchResponse};

/// Watchers sharing one ordered stream of responses (one gRPC watch stream, typically).
/// Dropping it cancels its watchers.
pub struct WatchStream {
    kv: Arc<KvStore>,
    watchers: Arc<Watchers>,
    stream: u64,
    tx: ResponseSender,
    rx: ResponseReceiver,
    /// Live watchers and whether they want previous values.
    ids: HashMap<WatchId, bool>,
    next_id: WatchId,
}

impl WatchStream {
    pub(crate) fn new(kv: Arc<KvStore>, watchers: Arc<Watchers>) -> Self {
        let (tx, rx) = channel(kv.config.watch_stream_capacity);
        let stream = {
            let mut hub = watchers.hub.lock();
            hub.next_stream += 1;
            hub.next_stream
        };
        Self {
            kv,
            watchers,
            stream,
            tx,
            rx,
            ids: HashMap::new(),
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
            while self.ids.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        } else if self.ids.contains_key(&req.watch_id) {
            return Err(WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        let wk = (self.stream, id);
        let mut hub = self.watchers.hub.lock();
        let current = self.kv.revs.read().current;
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
            self.watchers.wake_sync();
        }
        self.ids.insert(id, req.prev_kv);
        Ok(id)
    }

    /// Removes a watcher; false when the id is unknown. Responses it still had queued are
    /// dropped by `recv`.
    pub fn cancel(&mut self, id: WatchId) -> bool {
        if self.ids.remove(&id).is_none() {
            return false;
        }
        self.watchers.hub.lock().remove((self.stream, id));
        true
    }

    /// Queues a progress notification (no events, the current revision) for one watcher.
    /// Only a synced watcher gets one: the revision then covers every event it will not get
    /// again. False when the watcher is catching up, set aside or unknown.
    pub fn request_progress(&self, id: WatchId) -> bool {
        let hub = self.watchers.hub.lock();
        let Some(w) = hub.watchers.get(&(self.stream, id)) else {
            return false;
        };
        if w.group != Group::Synced {
            return false;
        }
        let resp = WatchResponse {
            watch_id: id,
            revision: self.kv.revs.read().current,
            ..Default::default()
        };
        w.tx.try_send(resp).is_ok()
    }

    /// Queues one stream-wide progress notification (`watch_id == -1`) if every watcher of the
    /// stream is synced; false otherwise.
    pub fn request_progress_all(&self) -> bool {
        let hub = self.watchers.hub.lock();
        let all_synced = self.ids.keys().all(|id| {
            hub.watchers
                .get(&(self.stream, *id))
                .is_some_and(|w| w.group == Group::Synced)
        });
        if !all_synced {
            return false;
        }
        let resp = WatchResponse {
            watch_id: -1,
            revision: self.kv.revs.read().current,
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
            let resp = self.rx.try_recv()?;
            if let Some(resp) = self.finish(resp) {
                return Some(resp);
            }
        }
    }

    /// The next response, waiting at most `timeout` (for threads outside an async runtime).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<WatchResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self.rx.recv_until(deadline)?;
            if let Some(resp) = self.finish(resp) {
                return Some(resp);
            }
        }
    }

    /// Drops responses of cancelled watchers, forgets compacted ones, fills `prev_kv`.
    fn finish(&mut self, mut resp: WatchResponse) -> Option<WatchResponse> {
        if resp.watch_id == -1 {
            return Some(resp);
        }
        let prev_kv = *self.ids.get(&resp.watch_id)?;
        if resp.compact_revision != 0 {
            self.ids.remove(&resp.watch_id);
        }
        if prev_kv {
            for ev in &mut resp.events {
                let Some(kv) = &ev.kv else { continue };
                if ev.is_put() && kv.version == 1 {
                    continue;
                }
                match self.kv.value_at(&kv.key, kv.mod_revision - 1) {
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
        let mut hub = self.watchers.hub.lock();
        for id in self.ids.keys() {
            hub.remove((self.stream, *id));
        }
    }
}
