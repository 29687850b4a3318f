//! What the raft and apply threads learned, for everyone else to read: the term, the leader,
//! the commit and applied indexes (etcd keeps these as atomics on `EtcdServer` too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ServerError;

/// Raft's progress as seen from this member. The raft thread writes term, leader and commit;
/// the apply thread writes the applied index.
pub(crate) struct RaftStatus {
    term: AtomicU64,
    leader: AtomicU64,
    committed: AtomicU64,
    applied: watch::Sender<u64>,
    leader_changes: AtomicU64,
}

impl RaftStatus {
    pub(crate) fn new(term: u64, committed: u64, applied: u64) -> RaftStatus {
        RaftStatus {
            term: AtomicU64::new(term),
            leader: AtomicU64::new(0),
            committed: AtomicU64::new(committed),
            applied: watch::channel(applied).0,
            leader_changes: AtomicU64::new(0),
        }
    }

    pub(crate) fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// The current leader, if this member knows one.
    pub(crate) fn leader(&self) -> Option<u64> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// How often a new leader was seen (etcd's `leader_changes_seen_total`).
    pub(crate) fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Records raft's leader (0: none known); returns the one before.
    pub(crate) fn set_leader(&self, leader: u64) -> u64 {
        let before = self.leader.swap(leader, Ordering::AcqRel);
        if before != leader && leader != 0 {
            self.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        before
    }

    pub(crate) fn set_hard_state(&self, term: u64, committed: u64) {
        self.term.store(term, Ordering::Release);
        self.committed.store(committed, Ordering::Release);
    }

    pub(crate) fn set_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    /// Waits until everything up to `index` is applied, at most `timeout`.
    pub(crate) async fn wait_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        let mut rx = self.applied.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::TimeoutWaitAppliedIndex),
        }
    }
}
