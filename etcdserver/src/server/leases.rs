//! The Lease gRPC service (etcd's `v3rpc/lease.go` and the lease paths of `v3_server.go`),
//! the leader's lease duties, and the peer endpoints followers forward renewals to.
//!
//! Grant, revoke and checkpoints go through raft. Renewals and TimeToLive do not, as in etcd:
//! only the leader knows when a lease expires, so a follower forwards them to the leader's
//! peer URL (`/leases` and `/leases/internal`, protobuf bodies).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use api::etcdserverpb as pb;
use api::etcdserverpb::lease_server::{Lease, LeaseServer};
use axum::http::StatusCode;
use bytes::Bytes;
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::core::{Applied, ServerCore};
use crate::error::ServerError;
use crate::lessor::{LeaseStatus, Renewed, LEASE_CHECKPOINT_RATE, LEASE_REVOKE_RATE};
use crate::server::{EtcdServer, Shared};

/// How often the leader looks for expired leases and due checkpoints (etcd: 500 ms).
const LEADER_TICK: Duration = Duration::from_millis(500);
/// Pause between two tries of a renewal that could not be answered yet (etcd: 50 ms).
const RETRY: Duration = Duration::from_millis(50);
const RENEW_PATH: &str = "/leases";
const TIME_TO_LIVE_PATH: &str = "/leases/internal";

/// What the leader's answer to a forwarded request was.
enum Forwarded {
    Ok(Bytes),
    NotFound,
    /// The member asked is not (or not yet) the primary lessor, or did not answer.
    Retry,
}

impl EtcdServer {
    /// Grants a lease through raft; an `id` of 0 lets the server choose one. Returns the id and
    /// the TTL granted.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), ServerError> {
        let mut id = id;
        while id == 0 {
            // etcd: a positive int64 from the request id generator.
            id = (self.shared.next_request_id.fetch_add(1, Ordering::Relaxed) & (i64::MAX as u64))
                as i64;
        }
        let req = pb::InternalRaftRequest {
            lease_grant: Some(pb::LeaseGrantRequest { ttl, id }),
            ..Default::default()
        };
        match self.propose(req).await? {
            Applied::LeaseGrant { id, ttl } => Ok((id, ttl)),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a lease through raft, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), ServerError> {
        let req = pb::InternalRaftRequest {
            lease_revoke: Some(pb::LeaseRevokeRequest { id }),
            ..Default::default()
        };
        match self.propose(req).await? {
            Applied::LeaseRevoke => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Renews a lease on the leader (forwarding to it from a follower); returns its granted
    /// TTL, or `LeaseNotFound`.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, ServerError> {
        let body = pb::LeaseKeepAliveRequest { id }.encode_to_vec();
        let answer = self
            .on_leader(|s| async move { s.renew_local(id).await }, RENEW_PATH, body)
            .await?;
        match answer {
            Answer::Local(ttl) => Ok(ttl),
            Answer::Remote(bytes) => pb::LeaseKeepAliveResponse::decode(bytes)
                .map(|r| r.ttl)
                .map_err(|e| ServerError::Internal(format!("bad renewal answer: {e}"))),
        }
    }

    /// The remaining and granted TTL of a lease, as the leader knows them.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseStatus, ServerError> {
        let body = pb::LeaseTimeToLiveRequest { id, keys }.encode_to_vec();
        let answer = self
            .on_leader(
                |s| async move { s.time_to_live_local(id, keys).await },
                TIME_TO_LIVE_PATH,
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
    pub fn lease_ids(&self) -> Vec<i64> {
        self.shared.lessor.leases()
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
        F: Fn(EtcdServer) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ServerError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        loop {
            if self.shared.is_stopped() {
                return Err(ServerError::Stopped);
            }
            match self.leader_id() {
                Some(leader) if leader == self.shared.member_id => {
                    if let Some(v) = local(self.clone()).await? {
                        return Ok(Answer::Local(v));
                    }
                }
                Some(_) => {
                    for url in self.leader_peer_urls() {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        match post(&format!("{url}{path}"), body.clone(), left).await {
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
        let target = self.shared.committed.load(Ordering::Acquire);
        let mut rx = self.shared.applied.subscribe();
        let waited =
            tokio::time::timeout(self.shared.request_timeout, rx.wait_for(|a| *a >= target))
                .await
                .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::TimeoutWaitAppliedIndex),
        }
    }

    /// A renewal on this member: `None` when it is not the primary lessor.
    async fn renew_local(&self, id: i64) -> Result<Option<i64>, ServerError> {
        self.wait_caught_up().await?;
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        loop {
            match self.shared.lessor.renew(id) {
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

    async fn time_to_live_local(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        self.wait_caught_up().await?;
        if !self.shared.lessor.is_primary() {
            return Ok(None);
        }
        self.shared
            .lessor
            .time_to_live(id, keys)
            .map(Some)
            .ok_or(ServerError::LeaseNotFound)
    }

    fn propose_checkpoints(&self, checkpoints: Vec<(i64, i64)>) {
        let server = self.clone();
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
            if let Err(e) = server.propose(req).await {
                tracing::warn!(error = %e, "lease checkpoint failed");
            }
        });
    }
}

enum Answer<T> {
    Local(T),
    Remote(Bytes),
}

fn unexpected(applied: Applied) -> ServerError {
    ServerError::Internal(format!("unexpected apply result {applied:?}"))
}

/// Posts a forwarded lease request to the leader's `url`.
async fn post(url: &str, body: Vec<u8>, timeout: Duration) -> Forwarded {
    match crate::server::forward::post(url, "application/protobuf", body, timeout).await {
        Ok((StatusCode::OK, bytes)) => Forwarded::Ok(bytes),
        Ok((StatusCode::NOT_FOUND, _)) => Forwarded::NotFound,
        Ok(_) => Forwarded::Retry,
        Err(e) => {
            tracing::debug!(url, error = %e, "forwarding a lease request to the leader failed");
            Forwarded::Retry
        }
    }
}

/// The peer endpoints where followers forward renewals and TimeToLive to the leader.
pub(crate) fn peer_routes(server: &EtcdServer) -> axum::Router {
    let weak = Arc::downgrade(&server.shared);
    let renew_weak = weak.clone();
    axum::Router::new()
        .route(
            RENEW_PATH,
            axum::routing::post(move |body: Bytes| {
                let weak = renew_weak.clone();
                async move {
                    let Some(server) = upgrade(&weak) else {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    };
                    let Ok(req) = pb::LeaseKeepAliveRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !server.is_leader() {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    }
                    match server.renew_local(req.id).await {
                        Ok(Some(ttl)) => {
                            let resp = pb::LeaseKeepAliveResponse {
                                header: Some(server.header()),
                                id: req.id,
                                ttl,
                            };
                            (StatusCode::OK, resp.encode_to_vec())
                        }
                        Err(ServerError::LeaseNotFound) => (StatusCode::NOT_FOUND, Vec::new()),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
                    }
                }
            }),
        )
        .route(
            TIME_TO_LIVE_PATH,
            axum::routing::post(move |body: Bytes| {
                let weak = weak.clone();
                async move {
                    let Some(server) = upgrade(&weak) else {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    };
                    let Ok(req) = pb::LeaseTimeToLiveRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !server.is_leader() {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    }
                    match server.time_to_live_local(req.id, req.keys).await {
                        Ok(Some(st)) => {
                            let resp = pb::LeaseTimeToLiveResponse {
                                header: Some(server.header()),
                                id: req.id,
                                ttl: st.ttl,
                                granted_ttl: st.granted_ttl,
                                keys: st.keys,
                            };
                            (StatusCode::OK, resp.encode_to_vec())
                        }
                        Err(ServerError::LeaseNotFound) => (StatusCode::NOT_FOUND, Vec::new()),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
                    }
                }
            }),
        )
}

/// A live server behind a peer handler's weak reference; None once it stopped.
pub(crate) fn upgrade(weak: &Weak<Shared>) -> Option<EtcdServer> {
    let shared = weak.upgrade()?;
    if shared.is_stopped() {
        return None;
    }
    Some(EtcdServer { shared })
}

/// The leader's lease duties, every 500 ms: promote the lessor once this member leads and has
/// applied what earlier terms committed, then propose revokes of expired leases (at most
/// etcd's 1000 a second) and checkpoints of long ones.
pub(crate) fn spawn_lease_leader(server: &EtcdServer) {
    let weak = Arc::downgrade(&server.shared);
    let mut stopped = server.shared.stop_notify.subscribe();
    tokio::spawn(async move {
        let mut catch_up_target: Option<u64> = None;
        let mut tick = tokio::time::interval(LEADER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let Some(server) = upgrade(&weak) else { return };
            let shared = &server.shared;
            let lessor = &shared.lessor;
            // Read before the leadership check: a demotion after it voids the promotion.
            let epoch = lessor.demotions();
            if !server.is_leader() {
                catch_up_target = None;
                continue;
            }
            if !lessor.is_primary() {
                let target = *catch_up_target
                    .get_or_insert_with(|| shared.committed.load(Ordering::Acquire));
                if *shared.applied.borrow() < target {
                    continue;
                }
                if lessor.promote_unless_demoted_since(epoch, shared.election_timeout) {
                    tracing::info!("promoted to primary lessor: lease expiries restarted");
                }
                catch_up_target = None;
                continue;
            }
            for id in lessor.take_expired(LEASE_REVOKE_RATE / 2) {
                let server = server.clone();
                tokio::spawn(async move {
                    match server.lease_revoke(id).await {
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
                server.propose_checkpoints(checkpoints);
            }
        }
    });
}

/// The Lease gRPC service.
pub struct LeaseService {
    server: EtcdServer,
}

impl LeaseService {
    pub fn new(server: EtcdServer) -> Self {
        Self { server }
    }

    pub fn into_server(self) -> LeaseServer<Self> {
        LeaseServer::new(self)
    }
}

pub type LeaseKeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let (id, ttl) = self.server.lease_grant(r.id, r.ttl).await?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(self.server.header()),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.server.lease_revoke(request.into_inner().id).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.server.header()),
        }))
    }

    type LeaseKeepAliveStream = LeaseKeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let server = self.server.clone();
        let mut stopped = server.shared.stop_notify.subscribe();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = stopped.wait_for(|s| *s) => return,
                };
                let Ok(Some(req)) = next else { return };
                // etcd fills the header before the renewal.
                let header = server.header();
                let ttl = match server.lease_renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(ServerError::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let resp = pb::LeaseKeepAliveResponse {
                    header: Some(header),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let resp = match self.server.lease_time_to_live(r.id, r.keys).await {
            Ok(st) => pb::LeaseTimeToLiveResponse {
                header: Some(self.server.header()),
                id: r.id,
                ttl: st.ttl,
                granted_ttl: st.granted_ttl,
                keys: st.keys,
            },
            Err(ServerError::LeaseNotFound) => pb::LeaseTimeToLiveResponse {
                header: Some(self.server.header()),
                id: r.id,
                ttl: -1,
                ..Default::default()
            },
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let leases = self
            .server
            .lease_ids()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.server.header()),
            leases,
        }))
    }
}
