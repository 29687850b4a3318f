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
