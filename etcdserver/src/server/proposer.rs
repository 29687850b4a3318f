//! The request side's door into the raft thread (etcd's `wait.Wait` and `idutil` beside
//! `EtcdServer.processInternalRaftRequest`): request ids, the callers waiting for their
//! proposals to be applied, read-index requests, and the member's stop signal, since a stopped
//! member fails every waiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::{InternalRaftRequest, RequestHeader};
use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use prost::Message as _;
use raftpb::{ConfChange, ConfChangeType, ConfState, Message};
use tokio::sync::{oneshot, watch};

use super::status::RaftStatus;
use crate::core::Applied;
use crate::error::ServerError;

/// Proposals refused while the apply thread lags the commit index by more (etcd's
/// `maxGapBetweenApplyAndCommitIndex`).
const MAX_APPLY_LAG: u64 = 5000;
/// How often a leadership transfer checks whether the new leader took over.
const TRANSFER_POLL: Duration = Duration::from_millis(20);

/// What the raft thread is asked to do.
pub(crate) enum RaftInput {
    Propose(Bytes),
    Step(Message),
    ReadIndex(oneshot::Sender<Result<u64, ServerError>>),
    Unreachable(u64),
    SnapshotStatus(u64, raft::SnapshotStatus),
    /// The apply thread applied (and the backend committed) everything up to `index`.
    TakeSnapshot {
        index: u64,
        conf_state: ConfState,
    },
    TransferLeader(u64),
    /// A membership change; `cc.id` is the waiter woken when it is applied (or fails here).
    ProposeConfChange {
        cc: ConfChange,
        /// Promoting a learner: only the leader knows whether it is in sync, so the check is
        /// made here, against raft's progress, right before proposing.
        promote: bool,
    },
    Stop,
}

type Waiter = oneshot::Sender<Result<Applied, ServerError>>;

/// Proposes requests and conf changes and wakes their callers once applied.
pub(crate) struct Proposer {
    raft: Sender<RaftInput>,
    status: Arc<RaftStatus>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    next_request_id: AtomicU64,
    /// `true` once the member stopped, by `stop` or because it cannot go on (a failed fsync):
    /// every request fails from then on.
    stopped: watch::Sender<bool>,
    request_timeout: Duration,
    max_request_bytes: usize,
}

impl Proposer {
    pub(crate) fn new(
        member_id: u64,
        raft: Sender<RaftInput>,
        status: Arc<RaftStatus>,
        request_timeout: Duration,
        max_request_bytes: usize,
    ) -> Proposer {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Proposer {
            raft,
            status,
            waiters: Mutex::new(HashMap::new()),
            // etcd's idutil: the member id's low 16 bits, then milliseconds, then a counter.
            next_request_id: AtomicU64::new(
                ((member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8),
            ),
            stopped: watch::channel(false).0,
            request_timeout,
            max_request_bytes,
        }
    }

    /// etcd's request timeout: how long a caller waits for raft.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once the member stops.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopped.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Hands `input` to the raft thread; false once it is gone.
    pub(crate) fn send(&self, input: RaftInput) -> bool {
        self.raft.send(input).is_ok()
    }

    /// Marks the member stopped and fails every caller still waiting: nothing will apply
    /// their proposals now.
    pub(crate) fn stop(&self) {
        self.stopped.send_replace(true);
        for (_, w) in self.waiters.lock().drain() {
            let _ = w.send(Err(ServerError::Stopped));
        }
    }

    /// Stops the member because it cannot go on.
    pub(crate) fn fatal(&self, why: &str) {
        tracing::error!(reason = %why, "stopping the member");
        self.stop();
    }

    /// Wakes the caller of request `id` with what applying it produced.
    pub(crate) fn wake(&self, id: u64, result: Result<Applied, ServerError>) {
        let waiter = {
            let mut waiters = self.waiters.lock();
            let w = waiters.remove(&id);
            crate::metrics::hooks::proposals_pending(waiters.len());
            w
        };
        if let Some(w) = waiter {
            let _ = w.send(result);
        }
    }

    /// Replicates `req` through raft and returns what applying it produced.
    pub(crate) async fn propose(
        &self,
        mut req: InternalRaftRequest,
    ) -> Result<Applied, ServerError> {
        if self.is_stopped() {
            return Err(ServerError::Stopped);
        }
        if self.status.committed() > self.status.applied() + MAX_APPLY_LAG {
            return Err(ServerError::TooManyRequests);
        }
        let id = self.next_request_id();
        let header = req.header.get_or_insert_with(RequestHeader::default);
        header.id = id;
        let data = req.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(ServerError::RequestTooLarge);
        }
        let rx = self.register(id);
        let leader_before = self.status.leader();
        if !self.send(RaftInput::Propose(Bytes::from(data))) {
            self.waiters.lock().remove(&id);
            return Err(ServerError::Stopped);
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.waiters.lock().remove(&id);
                if self.status.leader() != leader_before {
                    Err(ServerError::TimeoutDueToLeaderFail)
                } else {
                    Err(ServerError::Timeout)
                }
            }
        }
    }

    /// Proposes `req` without waiting for it (etcd's `publish` retries on its own).
    pub(crate) fn propose_unwaited(&self, mut req: InternalRaftRequest) {
        req.header.get_or_insert_with(RequestHeader::default).id = self.next_request_id();
        let _ = self.send(RaftInput::Propose(Bytes::from(req.encode_to_vec())));
    }

    /// Proposes one conf change and waits until it is applied.
    pub(crate) async fn propose_conf_change(
        &self,
        kind: ConfChangeType,
        node_id: u64,
        context: Vec<u8>,
        promote: bool,
    ) -> Result<(), ServerError> {
        if self.is_stopped() {
            return Err(ServerError::Stopped);
        }
        let id = self.next_request_id();
        let rx = self.register(id);
        let cc = ConfChange {
            id,
            change_type: kind as i32,
            node_id,
            context: Bytes::from(context),
        };
        if !self.send(RaftInput::ProposeConfChange { cc, promote }) {
            self.waiters.lock().remove(&id);
            return Err(ServerError::Stopped);
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result.map(|_| ()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.waiters.lock().remove(&id);
                Err(ServerError::Timeout)
            }
        }
    }

    /// Returns once this member has applied everything committed before the call (etcd's
    /// linearizable read barrier, served by a batched ReadIndex).
    pub(crate) async fn read_barrier(&self) -> Result<(), ServerError> {
        if self.is_stopped() {
            return Err(ServerError::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        if !self.send(RaftInput::ReadIndex(tx)) {
            return Err(ServerError::Stopped);
        }
        let index = match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => return Err(ServerError::Timeout),
        };
        self.status.wait_applied(index, self.request_timeout).await
    }

    /// Asks raft to hand leadership to `to` and waits (bounded) until it has.
    pub(crate) async fn transfer_leadership(&self, to: u64) -> Result<(), ServerError> {
        let _ = self.send(RaftInput::TransferLeader(to));
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        while tokio::time::Instant::now() < deadline {
            if self.status.leader() == Some(to) {
                return Ok(());
            }
            tokio::time::sleep(TRANSFER_POLL).await;
        }
        Err(ServerError::Timeout)
    }

    fn register(&self, id: u64) -> oneshot::Receiver<Result<Applied, ServerError>> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock();
        waiters.insert(id, tx);
        crate::metrics::hooks::proposals_pending(waiters.len());
        rx
    }
}
