//! The member: raft, storage and the mvcc store wired together (etcd's `EtcdServer`).
//!
//! Threads: the raft thread ([`raft_loop`]) owns raft and the WAL; the apply thread
//! ([`apply_loop`]) applies committed entries to the store in log order and wakes the callers
//! waiting on them; gRPC handlers run on tokio and reach both through a few handles, each
//! owning its part of the member's state: [`proposer::Proposer`] (proposals, their waiters and
//! the stop signal), [`status::RaftStatus`] (term, leader, commit and applied indexes),
//! [`cluster::Cluster`] (the membership), [`leases::Leases`], [`reconfig::Reconfig`] and the
//! auth store (users, roles and tokens; applied by [`apply_auth`]).

pub(crate) mod alarms;
pub(crate) mod apply;
pub(crate) mod apply_auth;
mod apply_loop;
mod bootstrap;
mod cluster;
pub(crate) mod compactor;
// corrupt
pub(crate) mod corrupt;
// downgrade
mod downgrade;
mod forward;
mod join;
pub(crate) mod kv_permissions;
mod leader_loop;
mod lease_store;
mod leases;
pub(crate) mod membership;
mod peer_handler;
mod proposer;
pub(crate) mod quota;
mod raft_loop;
mod reconfig;
pub(crate) mod schema;
mod snapshot;
mod status;
pub(crate) mod storage; // restore: pub(crate) so that snapshot restore can write a WAL
                        // downgrade
pub(crate) mod version;

use std::sync::{Arc, Weak};
use std::time::Duration;

use api::etcdserverpb::{Attributes, ClusterMemberAttrSetRequest, InternalRaftRequest};

use crate::core::{Applied, Limits, ServerCore};
use crate::error::ServerError;
use apply::KvApplier;
use apply_auth::AuthApplier;
use apply_loop::ApplyLoop;
use cluster::Cluster;
use lease::LeaseStatus;
use leases::Leases;
use membership::{Member, Membership};
use peer_handler::PeerHandler;
use proposer::{Proposer, RaftInput};
use raft_loop::RaftLoop;
use reconfig::Reconfig;
use status::RaftStatus;

pub use bootstrap::{ServerParams, StartError};
pub(crate) use forward::{LEASE_RENEW_PATH, LEASE_TIME_TO_LIVE_PATH, PROMOTE_PATH};
pub use join::JoinError;
pub(crate) use join::CLUSTER_ID_HEADER;

/// etcd keeps this many entries in the raft log after a snapshot, so that a follower slightly
/// behind catches up from the log rather than from a whole database (`snapshotCatchUpEntries`).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
/// How often a member checks that its attributes were published, and proposes them if not.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);
/// How often expired simple auth tokens are dropped (etcd's `simpleTokenTTLResolution`).
const TOKEN_SWEEP: Duration = Duration::from_secs(1);

/// A running member. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct EtcdServer {
    inner: Arc<Inner>,
}

struct Inner {
    /// This member's name and client URLs, as it publishes them.
    name: String,
    client_urls: Vec<String>,
    store: Arc<mvcc::Store>,
    limits: Limits,
    election_timeout: Duration,
    status: Arc<RaftStatus>,
    proposer: Arc<Proposer>,
    cluster: Arc<Cluster>,
    leases: Arc<Leases>,
    reconfig: Reconfig,
    transport: rafthttp::Transport,
    auth: Arc<auth::AuthStore>,
    // quota
    /// The alarms in force (applied by the apply thread).
    alarms: Arc<alarms::AlarmStore>,
    quota: Arc<quota::Quota>,
    // downgrade
    /// The cluster version and downgrade state as applied.
    versions: Arc<version::ClusterVersions>,
    /// How this member reaches its peers' `/version`.
    peer_dialer: rafthttp::Dialer,
}

/// Raft and apply threads of a started member; joined by [`EtcdServer::stop`].
pub struct Threads {
    raft: Option<std::thread::JoinHandle<()>>,
    apply: Option<std::thread::JoinHandle<()>>,
}

/// A member held weakly (by the peer routes, which the transport outlives the member with).
#[derive(Clone)]
pub(crate) struct WeakServer(Weak<Inner>);

impl WeakServer {
    /// The member, unless it is gone or stopped.
    pub(crate) fn upgrade(&self) -> Option<EtcdServer> {
        let inner = self.0.upgrade()?;
        if inner.proposer.is_stopped() {
            return None;
        }
        Some(EtcdServer { inner })
    }
}

impl EtcdServer {
    /// Opens or creates the member's data dir, starts raft and apply threads and the peer
    /// transport (on the current tokio runtime). Peers are served by the caller with
    /// [`crate::peer_router`].
    pub fn start(params: ServerParams) -> Result<(EtcdServer, Threads), StartError> {
        EtcdServer::start_with_dialer(params, rafthttp::Dialer::plain())
    }

    /// [`EtcdServer::start`] with peers dialed by `dialer` (TLS for https peer URLs).
    pub(crate) fn start_with_dialer(
        params: ServerParams,
        dialer: rafthttp::Dialer,
    ) -> Result<(EtcdServer, Threads), StartError> {
        // As etcd, a bad `--auth-token` stops the start (before anything is written).
        let tokens = params.auth.token_options().map_err(|e| {
            tracing::error!("failed to create token provider: {e}");
            StartError::TokenProvider(e)
        })?;
        let auth = Arc::new(auth::AuthStore::new(tokens, params.auth.bcrypt_cost));
        let boot = bootstrap::open(&params, &dialer)?;
        // downgrade: etcd's `mustDetectDowngrade` as the member recovers its cluster state.
        let versions = Arc::new(version::ClusterVersions::load(boot.store.backend())?);
        versions
            .check_local()
            .inspect_err(|e| tracing::error!("{e}"))?;
        auth.recover(boot.store.backend())?;
        // corrupt: etcd checks a member that already has data before it starts raft.
        let restarting = boot.bootstrap_peers.is_empty() && boot.remote_members.is_none();
        if restarting && params.corrupt_check.initial {
            corrupt::initial_check(
                &boot.store,
                &boot.membership.list(),
                boot.member_id,
                boot.cluster_id,
                dialer.clone(),
                params.request_timeout(),
            )?;
        }
        // quota
        let alarms = Arc::new(alarms::AlarmStore::load(boot.store.backend())?);
        let quota = Arc::new(quota::Quota::new(
            params.quota_backend_bytes,
            boot.store.backend().clone(),
        ));
        crate::metrics::hooks::auth_revision(auth.revision());
        let node = bootstrap::raft_node(&params, &boot)?;
        let member_id = boot.member_id;
        let hard_state = boot.storage.mem.hard_state();
        let (applied_index, _) = boot.store.consistent_index();
        let applied_index = applied_index.max(boot.snapshot.index());
        let status = Arc::new(RaftStatus::new(
            hard_state.term,
            hard_state.commit,
            applied_index,
        ));
        let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
        let proposer = Arc::new(Proposer::new(
            member_id,
            raft_tx,
            status.clone(),
            params.request_timeout(),
            params.limits.max_request_bytes,
        ));
        let cluster = Arc::new(Cluster::new(boot.cluster_id, member_id, boot.membership));
        let transport = rafthttp::Transport::new(
            rafthttp::TransportConfig {
                member_id,
                cluster_id: boot.cluster_id,
                dial_timeout: Duration::from_secs(1),
                dialer: dialer.clone(),
            },
            Arc::new(PeerHandler {
                proposer: proposer.clone(),
                cluster: cluster.clone(),
                snapshotter: boot.snapshotter.clone(),
            }),
        );
        let known = if !boot.bootstrap_peers.is_empty() {
            boot.bootstrap_peers
                .iter()
                .filter_map(|p| serde_json::from_slice::<Member>(&p.context).ok())
                .collect()
        } else if let Some(remote) = &boot.remote_members {
            remote.clone()
        } else {
            cluster.membership().list()
        };
        for m in known {
            if m.id != member_id {
                transport.add_peer(m.id, m.peer_urls);
            }
        }
        let leases = Arc::new(Leases::new(
            boot.lessor.clone(),
            proposer.clone(),
            status.clone(),
            cluster.clone(),
            params.election_timeout,
            auth.clone(),
            dialer.clone(),
        ));

        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let raft_loop = RaftLoop {
            node,
            storage: boot.storage,
            inputs: raft_rx,
            apply: apply_tx,
            heartbeat: params.heartbeat,
            snapshot_catch_up_entries: params.snapshot_catch_up_entries,
            status: status.clone(),
            proposer: proposer.clone(),
            cluster: cluster.clone(),
            leases: leases.clone(),
            transport: transport.clone(),
        };
        let raft = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || raft_loop.run())
            .map_err(|source| StartError::Thread {
                name: "raft",
                source,
            })?;
        let applier = ApplyLoop {
            kv: KvApplier::with_lessor(boot.store.clone(), boot.lessor.clone())
                .with_auth(auth.clone())
                .with_alarms(alarms.clone(), quota.clone()),
            auth: AuthApplier::new(auth.clone()),
            auth_store: auth.clone(),
            tasks: apply_rx,
            snapshotter: boot.snapshotter,
            snapshot_count: params.snapshot_count,
            conf_state: boot.snapshot.conf_state(),
            last_snapshot: boot.snapshot.index(),
            store: boot.store.clone(),
            lessor: boot.lessor,
            status: status.clone(),
            proposer: proposer.clone(),
            cluster: cluster.clone(),
            transport: transport.clone(),
            election_timeout: params.election_timeout,
            alarms: alarms.clone(),
            runtime: tokio::runtime::Handle::current(),
            versions: versions.clone(),
            test_only_apply_delay: params.test_only_apply_delay,
        };
        let apply = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run())
            .map_err(|source| StartError::Thread {
                name: "apply",
                source,
            })?;

        crate::metrics::metrics().set_member_id(member_id);
        let reconfig = Reconfig::new(
            proposer.clone(),
            status.clone(),
            cluster.clone(),
            transport.clone(),
        );
        let server = EtcdServer {
            inner: Arc::new(Inner {
                name: params.name,
                client_urls: params.client_urls,
                store: boot.store,
                limits: params.limits,
                election_timeout: params.election_timeout,
                status,
                proposer,
                cluster,
                leases,
                reconfig,
                transport,
                auth,
                alarms,
                quota,
                versions,
                peer_dialer: dialer,
            }),
        };
        server.spawn_publish();
        // downgrade
        server.spawn_version_monitor();
        server.spawn_downgrade_monitor(params.downgrade_check_time);
        server.spawn_token_sweeper();
        server.inner.leases.spawn_leader_duties();
        // corrupt
        server.spawn_corrupt_monitors(&params.corrupt_check);
        Ok((
            server,
            Threads {
                raft: Some(raft),
                apply: Some(apply),
            },
        ))
    }

    /// Stops raft, apply and the transport, and makes the backend durable.
    pub fn stop(&self, mut threads: Threads) {
        let inner = &self.inner;
        inner.proposer.send(RaftInput::Stop);
        if let Some(t) = threads.raft.take() {
            let _ = t.join();
        }
        if let Some(t) = threads.apply.take() {
            let _ = t.join();
        }
        inner.transport.stop();
        if let Err(e) = inner.store.commit() {
            tracing::error!(error = %e, "committing the backend at stop");
        }
        // Nothing will apply what is still waiting; its callers (and their handles on the
        // member) go.
        inner.proposer.stop();
    }

    /// Resolves once the member stops (fatal error or [`EtcdServer::stop`]).
    pub async fn stopped(&self) {
        self.inner.proposer.stopped().await
    }

    pub(crate) fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.inner))
    }

    pub fn membership(&self) -> Membership {
        self.inner.cluster.membership()
    }

    /// The members as JSON, as the peer port's `/members` serves them.
    pub(crate) fn members_json(&self) -> Vec<u8> {
        self.inner.cluster.to_json()
    }

    pub fn applied_index(&self) -> u64 {
        self.inner.status.applied()
    }

    pub fn committed_index(&self) -> u64 {
        self.inner.status.committed()
    }

    /// Whether this member is a learner (it then serves only what etcd lets a learner serve).
    pub fn is_learner(&self) -> bool {
        self.inner.cluster.is_learner(self.member_id())
    }

    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.member_id())
    }

    pub fn leader_changes(&self) -> u64 {
        self.inner.status.leader_changes()
    }

    /// `--election-timeout`.
    pub(crate) fn election_timeout(&self) -> Duration {
        self.inner.election_timeout
    }

    /// Whether this member's name and client URLs are in the applied membership (etcd's
    /// `publish`); etcd serves clients only from then on.
    pub fn is_published(&self) -> bool {
        let inner = &self.inner;
        inner.cluster.is_published(&inner.name, &inner.client_urls)
    }

    /// Asks raft to hand leadership to `to` and waits (bounded) until it has.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), ServerError> {
        self.inner.proposer.transfer_leadership(to).await
    }

    /// The raft transport's peer handlers (`/raft/...`).
    pub(crate) fn raft_router(&self) -> axum::Router {
        self.inner.transport.router()
    }

    /// Grants a lease through raft; an `id` of 0 lets the server choose one. Returns the id and
    /// the TTL granted.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), ServerError> {
        self.inner.leases.grant(id, ttl).await
    }

    /// Revokes a lease through raft, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), ServerError> {
        self.lease_revoke_as(id, auth::AuthInfo::default()).await
    }

    /// Revokes a lease on behalf of `who` (checked at apply: they must be allowed to write
    /// every key of the lease).
    pub(crate) async fn lease_revoke_as(
        &self,
        id: i64,
        who: auth::AuthInfo,
    ) -> Result<(), ServerError> {
        self.inner.leases.revoke(id, who).await
    }

    /// This member's lessor (which keys each lease holds).
    pub(crate) fn lessor(&self) -> &lease::Lessor {
        self.inner.leases.lessor()
    }

    /// Renews a lease on the leader (forwarding to it from a follower); returns its granted
    /// TTL, or `LeaseNotFound`.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, ServerError> {
        self.inner.leases.renew(id).await
    }

    /// The remaining and granted TTL of a lease, as the leader knows them.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseStatus, ServerError> {
        self.inner.leases.time_to_live(id, keys).await
    }

    /// Every lease this member knows, by id.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.inner.leases.ids()
    }

    /// A renewal forwarded to this member: `None` when it is not the primary lessor.
    pub(crate) async fn lease_renew_here(&self, id: i64) -> Result<Option<i64>, ServerError> {
        self.inner.leases.renew_local(id).await
    }

    /// A TimeToLive forwarded to this member: `None` when it is not the primary lessor.
    pub(crate) async fn lease_time_to_live_here(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        self.inner.leases.time_to_live_local(id, keys).await
    }

    /// etcd's `MemberAdd`: a new member (voter or learner) with an id derived from its peer
    /// URLs and the time. Returns it and the members after the change.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServerError> {
        self.inner.reconfig.add_member(peer_urls, is_learner).await
    }

    /// etcd's `MemberRemove`.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        self.inner.reconfig.remove_member(id).await
    }

    /// etcd's `MemberUpdate`: new peer URLs for a member.
    pub async fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServerError> {
        self.inner.reconfig.update_member(id, peer_urls).await
    }

    /// etcd's `MemberPromote`, forwarded to the leader from a follower.
    pub async fn promote_member(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        self.inner.reconfig.promote_member(id).await
    }

    /// A promotion forwarded to this member, which must be the leader.
    pub(crate) async fn promote_member_here(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        self.inner.reconfig.promote_here(id).await
    }

    /// The member's users, roles and tokens.
    pub fn auth_store(&self) -> &Arc<auth::AuthStore> {
        &self.inner.auth
    }

    /// Drops expired simple tokens every second until the member stops.
    fn spawn_token_sweeper(&self) {
        let auth = self.inner.auth.clone();
        let stopped = self.inner.proposer.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut every = tokio::time::interval(TOKEN_SWEEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => auth.expire_tokens(),
                    _ = &mut stopped => return,
                }
            }
        });
    }

    /// etcd's `publish`: once the member has a leader, records its name and client URLs in the
    /// membership through raft, retrying until it succeeds.
    fn spawn_publish(&self) {
        // The loop holds the member only weakly and never waits on a proposal: it proposes,
        // then looks at the applied membership again, so a stopped member is released at once.
        let weak = self.downgrade();
        let stopped = self.inner.proposer.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                {
                    let Some(server) = weak.upgrade() else { return };
                    if server.is_published() {
                        tracing::info!("published local member to cluster through raft");
                        return;
                    }
                    let inner = &server.inner;
                    if inner.status.leader().is_some() {
                        inner.proposer.propose_unwaited(InternalRaftRequest {
                            cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
                                member_id: server.member_id(),
                                member_attributes: Some(Attributes {
                                    name: inner.name.clone(),
                                    client_urls: inner.client_urls.clone(),
                                }),
                            }),
                            ..Default::default()
                        });
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(PUBLISH_RETRY) => {}
                    _ = &mut stopped => return,
                }
            }
        });
    }
}

impl ServerCore for EtcdServer {
    async fn grant_session_lease(&self, ttl: i64) -> Result<i64, ServerError> {
        self.lease_grant(0, ttl).await.map(|(id, _)| id)
    }

    fn store(&self) -> &Arc<mvcc::Store> {
        &self.inner.store
    }

    fn cluster_id(&self) -> u64 {
        self.inner.cluster.id()
    }

    fn member_id(&self) -> u64 {
        self.inner.cluster.local_id()
    }

    fn term(&self) -> u64 {
        self.inner.status.term()
    }

    fn leader_id(&self) -> Option<u64> {
        self.inner.status.leader()
    }

    fn limits(&self) -> Limits {
        self.inner.limits
    }

    fn auth_store(&self) -> &Arc<auth::AuthStore> {
        &self.inner.auth
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ServerError> {
        let timeout = self.inner.proposer.request_timeout();
        self.inner.status.wait_applied(index, timeout).await
    }

    async fn propose(&self, req: InternalRaftRequest) -> Result<Applied, ServerError> {
        self.inner.proposer.propose(req).await
    }

    // quota
    async fn check_quota(&self, cost: u64) -> Result<(), ServerError> {
        if self.inner.quota.admits(cost) {
            return Ok(());
        }
        // etcd's `quotaAlarmer.check`: raise NOSPACE for this member, whatever that answers.
        if let Err(e) = self
            .raise_alarm(self.member_id(), api::etcdserverpb::AlarmType::Nospace)
            .await
        {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(ServerError::NoSpace)
    }

    // downgrade
    fn cluster_version(&self) -> Option<String> {
        EtcdServer::cluster_version(self).map(|v| v.to_string())
    }

    async fn read_barrier(&self) -> Result<(), ServerError> {
        // A learner may ask too: raft forwards its ReadIndex to the leader. Which client RPCs a
        // learner serves is decided at the gRPC edge (`learner_guard`); /health needs the
        // barrier on a learner.
        self.inner.proposer.read_barrier().await
    }
}
