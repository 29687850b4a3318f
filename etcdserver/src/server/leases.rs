//! The member's lease duties (the lease paths of etcd's `v3_server.go` and its `leasehttp`
//! client): grant, revoke and checkpoints go through raft; renewals and TimeToLive do not, as
//! in etcd: only the leader knows when a lease expires, so a follower forwards them to the
//! leader's peer URL (`/leases` and `/leases/internal`, protobuf bodies; the leader's side is
//! in `http::peer`). The leader also revokes expired leases and checkpoints long ones.

use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb as pb;
use axum::http::StatusCode;
use bytes::Bytes;
use prost::Message;

use super::cluster::Cluster;
use super::forward;
use super::proposer::Proposer;
use super::status::RaftStatus;
use crate::core::Applied;
use crate::error::ServerError;
use lease::{LeaseStatus, Lessor, Renewed, LEASE_CHECKPOINT_RATE, LEASE_REVOKE_RATE};

/// How often the leader looks for expired leases and due checkpoints (etcd: 500 ms).
const LEADER_TICK: Duration = Duration::from_millis(500);
/// Pause between two tries of a renewal that could not be answered yet (etcd: 50 ms).
const RETRY: Duration = Duration::from_millis(50);

/// What the leader's answer to a forwarded request was.
enum Forwarded {
    Ok(Bytes),
    NotFound,
    /// The member asked is not (or not yet) the primary lessor, or did not answer.
    Retry,
}

enum Answer<T> {
    Local(T),
    Remote(Bytes),
}

/// The leases of this member and the ways to change them.
pub(crate) struct Leases {
    lessor: Arc<Lessor>,
    proposer: Arc<Proposer>,
    status: Arc<RaftStatus>,
    cluster: Arc<Cluster>,
    election_timeout: Duration,
    /// For the identity of the leader's own revokes.
    auth: Arc<auth::AuthStore>,
    /// Reaches the leader's peer URL for forwarded requests.
    dialer: rafthttp::Dialer,
}

impl Leases {
    pub(crate) fn new(
        lessor: Arc<Lessor>,
        proposer: Arc<Proposer>,
        status: Arc<RaftStatus>,
        cluster: Arc<Cluster>,
        election_timeout: Duration,
        auth: Arc<auth::AuthStore>,
        dialer: rafthttp::Dialer,
    ) -> Leases {
        Leases {
            lessor,
            proposer,
            status,
            cluster,
            election_timeout,
            auth,
            dialer,
        }
    }

    /// Grants a lease through raft; an `id` of 0 lets the server choose one. Returns the id and
    /// the TTL granted.
    pub(crate) async fn grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), ServerError> {
        let mut id = id;
        while id == 0 {
            // etcd: a positive int64 from the request id generator.
            id = (self.proposer.next_request_id() & (i64::MAX as u64)) as i64;
        }
        let req = pb::InternalRaftRequest {
            lease_grant: Some(pb::LeaseGrantRequest { ttl, id }),
            ..Default::default()
        };
        match self.proposer.propose(req).await? {
            Applied::LeaseGrant { id, ttl } => Ok((id, ttl)),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a lease through raft, deleting its keys, on behalf of `who` (apply checks that
    /// they may write every key of the lease).
    pub(crate) async fn revoke(&self, id: i64, who: auth::AuthInfo) -> Result<(), ServerError> {
        let req = pb::InternalRaftRequest {
            header: Some(pb::RequestHeader {
                username: who.username,
                auth_revision: who.revision,
                ..Default::default()
            }),
            lease_revoke: Some(pb::LeaseRevokeRequest { id }),
            ..Default::default()
        };
        match self.proposer.propose(req).await? {
            Applied::LeaseRevoke => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Renews a lease on the leader (forwarding to it from a follower); returns its granted
    /// TTL, or `LeaseNotFound`.
    pub(crate) async fn renew(&self, id: i64) -> Result<i64, ServerError> {
        let body = pb::LeaseKeepAliveRequest { id }.encode_to_vec();
        let answer = self
            .on_leader(|| self.renew_local(id), forward::LEASE_RENEW_PATH, body)
            .await?;
        match answer {
            Answer::Local(ttl) => Ok(ttl),
            Answer::Remote(bytes) => pb::LeaseKeepAliveResponse::decode(bytes)
                .map(|r| r.ttl)
                .map_err(|e| ServerError::Internal(format!("bad renewal answer: {e}"))),
        }
    }

    /// The remaining and granted TTL of a lease, as the leader knows them.
    pub(crate) async fn time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseStatus, ServerError> {
        let body = pb::LeaseTimeToLiveRequest { id, keys }.encode_to_vec();
        let answer = self
            .on_leader(
                || self.time_to_live_local(id, keys),
                forward::LEASE_TIME_TO_LIVE_PATH,
                body,
            )
            .await?;
        match answer {
            Answer::Local(status) => Ok(status),
            Answer::Remote(bytes) => pb::LeaseTimeToLiveResponse::decode(bytes)
                .map(|r| LeaseStatus {
                    ttl: r.ttl,
                    granted_ttl: r.granted_ttl,
                    keys: r.keys,
                })
                .map_err(|e| ServerError::Internal(format!("bad time-to-live answer: {e}"))),
        }
    }

    /// Every lease this member knows, by id.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.lessor.leases()
    }

    /// This member's lessor (which keys each lease holds, for the permission checks).
    pub(crate) fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    /// Who the leader's own revokes of expired leases are from: root, at the auth store's
    /// current revision (etcd's `authStore.WithRoot`).
    fn as_root(&self) -> auth::AuthInfo {
        if !self.auth.is_enabled() {
            return auth::AuthInfo::default();
        }
        auth::AuthInfo {
            username: "root".to_owned(),
            revision: self.auth.revision(),
        }
    }

    /// Runs `local` if this member is the primary lessor, else posts `body` to the leader's
    /// `path`; retries (leader changes, promotion pending) until the request timeout.
    async fn on_leader<T, F, Fut>(
        &self,
        local: F,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer<T>, ServerError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ServerError>>,
    {
        let deadline = tokio::time::Instant::now() + self.proposer.request_timeout();
        loop {
            if self.proposer.is_stopped() {
                return Err(ServerError::Stopped);
            }
            match self.status.leader() {
                Some(leader) if leader == self.cluster.local_id() => {
                    if let Some(v) = local().await? {
                        return Ok(Answer::Local(v));
                    }
                }
                Some(_) => {
                    for url in forward::leader_peer_urls(&self.status, &self.cluster) {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        let url = format!("{url}{path}");
                        match post(&self.dialer, &url, body.clone(), left).await {
                            Forwarded::Ok(bytes) => return Ok(Answer::Remote(bytes)),
                            Forwarded::NotFound => return Err(ServerError::LeaseNotFound),
                            Forwarded::Retry => {}
                        }
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() + RETRY >= deadline {
                return Err(ServerError::Timeout);
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// etcd's `waitAppliedIndex`: the leader answers lease questions only once it applied
    /// everything committed, so it knows every grant and revoke.
    async fn wait_caught_up(&self) -> Result<(), ServerError> {
        self.status
            .wait_applied(self.status.committed(), self.proposer.request_timeout())
            .await
    }

    /// A renewal on this member: `None` when it is not the primary lessor.
    pub(crate) async fn renew_local(&self, id: i64) -> Result<Option<i64>, ServerError> {
        self.wait_caught_up().await?;
        let deadline = tokio::time::Instant::now() + self.proposer.request_timeout();
        loop {
            match self.lessor.renew(id) {
                (Renewed::Ttl(ttl), clear_checkpoint) => {
                    if clear_checkpoint {
                        self.propose_checkpoints(vec![(id, 0)]);
                    }
                    return Ok(Some(ttl));
                }
                (Renewed::NotFound, _) => return Err(ServerError::LeaseNotFound),
                (Renewed::NotPrimary, _) => return Ok(None),
                // Its revoke is under way: answer once it is done (or leadership moved).
                (Renewed::Expired, _) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ServerError::Timeout);
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// A TimeToLive on this member: `None` when it is not the primary lessor.
    pub(crate) async fn time_to_live_local(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        self.wait_caught_up().await?;
        if !self.lessor.is_primary() {
            return Ok(None);
        }
        self.lessor
            .time_to_live(id, keys)
            .map(Some)
            .ok_or(ServerError::LeaseNotFound)
    }

    /// Only a leader expires leases; a new one is promoted once it caught up.
    pub(crate) fn demote(&self) {
        self.lessor.demote();
    }

    fn propose_checkpoints(&self, checkpoints: Vec<(i64, i64)>) {
        let proposer = self.proposer.clone();
        let req = pb::InternalRaftRequest {
            lease_checkpoint: Some(pb::LeaseCheckpointRequest {
                checkpoints: checkpoints
                    .into_iter()
                    .map(|(id, remaining_ttl)| pb::LeaseCheckpoint { id, remaining_ttl })
                    .collect(),
            }),
            ..Default::default()
        };
        tokio::spawn(async move {
            if let Err(e) = proposer.propose(req).await {
                tracing::warn!(error = %e, "lease checkpoint failed");
            }
        });
    }

    fn is_leader(&self) -> bool {
        self.status.leader() == Some(self.cluster.local_id())
    }

    /// The leader's lease duties, every 500 ms: promote the lessor once this member leads and
    /// has applied what earlier terms committed, then propose revokes of expired leases (at most
    /// etcd's 1000 a second) and checkpoints of long ones. Ends when the member stops.
    pub(crate) fn spawn_leader_duties(self: &Arc<Self>) {
        let leases = self.clone();
        let stopped = self.proposer.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut catch_up_target: Option<u64> = None;
            let mut tick = tokio::time::interval(LEADER_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => return,
                }
                if leases.proposer.is_stopped() {
                    return;
                }
                catch_up_target = leases.leader_round(catch_up_target);
            }
        });
    }

    /// One round of the leader's duties; returns the commit index a new leader waits for.
    fn leader_round(self: &Arc<Self>, catch_up_target: Option<u64>) -> Option<u64> {
        let lessor = &self.lessor;
        // Read before the leadership check: a demotion after it voids the promotion.
        let epoch = lessor.demotions();
        if !self.is_leader() {
            return None;
        }
        if !lessor.is_primary() {
            let target = catch_up_target.unwrap_or_else(|| self.status.committed());
            if self.status.applied() < target {
                return Some(target);
            }
            if lessor.promote_unless_demoted_since(epoch, self.election_timeout) {
                tracing::info!("promoted to primary lessor: lease expiries restarted");
            }
            return None;
        }
        for id in lessor.take_expired(LEASE_REVOKE_RATE / 2) {
            let leases = self.clone();
            let root = self.as_root();
            tokio::spawn(async move {
                match leases.revoke(id, root).await {
                    Ok(()) => {
                        tracing::info!(lease = format!("{id:x}"), "revoked an expired lease")
                    }
                    Err(ServerError::LeaseNotFound) => {}
                    Err(e) => {
                        tracing::warn!(lease = format!("{id:x}"), error = %e, "revoking an expired lease failed")
                    }
                }
            });
        }
        let checkpoints = lessor.take_checkpoints(LEASE_CHECKPOINT_RATE / 2);
        if !checkpoints.is_empty() {
            self.propose_checkpoints(checkpoints);
        }
        catch_up_target
    }
}

fn unexpected(applied: Applied) -> ServerError {
    ServerError::Internal(format!("unexpected apply result {applied:?}"))
}

/// Posts a forwarded lease request to the leader's `url`.
async fn post(dialer: &rafthttp::Dialer, url: &str, body: Vec<u8>, timeout: Duration) -> Forwarded {
    match forward::post(dialer, url, "application/protobuf", body, timeout).await {
        Ok((StatusCode::OK, bytes)) => Forwarded::Ok(bytes),
        Ok((StatusCode::NOT_FOUND, _)) => Forwarded::NotFound,
        Ok(_) => Forwarded::Retry,
        Err(e) => {
            tracing::debug!(url, error = %e, "forwarding a lease request to the leader failed");
            Forwarded::Retry
        }
    }
}
