//! Background work only the leader does (corruption checks, the downgrade monitor): a loop
//! that wakes on an interval, skips while this member is not the leader and ends with it.

use std::time::Duration;

use super::{EtcdServer, WeakServer};

impl EtcdServer {
    /// Runs `check` every `every` while this member is the leader, until it stops; the loop
    /// holds the member only weakly between checks.
    pub(super) fn spawn_leader_loop<F, Fut>(&self, every: Duration, check: F)
    where
        F: Fn(EtcdServer) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak: WeakServer = self.downgrade();
        let stopped = self.inner.proposer.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = &mut stopped => return,
                }
                let Some(server) = weak.upgrade() else { return };
                if !server.is_leader() {
                    continue;
                }
                tokio::select! {
                    _ = check(server) => {}
                    _ = &mut stopped => return,
                }
            }
        });
    }
}
