//! Reads and write transactions of the store: range at any uncompacted revision, and the
//! write transaction (put, delete range, txn) that commits all its changes at one revision
//! and records the raft entry it applies.

use prost::Message;

use backend::BatchTx;
use parking_lot::MutexGuard;

use crate::error::Corruption;
use crate::kvstore::{decode_kv, KvStore};
use crate::request::*;
use crate::schema::KEY_TABLE;
use crate::{Error, Event, EventType, KeyRange, KeyValue, Result, Revision};

/// Values fetched per backend read lock when answering a range.
const FETCH_CHUNK: usize = 256;

impl KvStore {
    /// Range with etcd's semantics (see [`RangeRequest`]) at the current revision.
    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let revs = *self.revs.read();
        self.range_at(req, revs.current, revs.compact)
    }

    /// Every live key with a lease, for the lessor to re-attach after a restart.
    pub(crate) fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        let all = RangeRequest::range(vec![0u8], vec![0u8]);
        Ok(self
            .range(&all)?
            .kvs
            .into_iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key, kv.lease))
            .collect())
    }

    /// Starts the write transaction; waits while another one runs.
    fn write(&self) -> WriteTxn<'_> {
        let guard = self.write_lock.lock();
        let tx = self.backend.batch_tx();
        let begin = self.revs.read().current;
        WriteTxn {
            kv: self,
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
    pub(crate) fn apply<R>(
        &self,
        index: u64,
        term: u64,
        f: impl FnOnce(&mut WriteTxn<'_>) -> R,
    ) -> Option<R> {
        let mut txn = self.write();
        if self.applied(index) {
            return None;
        }
        let result = f(&mut txn);
        self.set_consistent_index(&mut txn.tx, index, term);
        Some(result)
    }

    /// A txn that only reads (ranges and compares, nested txns included), all at one
    /// revision; a put or delete in it is refused with [`Error::WriteInReadTxn`].
    pub(crate) fn read_txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        if !is_read_only(&req) {
            return Err(Error::WriteInReadTxn);
        }
        self.write().txn(req, &|_| false)
    }

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
                match read.get(KEY_TABLE, &key)? {
                    Some(v) => kvs.push(decode_kv(*rev, &v)?),
                    None => {
                        // A compaction that started after our revision check removed it.
                        if self.revs.read().compact > at_rev {
                            return Err(Error::Compacted);
                        }
                        return Err(Corruption::IndexOnly(*rev).into());
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

fn is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(t) => is_read_only(t),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
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
/// order them); the revision is published when it ends (at the end of [`crate::Store::apply`]),
/// and only if something changed.
pub struct WriteTxn<'a> {
    kv: &'a KvStore,
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
        let compact = self.kv.revs.read().compact;
        self.kv.range_at(req, self.read_revision(), compact)
    }

    /// Writes `req`'s key and value (moved into the stored value and the watch event).
    pub fn put(&mut self, req: PutRequest) -> Result<PutResponse> {
        let PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        } = req;
        let rev = self.begin + 1;
        let found = self.kv.index.get(&key, rev);
        let needs_prev = prev_kv || ignore_value || ignore_lease;
        let mut prev = match (needs_prev, found) {
            (true, Some(f)) => self.kv.fetch(&[f.modified], rev)?.pop(),
            _ => None,
        };
        if (ignore_value || ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = match &mut prev {
            Some(p) if ignore_value && prev_kv => p.value.clone(),
            Some(p) if ignore_value => std::mem::take(&mut p.value),
            _ => value,
        };
        let lease = match (&prev, ignore_lease) {
            (Some(p), true) => p.lease,
            _ => lease,
        };
        let at = Revision::new(rev, self.changes.len() as i64);
        self.kv.index.put(&key, at);
        let kv = KeyValue {
            key,
            create_revision: found.map_or(rev, |f| f.created.main),
            mod_revision: rev,
            version: found.map_or(0, |f| f.version) + 1,
            value,
            lease,
        };
        self.tx
            .put(KEY_TABLE, at.to_bytes().to_vec(), kv.encode_to_vec());
        self.changes.push(Event::new(EventType::Put, kv));
        Ok(PutResponse {
            prev_kv: if prev_kv { prev } else { None },
            revision: rev,
        })
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let read_rev = self.read_revision();
        let range = KeyRange::new(&req.key, &req.range_end);
        let keys = self.kv.index.keys(&range, read_rev);
        let prev_kvs = if req.prev_kv {
            let revs: Vec<Revision> = keys
                .iter()
                .filter_map(|k| self.kv.index.get(k, read_rev).map(|f| f.modified))
                .collect();
            self.kv.fetch(&revs, read_rev)?
        } else {
            Vec::new()
        };
        let rev = self.begin + 1;
        let deleted = keys.len() as i64;
        for key in keys {
            let at = Revision::new(rev, self.changes.len() as i64);
            self.kv.index.tombstone(&key, at);
            let tombstone = KeyValue {
                key,
                ..Default::default()
            };
            self.tx.put(
                KEY_TABLE,
                at.to_tombstone_bytes().to_vec(),
                tombstone.encode_to_vec(),
            );
            self.changes.push(Event::new(
                EventType::Delete,
                KeyValue {
                    mod_revision: rev,
                    ..tombstone
                },
            ));
        }
        Ok(DeleteRangeResponse {
            deleted,
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
        req: TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.compare_path(&req, &mut path)?;
        self.check_path(
            &req,
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
        let compact = self.kv.revs.read().compact;
        for op in ops {
            match op {
                RequestOp::Put(p) => {
                    if p.ignore_value || p.ignore_lease {
                        let exists = effects
                            .iter()
                            .rev()
                            .find(|(range, _)| range.contains(&p.key))
                            .map_or_else(
                                || self.kv.index.get(&p.key, self.begin).is_some(),
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
                            .any(|(range, _)| !self.kv.index.keys(range, self.begin).is_empty());
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

    /// Consumes the request: the values of its puts move into the store.
    fn execute(
        &mut self,
        req: TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded { req.success } else { req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(&r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(&d)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.execute(t, path)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            revision: self.read_revision(),
        })
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
            // Published inside the observer: a watcher moving from unsynced to synced sees
            // either all of this revision in the backend or gets it as an event, never both
            // or neither.
            let kv = self.kv;
            kv.observer.publish(rev, events, &mut || {
                kv.revs.write().current = rev;
            });
        }
    }
}
