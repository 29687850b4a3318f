//! Server-streaming RPCs: Maintenance.Snapshot and Election.Observe.

use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::{SnapshotRequest, SnapshotResponse};
use api::v3electionpb::election_client::ElectionClient;
use api::v3electionpb::{LeaderRequest, LeaderResponse};
use tonic::Streaming;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// Streams the backend database of the current endpoint's member: chunks with
    /// `remaining_bytes` counting down, then one message holding the SHA-256 of the data.
    pub async fn snapshot(&self) -> Result<Streaming<SnapshotResponse>> {
        let (_, channel) = self.channel();
        let mut request = tonic::Request::new(SnapshotRequest {});
        self.attach_token(request.metadata_mut());
        let response = tokio::time::timeout(
            self.inner.options.request_timeout,
            rpc_client!(MaintenanceClient, channel, self).snapshot(request),
        )
        .await
        .map_err(|_| Error::DeadlineExceeded)??;
        Ok(response.into_inner())
    }

    /// Streams the leader of election `name` each time it changes (server-side Election service).
    pub async fn observe(&self, name: impl Into<Vec<u8>>) -> Result<Streaming<LeaderResponse>> {
        let (_, channel) = self.channel();
        let mut request = tonic::Request::new(LeaderRequest { name: name.into() });
        self.attach_token(request.metadata_mut());
        let response = tokio::time::timeout(
            self.inner.options.request_timeout,
            rpc_client!(ElectionClient, channel, self).observe(request),
        )
        .await
        .map_err(|_| Error::DeadlineExceeded)??;
        Ok(response.into_inner())
    }
}
