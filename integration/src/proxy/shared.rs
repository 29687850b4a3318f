//! What the proxy's tasks share: the faults in force, what was learned about the members, and each
//! listening proxy's addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::rules::{Direction, Faults, Rule};

/// Which port of a member a proxy fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Peer,
    Client,
}

pub(super) struct State {
    pub(super) faults: Faults,
    /// Member ids, as rafthttp writes them, to member indexes.
    pub(super) ids: HashMap<u64, usize>,
    /// Running members' pids, to find who owns a connection that names nobody.
    pub(super) pids: HashMap<usize, u32>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Bumped on every change of the faults, to wake stalled directions and roll connection resets.
    pub(super) changed: watch::Sender<u64>,
    pub(super) seed: u64,
    pub(super) connections: AtomicU64,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn rule(&self, dir: Direction) -> Rule {
        self.state().faults.rule(dir)
    }

    /// The latest `drop_connections` call that applies to a connection carrying both directions, and
    /// its share of resets.
    pub(super) fn drop_roll(&self, dirs: [Direction; 2]) -> (u64, f64) {
        let state = self.state();
        let rule = state.faults.rule(dirs[0]).merge(state.faults.rule(dirs[1]));
        (rule.drop_call, rule.drop_share)
    }

    pub(super) fn learn(&self, id: u64, member: usize) {
        if self.state().ids.insert(id, member) != Some(member) {
            tracing::debug!(id = format!("{id:x}"), member, "proxy learned a member id");
        }
    }

    /// Returns once `dir` is not blocked.
    pub(super) async fn wait_open(&self, dir: Direction) {
        if !self.rule(dir).blocked {
            return;
        }
        let mut changes = self.changed.subscribe();
        while self.rule(dir).blocked {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One listening proxy.
#[derive(Debug)]
pub(super) struct Proxy {
    pub(super) member: usize,
    pub(super) side: Side,
    pub(super) listen: SocketAddr,
    pub(super) upstream: SocketAddr,
}
