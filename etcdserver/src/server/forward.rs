//! Requests a member sends to another member's peer URL outside raft: the calls only the leader
//! can answer (lease renewals and TimeToLive, learner promotion), forwarded as etcd forwards them.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;

use super::cluster::Cluster;
use super::status::RaftStatus;

/// Where a follower forwards lease renewals to the leader (etcd's `leasehttp.LeasePrefix`).
pub(crate) const LEASE_RENEW_PATH: &str = "/leases";
/// Where a follower forwards lease TimeToLive to the leader (etcd's `LeaseInternalPrefix`).
pub(crate) const LEASE_TIME_TO_LIVE_PATH: &str = "/leases/internal";
/// Where a follower forwards MemberPromote to the leader (etcd's peer API), followed by the id
/// in decimal.
pub(crate) const PROMOTE_PATH: &str = "/members/promote/";

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("bad peer URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("connecting: {0}")]
    Connect(#[from] rafthttp::DialError),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where to forward what only the leader can answer: the leader's peer URLs, or none when the
/// leader is unknown or is this member.
pub(crate) fn leader_peer_urls(status: &RaftStatus, cluster: &Cluster) -> Vec<String> {
    match status.leader() {
        Some(leader) if leader != cluster.local_id() => cluster.peer_urls(leader),
        _ => Vec::new(),
    }
}

/// Posts `body` to `url` over HTTP/1.1 (over TLS for https peer URLs) within `timeout`; the
/// answer's status and body, or why there was none.
pub(crate) async fn post(
    dialer: &rafthttp::Dialer,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ForwardError> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(Bytes::from(body)))?;
    exchange(dialer, url, request, timeout).await
}

/// Sends `method` with `headers` and `body` to `url` as [`post`] does (etcd's peer hashkv
/// request is a GET with a body).
pub(crate) async fn send(
    dialer: &rafthttp::Dialer,
    method: hyper::Method,
    url: &str,
    headers: &[(hyper::header::HeaderName, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ForwardError> {
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(http_body_util::Full::new(Bytes::from(body)))?;
    exchange(dialer, url, request, timeout).await
}

/// `GET url` as [`post`] sends its requests (a peer's `/version`).
pub(crate) async fn get(
    dialer: &rafthttp::Dialer,
    url: &str,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ForwardError> {
    let request = hyper::Request::get(url).body(http_body_util::Full::new(Bytes::new()))?;
    exchange(dialer, url, request, timeout).await
}

/// Sends `request` to `url`'s peer within `timeout`.
async fn exchange(
    dialer: &rafthttp::Dialer,
    url: &str,
    mut request: hyper::Request<http_body_util::Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ForwardError> {
    let bad_url = |reason: String| ForwardError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let attempt = async {
        let uri: hyper::Uri = url.parse().map_err(|e| bad_url(format!("{e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| bad_url("no host".into()))?
            .to_string();
        let host = hyper::header::HeaderValue::from_str(&authority)
            .map_err(|e| bad_url(format!("{e}")))?;
        request.headers_mut().insert(hyper::header::HOST, host);
        let stream = dialer.connect(url, timeout).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender.send_request(request).await?;
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(ForwardError::Timeout(timeout)))
}
