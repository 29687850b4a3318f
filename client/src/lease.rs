//! Lease keep-alive: the raw bidirectional stream, and a loop that renews a lease every TTL/3
//! across reconnects until it is dropped or the lease expires (clientv3's `KeepAlive`).

use std::time::Duration;

use api::etcdserverpb::lease_client::LeaseClient;
use api::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::Streaming;

use crate::client::Client;
use crate::error::{Error, Result};

/// One `LeaseKeepAlive` stream on one endpoint.
pub struct LeaseKeepAliveStream {
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

impl LeaseKeepAliveStream {
    /// Renews `id` once; a response with `ttl <= 0` means the lease is gone.
    pub async fn keep_alive(&mut self, id: i64) -> Result<LeaseKeepAliveResponse> {
        self.requests
            .send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Closed)?;
        self.receive().await
    }

    async fn receive(&mut self) -> Result<LeaseKeepAliveResponse> {
        match self.responses.message().await? {
            Some(response) => Ok(response),
            None => Err(Error::Status {
                code: tonic::Code::Unavailable,
                message: "lease keep-alive stream closed by the server".into(),
            }),
        }
    }
}

/// Renewals of one lease made by a background task; dropping it stops the renewals.
pub struct KeepAlive {
    responses: mpsc::Receiver<Result<LeaseKeepAliveResponse>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// The next renewal; `Err(LeaseExpired)` once the lease is gone, then `None`.
    pub async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse>> {
        self.responses.recv().await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Opens a keep-alive stream on the current endpoint (with `hasleader`, as clientv3 does)
    /// and renews `id` on it once. The first request goes out with the call because etcd sends
    /// the response headers only with its first response.
    pub async fn lease_keep_alive_stream(
        &self,
        id: i64,
    ) -> Result<(LeaseKeepAliveStream, LeaseKeepAliveResponse)> {
        let (requests, receiver) = mpsc::channel(16);
        requests
            .send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Closed)?;
        let (_, channel) = self.channel();
        let mut request = tonic::Request::new(ReceiverStream::new(receiver));
        self.attach_token(request.metadata_mut());
        request
            .metadata_mut()
            .insert("hasleader", AsciiMetadataValue::from_static("true"));
        let open_and_receive = async {
            let mut stream = LeaseKeepAliveStream {
                requests,
                responses: rpc_client!(LeaseClient, channel, self)
                    .lease_keep_alive(request)
                    .await?
                    .into_inner(),
            };
            let first = stream.receive().await?;
            Ok((stream, first))
        };
        tokio::time::timeout(self.inner.options.request_timeout, open_and_receive)
            .await
            .map_err(|_| Error::DeadlineExceeded)?
    }

    /// Renews `id` once, retrying on other endpoints within the request timeout
    /// (etcdctl `lease keep-alive --once`).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        let mut attempt = 0;
        loop {
            let result = async { Ok(self.lease_keep_alive_stream(id).await?.1) };
            match tokio::time::timeout_at(deadline, result).await {
                Err(_) => return Err(Error::DeadlineExceeded),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) if self.recover(&e, &mut attempt).await && Instant::now() < deadline => {
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Keeps `id` alive until the returned handle is dropped or the lease expires.
    pub fn keep_alive(&self, id: i64) -> KeepAlive {
        let (sender, responses) = mpsc::channel(16);
        let client = self.clone();
        let task = tokio::spawn(async move { client.keep_alive_loop(id, sender).await });
        KeepAlive { responses, task }
    }

    async fn keep_alive_loop(&self, id: i64, sender: mpsc::Sender<Result<LeaseKeepAliveResponse>>) {
        // Until the first renewal we do not know the TTL: give it one request timeout.
        let mut expires_at = Instant::now() + self.inner.options.request_timeout;
        let mut attempt = 0;
        while Instant::now() < expires_at {
            let (mut stream, mut response) = match self.lease_keep_alive_stream(id).await {
                Ok(opened) => opened,
                Err(e) => {
                    if !self.recover(&e, &mut attempt).await {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                    continue;
                }
            };
            loop {
                attempt = 0;
                if response.ttl <= 0 {
                    let _ = sender.send(Err(Error::LeaseExpired(id))).await;
                    return;
                }
                let ttl = Duration::from_secs(response.ttl as u64);
                expires_at = Instant::now() + ttl;
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
                // clientv3 renews at a third of the TTL and gives up at the TTL.
                let pause = ttl / 3;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = sender.closed() => return,
                }
                let renewal =
                    tokio::time::timeout(self.inner.options.request_timeout, stream.keep_alive(id));
                response = match renewal.await.unwrap_or(Err(Error::DeadlineExceeded)) {
                    Ok(response) => response,
                    Err(e) => {
                        if !self.recover(&e, &mut attempt).await {
                            let _ = sender.send(Err(e)).await;
                            return;
                        }
                        break;
                    }
                };
            }
        }
        let _ = sender.send(Err(Error::LeaseExpired(id))).await;
    }
}
