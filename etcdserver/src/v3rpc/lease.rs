//! The Lease gRPC service (etcd's `v3rpc/lease.go`); the lease logic is the member's
//! (`server::leases`).

use std::pin::Pin;

use api::etcdserverpb as pb;
use api::etcdserverpb::lease_server::{Lease, LeaseServer};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::core::ServerCore;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::v3rpc::permission::{check_read, identity, require_user, CheckedRead};

/// The Lease gRPC service.
pub struct LeaseService {
    server: EtcdServer,
}

impl LeaseService {
    pub(crate) fn new(server: EtcdServer) -> Self {
        Self { server }
    }

    pub(crate) fn into_server(self) -> LeaseServer<Self> {
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
        // etcd's `quotaLeaseServer` checks before anything else.
        self.server
            .check_quota(crate::server::quota::LEASE_GRANT_COST)
            .await?;
        // Any authenticated user since etcd 3.5.28 (3.4.23 checks nothing).
        let who = identity(&self.server, &request).await?;
        require_user(self.server.auth_store(), &who)?;
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
        let who = identity(&self.server, &request).await?;
        require_user(self.server.auth_store(), &who)?;
        self.server
            .lease_revoke_as(request.into_inner().id, who)
            .await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.server.header()),
        }))
    }

    type LeaseKeepAliveStream = LeaseKeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (metadata, extensions, mut inbound) = request.into_parts();
        // Each renewal is checked with the stream's identity, as etcd's `checkLeaseRenew`.
        let caller = Request::from_parts(metadata, extensions, ());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            let stopped = server.stopped();
            tokio::pin!(stopped);
            loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = &mut stopped => return,
                };
                let Ok(Some(req)) = next else { return };
                // etcd fills the header before the renewal.
                let header = server.header();
                if let Err(e) = check_renew(&server, &caller, req.id).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
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
        let who = identity(&self.server, &request).await?;
        require_user(self.server.auth_store(), &who)?;
        let r = request.into_inner();
        // The keys are shown only to who may read them all (etcd 3.4.26 / 3.5.9).
        let read = if r.keys {
            Some(check_lease_keys(&self.server, &who, LeaseKeys::Of(r.id))?)
        } else {
            None
        };
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
        if let Some(read) = read {
            read.finish()?;
        }
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        // Admin, or READ on every leased key (etcd 3.4.42 / 3.5.28).
        let who = identity(&self.server, &request).await?;
        require_user(self.server.auth_store(), &who)?;
        let read = check_lease_keys(&self.server, &who, LeaseKeys::All)?;
        let leases = self
            .server
            .lease_ids()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        read.finish()?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.server.header()),
            leases,
        }))
    }
}

/// Which leases' keys a check covers.
enum LeaseKeys {
    Of(i64),
    All,
}

/// etcd's `checkLeaseTimeToLive` / `checkLeaseLeases`: an admin sees everything; anyone else
/// needs READ on each key of the leases (as this member's lessor knows them).
fn check_lease_keys<'a>(
    server: &'a EtcdServer,
    who: &auth::AuthInfo,
    keys: LeaseKeys,
) -> Result<CheckedRead<'a>, ServerError> {
    let lessor = Some(server.lessor());
    check_read(server.auth_store(), who, lessor, |p| {
        if p.auth.is_admin_permitted(p.info).is_ok() {
            return Ok(());
        }
        let readable = |key: &[u8]| p.auth.is_range_permitted(p.info, key, &[]);
        match keys {
            LeaseKeys::Of(id) => server.lessor().try_for_each_key(id, readable),
            LeaseKeys::All => server.lessor().try_for_each_leased_key(readable),
        }
    })
}

/// etcd's `checkLeaseRenew` (3.5.28): with auth on, an admin, or a user who may write every
/// key of the lease.
async fn check_renew(server: &EtcdServer, caller: &Request<()>, id: i64) -> Result<(), Status> {
    let auth = server.auth_store();
    if !auth.is_enabled() {
        return Ok(());
    }
    let who = identity(server, caller).await?;
    require_user(auth, &who)?;
    let read = check_read(auth, &who, Some(server.lessor()), |p| {
        if p.auth.is_admin_permitted(p.info).is_ok() {
            return Ok(());
        }
        server
            .lessor()
            .try_for_each_key(id, |key| p.auth.is_put_permitted(p.info, key))
    })?;
    read.finish()?;
    Ok(())
}
