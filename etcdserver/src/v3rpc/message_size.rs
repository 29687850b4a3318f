//! A request message over the gRPC receive limit (`--max-request-bytes` + 512 KiB), answered in
//! grpc-go's words as etcd's clients see them: `ResourceExhausted: grpc: received message larger
//! than max (N vs. M)`. tonic refuses such a message itself, with code OutOfRange and its own
//! text, before any handler runs; this layer rewrites that one status, in the headers of a unary
//! answer or the trailers of a stream.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response};
use http_body_util::BodyExt;

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";
/// tonic's `Code::OutOfRange` and gRPC's `ResourceExhausted`.
const OUT_OF_RANGE: &[u8] = b"11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Wraps the client routes.
pub(crate) fn in_grpc_go_words(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_response(rewrite))
}

async fn rewrite(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    rewrite_status(&mut parts.headers);
    let body = body.map_frame(|mut frame| {
        if let Some(trailers) = frame.trailers_mut() {
            rewrite_status(trailers);
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

fn rewrite_status(headers: &mut HeaderMap) {
    if headers.get(GRPC_STATUS).map(HeaderValue::as_bytes) != Some(OUT_OF_RANGE) {
        return;
    }
    let Some((found, limit)) = headers
        .get(GRPC_MESSAGE)
        .and_then(|v| tonic_too_large(&percent_decode(v.as_bytes())))
    else {
        return;
    };
    let message = format!("grpc: received message larger than max ({found} vs. {limit})");
    headers.insert(GRPC_STATUS, HeaderValue::from_static(RESOURCE_EXHAUSTED));
    if let Ok(v) = HeaderValue::from_str(&message.replace(' ', "%20")) {
        headers.insert(GRPC_MESSAGE, v);
    }
}

/// The sizes in tonic's "decoded message length too large" text.
fn tonic_too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// gRPC's percent-decoding of `grpc-message`.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_refusal_becomes_grpc_gos() {
        let status = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 600007 bytes, the limit is: 525312 bytes",
        );
        let response = status.into_http::<Body>();
        let mut headers = response.headers().clone();
        rewrite_status(&mut headers);
        let status = tonic::Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (600007 vs. 525312)"
        );
        // Any other OutOfRange (etcd's own, e.g. a compacted revision) is left alone.
        let mut other =
            tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
                .into_http::<Body>()
                .headers()
                .clone();
        rewrite_status(&mut other);
        assert_eq!(
            tonic::Status::from_header_map(&other).unwrap().code(),
            tonic::Code::OutOfRange
        );
    }
}
