//! Requests a member sends to another member's peer URL outside raft: the calls only the leader
//! can answer (lease renewals and TimeToLive, learner promotion), forwarded as etcd forwards them.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;

/// Posts `body` to `url` over HTTP/1.1 within `timeout`; the answer's status and body, or why
/// there was none.
pub(crate) async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let attempt = async {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("no host in {url}"))?
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::post(uri)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
