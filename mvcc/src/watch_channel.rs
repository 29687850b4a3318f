//! The channel of one watch stream. The write path and the sync thread fill it with
//! `try_send` (neither may wait); the stream drains it from an async task or from a plain
//! thread, and either way a waiting receiver is woken by the send itself: `recv` through the
//! tokio channel, `recv_until` through a doorbell rung after every send.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::WatchResponse;

pub(crate) fn channel(capacity: usize) -> (ResponseSender, ResponseReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let bell = Arc::new(Doorbell::default());
    (
        ResponseSender {
            tx,
            bell: bell.clone(),
        },
        ResponseReceiver { rx, bell },
    )
}

#[derive(Clone)]
pub(crate) struct ResponseSender {
    tx: mpsc::Sender<WatchResponse>,
    bell: Arc<Doorbell>,
}

impl ResponseSender {
    pub(crate) fn try_send(&self, resp: WatchResponse) -> Result<(), TrySendError<WatchResponse>> {
        self.tx.try_send(resp)?;
        self.bell.ring();
        Ok(())
    }
}

pub(crate) struct ResponseReceiver {
    rx: mpsc::Receiver<WatchResponse>,
    bell: Arc<Doorbell>,
}

impl ResponseReceiver {
    pub(crate) async fn recv(&mut self) -> Option<WatchResponse> {
        self.rx.recv().await
    }

    pub(crate) fn try_recv(&mut self) -> Option<WatchResponse> {
        self.rx.try_recv().ok()
    }

    /// Blocks the thread until a response arrives or `deadline` passes.
    pub(crate) fn recv_until(&mut self, deadline: Instant) -> Option<WatchResponse> {
        loop {
            // Read the count before looking, so a send in between is not slept through.
            let rung = self.bell.rings();
            if let Some(resp) = self.try_recv() {
                return Some(resp);
            }
            if !self.bell.wait_past(rung, deadline) {
                return self.try_recv();
            }
        }
    }
}

/// Counts sends; a thread waits on it for the count to move.
#[derive(Default)]
struct Doorbell {
    rings: Mutex<u64>,
    rung: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.rings.lock() += 1;
        self.rung.notify_all();
    }

    fn rings(&self) -> u64 {
        *self.rings.lock()
    }

    /// Waits until the count is past `seen`; false when `deadline` came first.
    fn wait_past(&self, seen: u64, deadline: Instant) -> bool {
        let mut rings = self.rings.lock();
        while *rings == seen {
            if self.rung.wait_until(&mut rings, deadline).timed_out() {
                return *rings != seen;
            }
        }
        true
    }
}
