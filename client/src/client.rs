//! The connection core: endpoints with failover, timeouts, auth tokens, and the retry policy
//! every RPC goes through.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::auth_client::AuthClient;
use api::etcdserverpb::AuthenticateRequest;
use parking_lot::RwLock;
use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use crate::error::{messages, Error, Result};
use crate::tls::{TlsConnector, TlsOptions};

/// How to reach the cluster. Defaults follow etcdctl's (`--dial-timeout 2s`, `--command-timeout 5s`).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub dial_timeout: Duration,
    /// Budget for one request including its retries on other endpoints.
    pub request_timeout: Duration,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// `(user, password)`; the client authenticates at connect time and again when the token expires.
    pub credentials: Option<(String, String)>,
    /// Largest message the client sends (clientv3's default is 2 MiB).
    pub max_send_bytes: usize,
    /// TLS for `https://` endpoints (`http://` ones stay plaintext). Files named here are read at
    /// connect time even when every endpoint is `http://`, as etcd's clients do.
    pub tls: TlsOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(6),
            credentials: None,
            max_send_bytes: 2 * 1024 * 1024,
            tls: TlsOptions::default(),
        }
    }
}

/// Whether a request may be sent again after a failure whose outcome is unknown.
/// As in clientv3: reads and other idempotent requests retry on `Unavailable`; writes only when
/// the request never reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Safe,
    Unsafe,
}

/// An etcd v3 client; cheap to clone (all clones share connections and the auth token).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    endpoints: Vec<Channel>,
    endpoint_urls: Vec<String>,
    current: AtomicUsize,
    token: RwLock<Option<AsciiMetadataValue>>,
    pub(crate) options: ClientOptions,
}

/// Accepts `host:port` (plaintext), `http://host:port` and `https://host:port`.
pub fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty endpoint"));
    }
    if trimmed.starts_with("unixs://") {
        return Err(invalid("TLS over unix sockets (unixs://) is not supported"));
    }
    let url = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    Ok(url.trim_end_matches('/').to_string())
}

fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

impl Client {
    /// Connects to `endpoints` (lazily: the first request dials) and, with credentials, authenticates.
    pub async fn connect<S: AsRef<str>>(endpoints: &[S], options: ClientOptions) -> Result<Client> {
        let client = Client::build(endpoints, options)?;
        client.authenticate().await?;
        Ok(client)
    }

    fn build<S: AsRef<str>>(endpoints: &[S], options: ClientOptions) -> Result<Client> {
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        let urls = endpoints
            .iter()
            .map(|e| normalize_endpoint(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let tls = if !options.tls.is_empty() || urls.iter().any(|u| is_https(u)) {
            Some(TlsConnector::new(Arc::new(options.tls.client_config()?)))
        } else {
            None
        };
        let mut channels = Vec::with_capacity(endpoints.len());
        for (endpoint, url) in endpoints.iter().zip(&urls) {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::InvalidEndpoint {
                    endpoint: endpoint.as_ref().to_string(),
                    reason: e.to_string(),
                })?
                .connect_timeout(options.dial_timeout)
                .http2_keep_alive_interval(options.keep_alive_interval)
                .keep_alive_timeout(options.keep_alive_timeout)
                .keep_alive_while_idle(false)
                .tcp_nodelay(true);
            let channel = match &tls {
                Some(tls) if is_https(url) => endpoint.connect_with_connector_lazy(tls.clone()),
                _ => endpoint.connect_lazy(),
            };
            channels.push(channel);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: channels,
                endpoint_urls: urls,
                current: AtomicUsize::new(0),
                token: RwLock::new(None),
                options,
            }),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoint_urls
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// A client for the same cluster that talks to exactly one endpoint, with the same options
    /// and the current token (etcdctl's `endpoint status`/`health` ask each member in turn).
    pub fn for_endpoint(&self, endpoint: &str) -> Result<Client> {
        let client = Client::build(&[endpoint], self.inner.options.clone())?;
        *client.inner.token.write() = self.inner.token.read().clone();
        Ok(client)
    }

    /// Fetches a fresh token with the configured credentials. Etcd's "authentication is not
    /// enabled" is not an error here, as in clientv3: requests then go without a token.
    pub async fn authenticate(&self) -> Result<()> {
        let Some((name, password)) = self.inner.options.credentials.clone() else {
            return Ok(());
        };
        let request = AuthenticateRequest { name, password };
        let result = self
            .call_inner(Retry::Safe, false, request, |channel, request| async move {
                AuthClient::new(channel).authenticate(request).await
            })
            .await;
        match result {
            Ok(response) => {
                let token =
                    AsciiMetadataValue::try_from(response.token.as_str()).map_err(|_| {
                        Error::InvalidArgument("server returned a token that is not ASCII".into())
                    })?;
                *self.inner.token.write() = Some(token);
                Ok(())
            }
            Err(e) if e.is_message(messages::AUTH_NOT_ENABLED) => {
                *self.inner.token.write() = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn channel(&self) -> (usize, Channel) {
        let index = self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len();
        (index, self.inner.endpoints[index].clone())
    }

    /// Moves to the next endpoint unless another caller already has.
    pub(crate) fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.inner.endpoints.len();
        let _ =
            self.inner
                .current
                .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn attach_token(&self, metadata: &mut MetadataMap) {
        if let Some(token) = self.inner.token.read().clone() {
            metadata.insert("token", token);
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        self.inner.options.credentials.is_some()
    }

    /// Runs one unary RPC with the retry policy, endpoint failover and token refresh.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        retry: Retry,
        request: Req,
        rpc: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.call_inner(retry, true, request, rpc).await
    }

    async fn call_inner<Req, Resp, F, Fut>(
        &self,
        retry: Retry,
        with_token: bool,
        request: Req,
        rpc: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        let mut refreshed_token = false;
        let mut attempt: u32 = 0;
        loop {
            let (index, channel) = self.channel();
            let mut grpc_request = tonic::Request::new(request.clone());
            grpc_request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            if with_token {
                self.attach_token(grpc_request.metadata_mut());
            }
            let error = match tokio::time::timeout_at(deadline, rpc(channel, grpc_request)).await {
                Err(_) => return Err(Error::DeadlineExceeded),
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => Error::from(status),
            };
            if with_token && !refreshed_token && self.has_credentials() && error.needs_new_token() {
                refreshed_token = true;
                // Boxed: authenticate itself goes through this function.
                Box::pin(self.authenticate()).await?;
                continue;
            }
            if !may_retry(retry, &error) {
                return Err(error);
            }
            tracing::debug!(endpoint = %self.inner.endpoint_urls[index], %error, "retrying request");
            self.fail_over(index);
            attempt += 1;
            let backoff = retry_backoff(attempt);
            if Instant::now() + backoff >= deadline {
                // A server's own answer says more than a bare timeout; a dead link does not.
                return Err(match error {
                    Error::Transport { .. } => Error::DeadlineExceeded,
                    other => other,
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// After a failed stream operation: refresh the token or move to the next endpoint and back
    /// off. Returns whether trying again makes sense.
    pub(crate) async fn recover(&self, error: &Error, attempt: &mut u32) -> bool {
        if error.needs_new_token() && self.has_credentials() {
            return self.authenticate().await.is_ok();
        }
        if !error.is_unavailable() && !matches!(error, Error::DeadlineExceeded) {
            return false;
        }
        let (index, _) = self.channel();
        self.fail_over(index);
        *attempt += 1;
        tokio::time::sleep(retry_backoff(*attempt)).await;
        true
    }
}

fn may_retry(retry: Retry, error: &Error) -> bool {
    match retry {
        Retry::Safe => error.is_unavailable(),
        Retry::Unsafe => matches!(
            error,
            Error::Transport {
                never_sent: true,
                ..
            }
        ),
    }
}

fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis((25u64 << attempt.min(5)).min(500))
}

/// A generated gRPC client on `channel` with the message-size limits of `client`.
macro_rules! rpc_client {
    ($service:ident, $channel:expr, $client:expr) => {
        $service::new($channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size($client.inner.options.max_send_bytes)
    };
}

/// A `Client` method for one unary RPC, sent through `Client::call` with the given retry policy.
macro_rules! unary_rpc {
    ($(#[$doc:meta])* $name:ident: $service:ident::$rpc:ident($request:ty) -> $response:ty, $retry:expr) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $request) -> $crate::error::Result<$response> {
            self.call($retry, request, |channel, request| async move {
                rpc_client!($service, channel, self).$rpc(request).await
            })
            .await
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_scheme_are_http() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("http://localhost:2379/").unwrap(),
            "http://localhost:2379"
        );
        assert!(normalize_endpoint("").is_err());
        assert_eq!(
            normalize_endpoint("https://127.0.0.1:2379").unwrap(),
            "https://127.0.0.1:2379"
        );
        assert!(normalize_endpoint("unixs://sock").is_err());
    }

    #[test]
    fn writes_retry_only_when_never_sent() {
        let refused = Error::Transport {
            message: "tcp connect error: Connection refused (os error 111)".into(),
            never_sent: true,
        };
        let broken = Error::Transport {
            message: "operation was canceled".into(),
            never_sent: false,
        };
        let no_leader = Error::from(tonic::Status::unavailable(messages::NO_LEADER));
        let not_found = Error::from(tonic::Status::invalid_argument("etcdserver: key not found"));
        assert!(may_retry(Retry::Unsafe, &refused));
        assert!(!may_retry(Retry::Unsafe, &broken));
        assert!(!may_retry(Retry::Unsafe, &no_leader));
        assert!(may_retry(Retry::Safe, &broken));
        assert!(may_retry(Retry::Safe, &no_leader));
        assert!(!may_retry(Retry::Safe, &not_found));
    }
}
