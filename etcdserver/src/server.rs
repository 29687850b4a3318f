//! The member: raft, storage and the mvcc store wired together (etcd's `EtcdServer`).
//!
//! Threads: the raft thread ([`crate::raft_loop`]) owns raft and the WAL; the apply thread
//! applies committed entries to the store in log order and wakes the callers waiting on them;
//! gRPC handlers run on tokio and talk to both through channels.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use api::etcdserverpb::{InternalRaftRequest, RequestHeader};
use backend::{Backend, BackendConfig};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use raft::{Config as RaftConfig, Peer, RawNode};
use raftpb::{ConfChangeType, ConfState, Entry, EntryType};
use tokio::sync::{oneshot, watch};

use crate::apply::KvApplier;
use crate::core::{Applied, Limits, ServerCore};
use crate::error::ServerError;
use crate::membership::{cluster_id, Member, Membership};
use crate::raft_loop::{ApplyTask, RaftInput, RaftLoop};
use crate::storage::{Dirs, DiskStorage, WalMetadata};

/// etcd keeps this many entries in the raft log after a snapshot, so that a follower slightly
/// behind catches up from the log rather than from a whole database (`snapshotCatchUpEntries`).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
/// Proposals refused while the apply thread lags the commit index by more (etcd's
/// `maxGapBetweenApplyAndCommitIndex`).
const MAX_APPLY_LAG: u64 = 5000;
/// How often a member checks that its attributes were published, and proposes them if not.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);

/// Everything the server core needs to start a member.
#[derive(Debug, Clone)]
pub struct ServerParams {
    pub name: String,
    pub data_dir: PathBuf,
    /// This member's advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// This member's advertised client URLs.
    pub client_urls: Vec<String>,
    /// `--initial-cluster`: every founding member's name and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state new`.
    pub new_cluster: bool,
    pub token: String,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catch_up_entries: u64,
    pub limits: Limits,
    pub auto_compaction: Option<crate::config::AutoCompaction>,
    /// How often the leader checkpoints long leases' remaining TTLs; None: never.
    pub lease_checkpoint_interval: Option<Duration>,
}

impl ServerParams {
    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the data dir: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot open the backend: {0}")]
    Backend(#[from] backend::Error),
    #[error("cannot open the mvcc store: {0}")]
    Mvcc(#[from] mvcc::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("snap: {0}")]
    Snap(#[from] snap::Error),
}

type Waiter = oneshot::Sender<Result<Applied, ServerError>>;

/// State shared by the raft thread, the apply thread and the request handlers.
pub(crate) struct Shared {
    pub member_id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    pub store: Arc<mvcc::Store>,
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub committed: AtomicU64,
    pub applied: watch::Sender<u64>,
    pub snapshot_index: AtomicU64,
    pub leader_changes: AtomicU64,
    pub membership: RwLock<Membership>,
    pub raft_tx: Sender<RaftInput>,
    pub(crate) waiters: Mutex<HashMap<u64, Waiter>>,
    pub(crate) next_request_id: AtomicU64,
    /// Held while a membership change is in flight: raft takes one conf change at a time.
    pub(crate) reconfig: tokio::sync::Mutex<()>,
    pub lessor: Arc<crate::lessor::Lessor>,
    pub limits: Limits,
    pub request_timeout: Duration,
    pub election_timeout: Duration,
    transport: OnceLock<rafthttp::Transport>,
    /// `true` once the member stopped, by `stop` or because it cannot go on (a failed fsync):
    /// every request fails from then on. `is_stopped` reads it; tasks wait on it.
    pub stop_notify: watch::Sender<bool>,
}

impl Shared {
    pub fn is_stopped(&self) -> bool {
        *self.stop_notify.borrow()
    }

    pub fn transport(&self) -> &rafthttp::Transport {
        self.transport
            .get()
            .expect("transport set before the raft thread starts")
    }

    pub fn on_soft_state(&self, leader: u64, is_leader: bool) {
        let before = self.leader.swap(leader, Ordering::AcqRel);
        if before != leader {
            if leader != 0 {
                self.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(
                leader = format!("{leader:x}"),
                is_leader,
                "raft leader changed"
            );
        }
        if !is_leader {
            // Only a leader expires leases; a new one is promoted once it caught up.
            self.lessor.demote();
        }
        crate::metrics_hooks::leader(self.member_id, leader, before != leader && leader != 0);
    }

    pub fn fatal(&self, why: String) {
        tracing::error!(reason = %why, "stopping the member");
        self.stop_notify.send_replace(true);
        for (_, w) in self.waiters.lock().drain() {
            let _ = w.send(Err(ServerError::Stopped));
        }
    }

    pub fn membership_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.membership.read().list()).unwrap_or_default()
    }

    pub(crate) fn wake(&self, id: u64, result: Result<Applied, ServerError>) {
        let waiter = {
            let mut waiters = self.waiters.lock();
            let w = waiters.remove(&id);
            crate::metrics_hooks::proposals_pending(waiters.len());
            w
        };
        if let Some(w) = waiter {
            let _ = w.send(result);
        }
    }
}

/// A running member. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct EtcdServer {
    pub(crate) shared: Arc<Shared>,
}

/// Raft and apply threads of a started member; joined by [`EtcdServer::stop`].
pub struct Threads {
    raft: Option<std::thread::JoinHandle<()>>,
    apply: Option<std::thread::JoinHandle<()>>,
}

impl EtcdServer {
    /// Opens or creates the member's data dir, starts raft and apply threads and the peer
    /// transport (on the current tokio runtime). Peers are served by the caller with
    /// [`EtcdServer::peer_router`].
    pub fn start(params: ServerParams) -> Result<(EtcdServer, Threads), StartError> {
        let dirs = Dirs::new(&params.data_dir);
        std::fs::create_dir_all(&dirs.snap).map_err(|e| {
            StartError::Config(format!("cannot create {}: {e}", dirs.snap.display()))
        })?;
        let restarting = DiskStorage::exists(&dirs);
        // Joining a running cluster: its members tell us the cluster id and our member id.
        let joining = if !restarting && !params.new_cluster {
            Some(join_existing(&params)?)
        } else {
            None
        };

        let backend = Arc::new(Backend::open(
            &dirs.db,
            BackendConfig::default(),
            &crate::schema::TABLES,
        )?);
        let store = Arc::new(mvcc::Store::open(
            backend.clone(),
            mvcc::StoreConfig::default(),
        )?);

        let (storage, member_id, cluster_id, snapshot, bootstrap_peers) = if restarting {
            let rec = DiskStorage::open(&dirs)?;
            let (ci, _) = store.consistent_index();
            if rec.snapshot.index() > ci {
                // A snapshot's database was received but not yet swapped in before a crash.
                let db = rec.storage.snapshotter.db_path(rec.snapshot.index()).map_err(|e| {
                    StartError::Config(format!(
                        "the backend is at index {ci}, behind snapshot {}, and its database is missing: {e}",
                        rec.snapshot.index()
                    ))
                })?;
                restore_store_from(&store, &db)?;
            }
            if params.new_cluster {
                if let Ok((_, me, cid)) = identity_from_flags(&params) {
                    // Only when both differ: a member whose cluster changed at runtime still
                    // matches by its own id, and one whose URLs changed by its cluster's.
                    if me != rec.metadata.node_id && cid != rec.metadata.cluster_id {
                        return Err(StartError::Config(format!(
                            "data dir {} belongs to member {:x} of cluster {:x}, but --name, --initial-cluster and --initial-cluster-token describe member {me:x} of cluster {cid:x}; give this member its own data dir",
                            params.data_dir.display(),
                            rec.metadata.node_id,
                            rec.metadata.cluster_id,
                        )));
                    }
                }
            }
            tracing::info!(
                member = format!("{:x}", rec.metadata.node_id),
                cluster = format!("{:x}", rec.metadata.cluster_id),
                snapshot = rec.snapshot.index(),
                "restarting member from its data dir"
            );
            (
                rec.storage,
                rec.metadata.node_id,
                rec.metadata.cluster_id,
                rec.snapshot,
                Vec::new(),
            )
        } else if let Some((remote, me)) = &joining {
            let storage = DiskStorage::create(
                &dirs,
                &WalMetadata {
                    node_id: *me,
                    cluster_id: remote.cluster_id,
                },
            )?;
            tracing::info!(
                member = format!("{me:x}"),
                cluster = format!("{:x}", remote.cluster_id),
                "joining an existing cluster; catching up from its leader"
            );
            (
                storage,
                *me,
                remote.cluster_id,
                raftpb::Snapshot::default(),
                Vec::new(),
            )
        } else {
            let (members, me, cid) = identity_from_flags(&params)?;
            let storage = DiskStorage::create(
                &dirs,
                &WalMetadata {
                    node_id: me,
                    cluster_id: cid,
                },
            )?;
            let peers = members
                .iter()
                .map(|m| Peer {
                    id: m.id,
                    context: Bytes::from(serde_json::to_vec(m).expect("member serializes")),
                })
                .collect::<Vec<_>>();
            tracing::info!(
                member = format!("{me:x}"),
                cluster = format!("{cid:x}"),
                "starting a new member of a new cluster"
            );
            (storage, me, cid, raftpb::Snapshot::default(), peers)
        };

        let membership = Membership::load(&backend).map_err(StartError::Config)?;
        let lessor = Arc::new(crate::lessor::Lessor::new(
            crate::lessor::Lessor::min_ttl_for(params.election_timeout),
            params.lease_checkpoint_interval,
        ));
        lessor.recover(&store).map_err(StartError::Config)?;
        if membership.removed.contains(&member_id) {
            return Err(StartError::Config(format!(
                "the member has been permanently removed from the cluster (member {member_id:x})"
            )));
        }
        let (applied_index, _) = store.consistent_index();
        let applied_index = applied_index.max(snapshot.index());
        let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
        let (applied_tx, _) = watch::channel(applied_index);
        let (stop_tx, _) = watch::channel(false);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            member_id,
            cluster_id,
            name: params.name.clone(),
            client_urls: params.client_urls.clone(),
            store: store.clone(),
            term: AtomicU64::new(storage.mem.hard_state().term),
            leader: AtomicU64::new(0),
            committed: AtomicU64::new(storage.mem.hard_state().commit),
            applied: applied_tx,
            snapshot_index: AtomicU64::new(snapshot.index()),
            leader_changes: AtomicU64::new(0),
            membership: RwLock::new(membership),
            raft_tx: raft_tx.clone(),
            waiters: Mutex::new(HashMap::new()),
            // etcd's idutil: the member id's low 16 bits, then milliseconds, then a counter.
            next_request_id: AtomicU64::new(
                ((member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8),
            ),
            lessor: lessor.clone(),
            limits: params.limits,
            request_timeout: params.request_timeout(),
            election_timeout: params.election_timeout,
            reconfig: tokio::sync::Mutex::new(()),
            transport: OnceLock::new(),
            stop_notify: stop_tx,
        });

        let transport = rafthttp::Transport::new(
            rafthttp::TransportConfig {
                member_id,
                cluster_id,
                dial_timeout: Duration::from_secs(1),
            },
            Arc::new(PeerHandler {
                shared: Arc::downgrade(&shared),
                snapshotter: snap::Snapshotter::new(&dirs.snap)?,
            }),
        );
        let _ = shared.transport.set(transport);

        let heartbeat_ms = params.heartbeat.as_millis().max(1) as u64;
        let config = RaftConfig {
            id: member_id,
            election_tick: (params.election_timeout.as_millis() as u64 / heartbeat_ms).max(2)
                as usize,
            heartbeat_tick: 1,
            applied: snapshot.index(),
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 4096 / 8,
            max_uncommitted_entries_size: 1 << 30,
            check_quorum: true,
            pre_vote: true,
            ..RaftConfig::default()
        };
        let mut node = RawNode::new(&config, storage.mem.clone())?;
        if !bootstrap_peers.is_empty() {
            node.bootstrap(&bootstrap_peers)?;
            for p in &bootstrap_peers {
                if let Ok(m) = serde_json::from_slice::<Member>(&p.context) {
                    if m.id != member_id {
                        shared.transport().add_peer(m.id, m.peer_urls);
                    }
                }
            }
        } else {
            let mut known = shared.membership.read().list();
            if let Some((remote, _)) = &joining {
                known = remote.members.clone();
            }
            for m in known {
                if m.id != member_id {
                    shared.transport().add_peer(m.id, m.peer_urls.clone());
                }
            }
        }

        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let raft_loop = RaftLoop {
            node,
            storage,
            shared: shared.clone(),
            inputs: raft_rx,
            apply: apply_tx,
            heartbeat: params.heartbeat,
            snapshot_catch_up_entries: params.snapshot_catch_up_entries,
        };
        let raft = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || raft_loop.run())
            .map_err(|e| StartError::Config(format!("cannot start the raft thread: {e}")))?;
        let applier = ApplyLoop {
            shared: shared.clone(),
            kv: KvApplier::with_lessor(store.clone(), lessor),
            tasks: apply_rx,
            snapshotter: snap::Snapshotter::new(&dirs.snap)?,
            snapshot_count: params.snapshot_count,
            conf_state: snapshot.conf_state(),
            last_snapshot: snapshot.index(),
        };
        let apply = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run())
            .map_err(|e| StartError::Config(format!("cannot start the apply thread: {e}")))?;

        crate::metrics::metrics().set_member_id(member_id);
        let server = EtcdServer { shared };
        server.spawn_publish();
        crate::lease_service::spawn_lease_leader(&server);
        Ok((
            server,
            Threads {
                raft: Some(raft),
                apply: Some(apply),
            },
        ))
    }

    /// The peer listener's handlers: raft's transport plus etcd's `/members` and `/version`.
    pub fn peer_router(&self) -> axum::Router {
        let shared = self.shared.clone();
        self.shared
            .transport()
            .router()
            .merge(crate::lease_service::peer_routes(self))
            .merge(crate::reconfig::peer_routes(self))
            .route(
                "/members",
                axum::routing::get(move || {
                    let shared = shared.clone();
                    async move {
                        (
                            [
                                (
                                    axum::http::header::CONTENT_TYPE,
                                    "application/json".to_owned(),
                                ),
                                (
                                    axum::http::HeaderName::from_static(
                                        crate::join::CLUSTER_ID_HEADER,
                                    ),
                                    format!("{:x}", shared.cluster_id),
                                ),
                            ],
                            shared.membership_json(),
                        )
                    }
                }),
            )
    }

    /// Where to forward what only the leader can answer: the leader's peer URLs, or none when
    /// the leader is unknown or is this member.
    pub(crate) fn leader_peer_urls(&self) -> Vec<String> {
        match self.leader_id() {
            Some(leader) if leader != self.member_id() => self
                .shared
                .membership
                .read()
                .members
                .get(&leader)
                .map(|m| m.peer_urls.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub fn membership(&self) -> Membership {
        self.shared.membership.read().clone()
    }

    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    pub fn committed_index(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// Whether this member is a learner (it then serves only what etcd lets a learner serve).
    pub fn is_learner(&self) -> bool {
        self.shared
            .membership
            .read()
            .members
            .get(&self.shared.member_id)
            .is_some_and(|m| m.is_learner)
    }

    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.shared.member_id)
    }

    pub fn leader_changes(&self) -> u64 {
        self.shared.leader_changes.load(Ordering::Relaxed)
    }

    /// Whether this member's name and client URLs are in the applied membership (etcd's
    /// `publish`); etcd serves clients only from then on.
    pub fn is_published(&self) -> bool {
        let s = &self.shared;
        s.membership
            .read()
            .members
            .get(&s.member_id)
            .is_some_and(|m| m.name == s.name && m.client_urls == s.client_urls)
    }

    /// Resolves once the member stops (fatal error or [`EtcdServer::stop`]).
    pub async fn stopped(&self) {
        let mut rx = self.shared.stop_notify.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Asks raft to hand leadership to `to` and waits (bounded) until it has.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), ServerError> {
        let _ = self.shared.raft_tx.send(RaftInput::TransferLeader(to));
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        while tokio::time::Instant::now() < deadline {
            if self.leader_id() == Some(to) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ServerError::Timeout)
    }

    /// Stops raft, apply and the transport, and makes the backend durable.
    pub fn stop(&self, mut threads: Threads) {
        let _ = self.shared.raft_tx.send(RaftInput::Stop);
        if let Some(t) = threads.raft.take() {
            let _ = t.join();
        }
        if let Some(t) = threads.apply.take() {
            let _ = t.join();
        }
        self.shared.transport().stop();
        if let Err(e) = self.shared.store.commit() {
            tracing::error!(error = %e, "committing the backend at stop");
        }
        self.shared.stop_notify.send_replace(true);
        // Nothing will apply them now; their callers (and their handles on the member) go.
        for (_, w) in self.shared.waiters.lock().drain() {
            let _ = w.send(Err(ServerError::Stopped));
        }
    }

    /// etcd's `publish`: once the member has a leader, records its name and client URLs in the
    /// membership through raft, retrying until it succeeds.
    fn spawn_publish(&self) {
        // The loop holds the member only weakly and never waits on a proposal: it proposes,
        // then looks at the applied membership again, so a stopped member is released at once.
        let weak = Arc::downgrade(&self.shared);
        let mut stopped = self.shared.stop_notify.subscribe();
        tokio::spawn(async move {
            loop {
                {
                    let Some(shared) = weak.upgrade() else { return };
                    if shared.is_stopped() {
                        return;
                    }
                    let published = shared
                        .membership
                        .read()
                        .members
                        .get(&shared.member_id)
                        .is_some_and(|m| {
                            m.name == shared.name && m.client_urls == shared.client_urls
                        });
                    if published {
                        tracing::info!("published local member to cluster through raft");
                        return;
                    }
                    if shared.leader.load(Ordering::Acquire) != 0 {
                        let req = InternalRaftRequest {
                            header: Some(RequestHeader {
                                id: shared.next_request_id.fetch_add(1, Ordering::Relaxed),
                                ..Default::default()
                            }),
                            cluster_member_attr_set: Some(
                                api::etcdserverpb::ClusterMemberAttrSetRequest {
                                    member_id: shared.member_id,
                                    member_attributes: Some(api::etcdserverpb::Attributes {
                                        name: shared.name.clone(),
                                        client_urls: shared.client_urls.clone(),
                                    }),
                                },
                            ),
                            ..Default::default()
                        };
                        let data = Bytes::from(req.encode_to_vec());
                        let _ = shared.raft_tx.send(RaftInput::Propose(data));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(PUBLISH_RETRY) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        });
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ServerError> {
        let mut rx = self.shared.applied.subscribe();
        let waited = tokio::time::timeout(
            self.shared.request_timeout,
            rx.wait_for(|applied| *applied >= index),
        )
        .await
        .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::TimeoutWaitAppliedIndex),
        }
    }
}

impl ServerCore for EtcdServer {
    async fn grant_session_lease(&self, ttl: i64) -> Result<i64, ServerError> {
        self.lease_grant(0, ttl).await.map(|(id, _)| id)
    }

    fn store(&self) -> &Arc<mvcc::Store> {
        &self.shared.store
    }

    fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Acquire)
    }

    fn leader_id(&self) -> Option<u64> {
        match self.shared.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    fn limits(&self) -> Limits {
        self.shared.limits
    }

    async fn propose(&self, mut req: InternalRaftRequest) -> Result<Applied, ServerError> {
        let shared = &self.shared;
        if shared.is_stopped() {
            return Err(ServerError::Stopped);
        }
        let applied = *shared.applied.borrow();
        if shared.committed.load(Ordering::Acquire) > applied + MAX_APPLY_LAG {
            return Err(ServerError::TooManyRequests);
        }
        let id = shared.next_request_id.fetch_add(1, Ordering::Relaxed);
        let header = req.header.get_or_insert_with(RequestHeader::default);
        header.id = id;
        let data = req.encode_to_vec();
        if data.len() > shared.limits.max_request_bytes {
            return Err(ServerError::RequestTooLarge);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = shared.waiters.lock();
            waiters.insert(id, tx);
            crate::metrics_hooks::proposals_pending(waiters.len());
        }
        let leader_before = shared.leader.load(Ordering::Acquire);
        if shared
            .raft_tx
            .send(RaftInput::Propose(Bytes::from(data)))
            .is_err()
        {
            shared.waiters.lock().remove(&id);
            return Err(ServerError::Stopped);
        }
        match tokio::time::timeout(shared.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                shared.waiters.lock().remove(&id);
                if shared.leader.load(Ordering::Acquire) != leader_before {
                    Err(ServerError::TimeoutDueToLeaderFail)
                } else {
                    Err(ServerError::Timeout)
                }
            }
        }
    }

    async fn read_barrier(&self) -> Result<(), ServerError> {
        if self.shared.is_stopped() {
            return Err(ServerError::Stopped);
        }
        // A learner may ask too: raft forwards its ReadIndex to the leader. Which client RPCs a learner
        // serves is decided at the gRPC edge (`learner_guard`); /health needs the barrier on a learner.
        let (tx, rx) = oneshot::channel();
        if self.shared.raft_tx.send(RaftInput::ReadIndex(tx)).is_err() {
            return Err(ServerError::Stopped);
        }
        let index = match tokio::time::timeout(self.shared.request_timeout, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => return Err(ServerError::Timeout),
        };
        self.wait_applied(index).await
    }
}

/// The founding members, this member's id and the cluster id that `--initial-cluster`,
/// `--initial-advertise-peer-urls` and `--initial-cluster-token` give, computed as etcd does.
fn identity_from_flags(params: &ServerParams) -> Result<(Vec<Member>, u64, u64), StartError> {
    let members: Vec<Member> = params
        .initial_cluster
        .iter()
        .map(|(name, urls)| Member::new(name, urls, &params.token, None))
        .collect();
    let mut local_urls = params.peer_urls.clone();
    local_urls.sort();
    let me = members
        .iter()
        .zip(&params.initial_cluster)
        .find(|(m, (name, _))| *name == params.name && m.peer_urls == local_urls)
        .map(|(m, _)| m.id)
        .ok_or_else(|| {
            StartError::Config(format!(
        "couldn't find local name {:?} with peer URLs {:?} in the initial cluster configuration",
        params.name, params.peer_urls
            ))
        })?;
    let cid = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    Ok((members, me, cid))
}

/// The running cluster and this member's id in it, from the peers `--initial-cluster` lists.
fn join_existing(params: &ServerParams) -> Result<(crate::join::RemoteCluster, u64), StartError> {
    let mut own = params.peer_urls.clone();
    own.sort();
    let urls: Vec<String> = params
        .initial_cluster
        .iter()
        .flat_map(|(_, urls)| urls.iter().cloned())
        .filter(|u| !own.contains(u))
        .collect();
    let remote =
        crate::join::cluster_from_peers(&urls).map_err(|e| StartError::Config(e.to_string()))?;
    let me = crate::join::local_id(&remote, &params.peer_urls)
        .map_err(|e| StartError::Config(e.to_string()))?;
    Ok((remote, me))
}

/// Replaces the store's contents with the database file at `path` (a snapshot received from the
/// leader).
fn restore_store_from(store: &mvcc::Store, path: &std::path::Path) -> Result<(), StartError> {
    let engine = backend::RedbEngine::open(path, &crate::schema::TABLES)?;
    let view = backend::Engine::view(&engine)?;
    store.restore(view.as_ref())?;
    store.commit()?;
    Ok(())
}

/// The apply thread: applies committed entries in order, exactly once, and wakes their callers.
struct ApplyLoop {
    shared: Arc<Shared>,
    kv: KvApplier,
    tasks: Receiver<ApplyTask>,
    snapshotter: snap::Snapshotter,
    snapshot_count: u64,
    conf_state: ConfState,
    last_snapshot: u64,
}

impl ApplyLoop {
    fn run(mut self) {
        while let Ok(task) = self.tasks.recv() {
            let applied = match task {
                ApplyTask::Snapshot(snap) => match self.apply_snapshot(&snap) {
                    Ok(()) => snap.index(),
                    Err(e) => {
                        self.shared
                            .fatal(format!("applying snapshot {}: {e}", snap.index()));
                        return;
                    }
                },
                ApplyTask::SendSnapshot(msg) => {
                    self.send_snapshot(msg);
                    continue;
                }
                ApplyTask::Entries {
                    entries,
                    conf_states,
                } => {
                    let Some(last) = entries.last().map(|e| e.index) else {
                        continue;
                    };
                    for entry in &entries {
                        self.apply_entry(entry, conf_states.get(&entry.index));
                    }
                    last
                }
            };
            crate::metrics_hooks::applied(applied);
            self.shared.applied.send_replace(applied);
            if applied > self.last_snapshot + self.snapshot_count {
                // The snapshot must never be ahead of what the backend has made durable.
                if let Err(e) = self.shared.store.commit() {
                    self.shared
                        .fatal(format!("committing the backend for a snapshot: {e}"));
                    return;
                }
                self.last_snapshot = applied;
                let _ = self.shared.raft_tx.send(RaftInput::TakeSnapshot {
                    index: applied,
                    conf_state: self.conf_state.clone(),
                });
            }
        }
    }

    /// Sends the store as applied so far: committed first, so the database a peer receives is
    /// never behind the index the message names.
    fn send_snapshot(&mut self, mut msg: raftpb::Message) {
        let store = &self.shared.store;
        if let Err(e) = store.commit() {
            tracing::error!(error = %e, "committing the backend before sending a snapshot");
            let _ = self.shared.raft_tx.send(RaftInput::SnapshotStatus(
                msg.to,
                raft::SnapshotStatus::Failure,
            ));
            return;
        }
        let (index, term) = store.consistent_index();
        msg.snapshot = Some(raftpb::Snapshot {
            data: Bytes::from(self.shared.membership_json()),
            metadata: Some(raftpb::SnapshotMetadata {
                conf_state: Some(self.conf_state.clone()),
                index,
                term,
            }),
        });
        let backend = store.backend().clone();
        tracing::info!(to = format!("{:x}", msg.to), index, "sending a snapshot");
        self.shared.transport().send_snapshot(
            msg,
            Box::new(move |w: &mut dyn std::io::Write| {
                backend
                    .snapshot_to(w)
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }),
        );
    }

    fn apply_snapshot(&mut self, snap: &raftpb::Snapshot) -> Result<(), String> {
        let index = snap.index();
        let (ci, _) = self.shared.store.consistent_index();
        if index <= ci {
            return Ok(());
        }
        let snapshotter = &self.snapshotter;
        let db = snapshotter.db_path(index).map_err(|e| e.to_string())?;
        restore_store_from(&self.shared.store, &db).map_err(|e| e.to_string())?;
        self.shared.lessor.recover(&self.shared.store)?;
        let membership = Membership::load(self.shared.store.backend())?;
        let transport = self.shared.transport();
        for m in membership.members.values() {
            if m.id != self.shared.member_id {
                transport.add_peer(m.id, m.peer_urls.clone());
            }
        }
        for id in self.shared.membership.read().members.keys() {
            if !membership.members.contains_key(id) {
                transport.remove_peer(*id);
            }
        }
        *self.shared.membership.write() = membership;
        self.conf_state = snap.conf_state();
        self.last_snapshot = index;
        let _ = snapshotter.release_dbs_before(index);
        tracing::info!(index, "applied a snapshot received from the leader");
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry, conf_state: Option<&ConfState>) {
        match entry.kind() {
            EntryType::EntryNormal => self.apply_normal(entry),
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                if let Some(cs) = conf_state {
                    self.conf_state = cs.clone();
                }
                self.apply_conf_change(entry);
            }
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        let store = &self.shared.store;
        if entry.data.is_empty() {
            // A new leader's empty entry: only the consistent index moves.
            store.apply(entry.index, entry.term, |_| ());
            return;
        }
        let req = match InternalRaftRequest::decode(entry.data.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "undecodable entry; skipped");
                store.apply(entry.index, entry.term, |_| ());
                return;
            }
        };
        let id = req.header.as_ref().map_or(req.id, |h| h.id);
        if let Some(attrs) = &req.cluster_member_attr_set {
            let applied = store.apply(entry.index, entry.term, |txn| {
                let mut membership = self.shared.membership.write();
                if let Some(m) = membership.members.get_mut(&attrs.member_id) {
                    if let Some(a) = &attrs.member_attributes {
                        m.name = a.name.clone();
                        m.client_urls = a.client_urls.clone();
                    }
                    Membership::save_member(txn.backend_tx(), m);
                }
            });
            if applied.is_some() {
                self.shared.wake(id, Ok(Applied::Empty));
            }
            return;
        }
        if req.cluster_version_set.is_some() {
            store.apply(entry.index, entry.term, |_| ());
            self.shared.wake(id, Ok(Applied::Empty));
            return;
        }
        if let Some(result) = self.kv.apply(entry.index, entry.term, &req) {
            crate::metrics_hooks::proposal_result(result.is_ok());
            self.shared.wake(id, result);
        }
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        let cc = match raft::decode_conf_change(entry) {
            Ok(cc) => cc,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "undecodable conf change; skipped");
                self.shared.store.apply(entry.index, entry.term, |_| ());
                return;
            }
        };
        let shared = &self.shared;
        shared.store.apply(entry.index, entry.term, |txn| {
            let mut membership = shared.membership.write();
            for change in &cc.changes {
                let id = change.node_id;
                match change.kind() {
                    ConfChangeType::ConfChangeAddNode
                    | ConfChangeType::ConfChangeAddLearnerNode => {
                        let learner = change.kind() == ConfChangeType::ConfChangeAddLearnerNode;
                        let mut m = match serde_json::from_slice::<Member>(&cc.context) {
                            Ok(m) if m.id == id => m,
                            _ => membership.members.get(&id).cloned().unwrap_or(Member {
                                id,
                                ..Member::default()
                            }),
                        };
                        if let Some(existing) = membership.members.get(&id) {
                            // A promotion keeps the published name and client URLs.
                            m.name = existing.name.clone();
                            m.client_urls = existing.client_urls.clone();
                        }
                        m.is_learner = learner;
                        Membership::save_member(txn.backend_tx(), &m);
                        membership.members.insert(id, m);
                    }
                    ConfChangeType::ConfChangeRemoveNode => {
                        membership.members.remove(&id);
                        membership.removed.insert(id);
                        Membership::save_removed(txn.backend_tx(), id);
                    }
                    ConfChangeType::ConfChangeUpdateNode => {
                        if let Ok(update) = serde_json::from_slice::<Member>(&cc.context) {
                            if let Some(m) = membership.members.get_mut(&id) {
                                m.peer_urls = update.peer_urls;
                                Membership::save_member(txn.backend_tx(), m);
                            }
                        }
                    }
                }
            }
        });
        let removed_self = cc.changes.iter().any(|c| {
            c.kind() == ConfChangeType::ConfChangeRemoveNode && c.node_id == shared.member_id
        });
        if removed_self {
            // As etcd's `stopWithDelay`: a removed leader keeps sending heartbeats a little
            // longer, so the others learn the removal is committed before it goes.
            let shared = shared.clone();
            let delay = shared.election_timeout;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                shared.fatal("the member has been permanently removed from the cluster".into());
            });
        }
        if entry.kind() == EntryType::EntryConfChange {
            // etcd's server puts the proposer's request id in the v1 ConfChange.
            if let Ok(v1) = <raftpb::ConfChange as prost::Message>::decode(entry.data.as_ref()) {
                shared.wake(v1.id, Ok(Applied::Empty));
            }
        }
    }
}

/// What the peer transport calls into. It holds the shared state weakly: the shared state owns
/// the transport, and a stopped member must release its backend.
struct PeerHandler {
    shared: std::sync::Weak<Shared>,
    snapshotter: snap::Snapshotter,
}

impl PeerHandler {
    fn to_raft(&self, input: RaftInput) {
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared.raft_tx.send(input);
        }
    }
}

impl rafthttp::Raft for PeerHandler {
    fn process(&self, msg: raftpb::Message) {
        self.to_raft(RaftInput::Step(msg));
    }

    fn receive_snapshot(
        &self,
        msg: raftpb::Message,
        db: &mut dyn std::io::Read,
    ) -> Result<(), String> {
        let index = msg.snapshot.as_ref().map_or(0, |s| s.index());
        let dest = self.snapshotter.dir().join(format!("{index:016x}.snap.db"));
        let info = backend::restore_snapshot(db, &dest, &crate::schema::TABLES)
            .map_err(|e| e.to_string())?;
        tracing::info!(index, bytes = info.bytes, "received a database snapshot");
        crate::metrics_hooks::snapshot_received(msg.from);
        self.to_raft(RaftInput::Step(msg));
        Ok(())
    }

    fn report_unreachable(&self, id: u64) {
        self.to_raft(RaftInput::Unreachable(id));
    }

    fn report_snapshot(&self, id: u64, status: rafthttp::SnapshotStatus) {
        crate::metrics_hooks::snapshot_sent(id, status == rafthttp::SnapshotStatus::Finish);
        let status = match status {
            rafthttp::SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
            rafthttp::SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
        };
        self.to_raft(RaftInput::SnapshotStatus(id, status));
    }

    fn is_removed(&self, id: u64) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.membership.read().removed.contains(&id))
    }

    fn removed_from_cluster(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.fatal("the member has been permanently removed from the cluster".into());
        }
    }
}
