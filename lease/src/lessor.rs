//! The lessor (etcd's `lease.lessor`).
//!
//! Grants, revokes, checkpoints and key attachments happen on the apply thread, each inside
//! the batch of its raft entry ([`LeaseTxn`]), so they are applied exactly once and the
//! persisted leases always match the key space. Expiry times are local: only the leader
//! ("primary") keeps them; a follower's leases never expire, and a new leader restarts every
//! lease's clock when it is promoted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::LeaseError;
use crate::store::{LeaseRecord, LeaseStore, LeaseTxn};

/// etcd's `MaxLeaseTTL`: a larger TTL is refused (`etcdserver: too large lease TTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's `leaseRevokeRate`: expired leases the leader revokes per second at most.
pub const LEASE_REVOKE_RATE: usize = 1000;
/// etcd's `leaseCheckpointRate` and `maxLeaseCheckpointBatchSize`.
pub const LEASE_CHECKPOINT_RATE: usize = 1000;
/// etcd's `expiredLeaseRetryInterval`: an expired lease whose revoke is proposed is proposed
/// again only after this long (the first proposal may have been lost to a leader change).
const EXPIRED_RETRY: Duration = Duration::from_secs(3);
/// etcd's `--experimental-lease-checkpoint-interval` default.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

struct Lease {
    /// Granted TTL in seconds (after raising it to the minimum).
    ttl: i64,
    /// The remaining TTL of the last checkpoint, 0 when none: a new leader restarts the lease
    /// with this instead of the full TTL.
    remaining_ttl: i64,
    /// When the lease expires; `None` on a follower (forever).
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
    /// When the leader last proposed revoking it.
    revoke_proposed: Option<Instant>,
    next_checkpoint: Option<Instant>,
}

impl Lease {
    fn refresh(&mut self, now: Instant, extend: Duration) {
        let secs = if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        };
        self.expiry = Some(now + extend + Duration::from_secs(secs.max(0) as u64));
        self.revoke_proposed = None;
    }

    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    fn record(&self, id: i64) -> LeaseRecord {
        LeaseRecord {
            id,
            ttl: self.ttl,
            remaining_ttl: self.remaining_ttl,
        }
    }
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// Each leased key's lease.
    attached: BTreeMap<Vec<u8>, i64>,
    primary: bool,
    /// Counts demotions, so a promotion decided before one is refused.
    demotions: u64,
}

impl State {
    fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.attached.remove(key) {
            if let Some(l) = self.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
    }
}

/// What a renewal on this member found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// Renewed; the lease's granted TTL.
    Ttl(i64),
    NotFound,
    /// This member is not the leader: the renewal must go to the leader.
    NotPrimary,
    /// The lease expired and its revoke is under way; the caller waits for it.
    Expired,
}

/// A lease as TimeToLive reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Remaining seconds.
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The member's leases.
pub struct Lessor {
    state: Mutex<State>,
    min_ttl: i64,
    checkpoint_interval: Option<Duration>,
}

impl Lessor {
    /// `min_ttl`: the shortest TTL granted (etcd: ⌈1.5 × election timeout⌉ seconds);
    /// `checkpoint_interval`: how often the leader checkpoints long leases (`None`: never).
    pub fn new(min_ttl: i64, checkpoint_interval: Option<Duration>) -> Lessor {
        Lessor {
            state: Mutex::new(State::default()),
            min_ttl,
            checkpoint_interval,
        }
    }

    /// etcd's minimum TTL for an election timeout: 1.5 election timeouts, rounded up to seconds.
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        let ms = election_timeout.as_millis() as i64 * 3 / 2;
        ((ms + 999) / 1000).max(1)
    }

    /// Reloads every lease and every key attachment from `store` (after a start or a
    /// snapshot restore). Expiries restart if this member leads.
    pub fn recover<S: LeaseStore>(&self, store: &S) -> Result<(), S::Error> {
        let records = store.leases()?;
        let keys = store.leased_keys()?;
        let mut state = self.state.lock();
        let primary = state.primary;
        let now = Instant::now();
        state.leases.clear();
        state.attached.clear();
        for r in records {
            let mut lease = Lease {
                ttl: r.ttl,
                remaining_ttl: r.remaining_ttl,
                expiry: None,
                keys: BTreeSet::new(),
                revoke_proposed: None,
                next_checkpoint: None,
            };
            if primary {
                lease.refresh(now, Duration::ZERO);
            }
            state.leases.insert(r.id, lease);
        }
        for (key, id) in keys {
            // A key whose lease is gone keeps its lease id, as in etcd; nothing revokes it.
            if let Some(l) = state.leases.get_mut(&id) {
                l.keys.insert(key.clone());
                state.attached.insert(key, id);
            }
        }
        Ok(())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.state.lock().leases.contains_key(&id)
    }

    // ---- applied through raft (inside the entry's store batch) ----

    /// Grants lease `id`; returns the TTL granted.
    pub fn grant(&self, txn: &mut impl LeaseTxn, id: i64, ttl: i64) -> Result<i64, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let mut state = self.state.lock();
        if state.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let mut lease = Lease {
            ttl: ttl.max(self.min_ttl),
            remaining_ttl: 0,
            expiry: None,
            keys: BTreeSet::new(),
            revoke_proposed: None,
            next_checkpoint: None,
        };
        let now = Instant::now();
        if state.primary {
            lease.refresh(now, Duration::ZERO);
            lease.next_checkpoint = self.first_checkpoint(&lease, now);
        }
        txn.put_lease(&lease.record(id));
        let granted = lease.ttl;
        state.leases.insert(id, lease);
        Ok(granted)
    }

    /// Revokes lease `id`: deletes every attached key (in key order, all in this entry's single
    /// revision) and the lease.
    pub fn revoke<T: LeaseTxn>(&self, txn: &mut T, id: i64) -> Result<(), LeaseError<T::Error>> {
        let mut state = self.state.lock();
        let Some(lease) = state.leases.remove(&id) else {
            return Err(LeaseError::NotFound);
        };
        for key in &lease.keys {
            txn.delete_key(key).map_err(LeaseError::Store)?;
            state.attached.remove(key);
        }
        txn.delete_lease(id);
        Ok(())
    }

    /// Records a checkpoint's remaining TTL (`0` clears it).
    pub fn checkpoint(&self, txn: &mut impl LeaseTxn, id: i64, remaining_ttl: i64) {
        let mut state = self.state.lock();
        let primary = state.primary;
        if let Some(lease) = state.leases.get_mut(&id) {
            lease.remaining_ttl = remaining_ttl;
            txn.put_lease(&lease.record(id));
            if primary {
                lease.next_checkpoint = self.first_checkpoint(lease, Instant::now());
            }
        }
    }

    /// A put of `key` with `lease` (0: none) was applied.
    pub fn attach(&self, key: &[u8], lease: i64) {
        let mut state = self.state.lock();
        if state.attached.get(key) == Some(&lease) {
            return;
        }
        state.detach(key);
        if lease != 0 {
            if let Some(l) = state.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
                state.attached.insert(key.to_vec(), lease);
            }
        }
    }

    /// A delete of `key` was applied.
    pub fn detach(&self, key: &[u8]) {
        self.state.lock().detach(key);
    }

    /// A delete of every key in `[start, end)` was applied (`end` `None`: every key from
    /// `start` on).
    pub fn detach_range(&self, start: &[u8], end: Option<&[u8]>) {
        if end.is_some_and(|end| end <= start) {
            return;
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut state = self.state.lock();
        let keys: Vec<Vec<u8>> = state
            .attached
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            state.detach(&k);
        }
    }

    // ---- leader side ----

    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// This member became leader (and applied the previous terms' entries): every lease
    /// expires `extend` plus its remaining (checkpointed) or full TTL from now, as etcd's
    /// `Promote`; when many would expire at once they are spread out at the revoke rate.
    pub fn promote(&self, extend: Duration) {
        let epoch = self.demotions();
        self.promote_unless_demoted_since(epoch, extend);
    }

    /// How many times this member stopped leading.
    pub fn demotions(&self) -> u64 {
        self.state.lock().demotions
    }

    /// [`Lessor::promote`], unless a demotion happened since [`Lessor::demotions`] returned
    /// `epoch` (leadership was lost while the promotion was being decided).
    pub fn promote_unless_demoted_since(&self, epoch: u64, extend: Duration) -> bool {
        let mut state = self.state.lock();
        if state.demotions != epoch {
            return false;
        }
        state.primary = true;
        let now = Instant::now();
        let mut expiries = Vec::with_capacity(state.leases.len());
        for (id, lease) in state.leases.iter_mut() {
            lease.refresh(now, extend);
            lease.next_checkpoint = self.first_checkpoint(lease, now);
            expiries.push((lease.expiry.unwrap_or(now), *id));
        }
        if expiries.len() < LEASE_REVOKE_RATE {
            return true;
        }
        // etcd's pile-up avoidance: no second may hold more expiries than can be revoked in it.
        expiries.sort();
        let window = Duration::from_secs(1);
        let mut base = expiries[0].0;
        let mut in_window = 0usize;
        for (expiry, id) in expiries {
            if expiry >= base + window {
                base = expiry;
                in_window = 0;
            }
            if in_window >= LEASE_REVOKE_RATE {
                base += window;
                in_window = 0;
            }
            in_window += 1;
            if let Some(l) = state.leases.get_mut(&id) {
                let spread = base.max(expiry);
                l.expiry = Some(spread);
            }
        }
        true
    }

    /// This member is no longer the leader: nothing expires here any more.
    pub fn demote(&self) {
        let mut state = self.state.lock();
        state.primary = false;
        state.demotions += 1;
        for lease in state.leases.values_mut() {
            lease.expiry = None;
            lease.revoke_proposed = None;
            lease.next_checkpoint = None;
        }
    }

    /// etcd's `Renew` on the leader: the lease expires a full TTL from now.
    pub fn renew(&self, id: i64) -> (Renewed, bool) {
        let mut state = self.state.lock();
        if !state.primary {
            return (Renewed::NotPrimary, false);
        }
        let now = Instant::now();
        let checkpoints = self.checkpoint_interval.is_some();
        let Some(lease) = state.leases.get_mut(&id) else {
            return (Renewed::NotFound, false);
        };
        if lease.expired(now) {
            return (Renewed::Expired, false);
        }
        let clear_checkpoint = checkpoints && lease.remaining_ttl > 0;
        lease.remaining_ttl = 0;
        lease.refresh(now, Duration::ZERO);
        lease.next_checkpoint = self.first_checkpoint(lease, now);
        (Renewed::Ttl(lease.ttl), clear_checkpoint)
    }

    /// Up to `limit` expired leases whose revoke is not already under way; marks them.
    pub fn take_expired(&self, limit: usize) -> Vec<i64> {
        let mut state = self.state.lock();
        if !state.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut due: Vec<(Instant, i64)> = state
            .leases
            .iter()
            .filter(|(_, l)| {
                l.expired(now) && l.revoke_proposed.is_none_or(|t| now >= t + EXPIRED_RETRY)
            })
            .map(|(id, l)| (l.expiry.unwrap_or(now), *id))
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, id) in &due {
            if let Some(l) = state.leases.get_mut(id) {
                l.revoke_proposed = Some(now);
            }
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Up to `limit` leases due for a checkpoint, with their remaining TTLs; schedules their
    /// next one.
    pub fn take_checkpoints(&self, limit: usize) -> Vec<(i64, i64)> {
        let Some(interval) = self.checkpoint_interval else {
            return Vec::new();
        };
        let mut state = self.state.lock();
        if !state.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, lease) in state.leases.iter_mut() {
            if due.len() >= limit {
                break;
            }
            if lease.next_checkpoint.is_some_and(|t| t <= now) && !lease.expired(now) {
                let remaining = lease.expiry.map_or(lease.ttl, |e| {
                    e.saturating_duration_since(now).as_secs() as i64
                });
                lease.next_checkpoint =
                    (remaining > interval.as_secs() as i64).then(|| now + interval);
                due.push((*id, remaining));
            }
        }
        due
    }

    /// etcd's `scheduleCheckpointIfNeeded`: only a lease outliving the interval is checkpointed.
    fn first_checkpoint(&self, lease: &Lease, now: Instant) -> Option<Instant> {
        let interval = self.checkpoint_interval?;
        let remaining = lease.expiry?.saturating_duration_since(now);
        (remaining > interval).then(|| now + interval)
    }

    /// Remaining and granted TTL of lease `id`, with its keys (sorted) when asked.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseStatus> {
        let state = self.state.lock();
        let lease = state.leases.get(&id)?;
        let now = Instant::now();
        let ttl = match lease.expiry {
            Some(e) => e.saturating_duration_since(now).as_secs() as i64,
            None if lease.remaining_ttl > 0 => lease.remaining_ttl,
            None => lease.ttl,
        };
        Some(LeaseStatus {
            ttl,
            granted_ttl: lease.ttl,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Calls `f` with each key attached to lease `id` (none when the lease is unknown), stopping
    /// at the first error. The lessor stays locked meanwhile: `f` must not call back into it.
    pub fn try_for_each_key<E>(
        &self,
        id: i64,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let state = self.state.lock();
        if let Some(lease) = state.leases.get(&id) {
            for key in &lease.keys {
                f(key)?;
            }
        }
        Ok(())
    }

    /// Calls `f` with every key attached to any lease, stopping at the first error. The lessor
    /// stays locked meanwhile: `f` must not call back into it.
    pub fn try_for_each_leased_key<E>(
        &self,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let state = self.state.lock();
        for key in state.attached.keys() {
            f(key)?;
        }
        Ok(())
    }

    /// Every lease id, in order.
    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.state.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests;
