//! What every peer request goes through before its body is read: etcd's checks of the sender, the target and the
//! cluster, and the plain-text refusals etcd answers with.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Rejection;
use crate::{format_id, parse_id, Inner, HEADER_CLUSTER_ID, HEADER_FROM, HEADER_TO};

/// An error answer in etcd's shape: plain text, our cluster id in the header.
pub(crate) fn refuse(inner: &Inner, status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (HEADER_CLUSTER_ID, format_id(inner.config.cluster_id)),
            // Every peer request has a connection of its own: close it with the answer.
            (http::header::CONNECTION.as_str(), "close".to_string()),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

/// The refusal of a request that failed [`check_request`] (or named an unknown sender).
pub(crate) fn reject(inner: &Inner, rejection: Rejection) -> Response {
    refuse(inner, rejection.status(), &rejection.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The checks etcd makes on every peer request, in etcd's order. Returns the sender's id.
pub(crate) fn check_request(
    inner: &Inner,
    headers: &HeaderMap,
    what: &str,
) -> Result<u64, Rejection> {
    if inner.shutdown.is_cancelled() {
        return Err(Rejection::Stopped);
    }
    let local_cluster = inner.config.cluster_id;
    let local_id = inner.config.member_id;
    let from_text = header(headers, HEADER_FROM);
    let cluster_text = header(headers, HEADER_CLUSTER_ID);
    if parse_id(cluster_text) != Some(local_cluster) {
        tracing::warn!(
            local_member_id = %format_id(local_id),
            local_cluster_id = %format_id(local_cluster),
            remote_peer_id = %from_text,
            remote_cluster_id = %cluster_text,
            request = what,
            "rejected peer request: cluster ID mismatch"
        );
        return Err(Rejection::ClusterIdMismatch);
    }
    let Some(from) = parse_id(from_text) else {
        tracing::warn!(remote_peer_id = %from_text, request = what, "rejected peer request: invalid sender id");
        return Err(Rejection::InvalidFrom);
    };
    if inner.raft.is_removed(from) {
        tracing::warn!(
            local_member_id = %format_id(local_id),
            remote_peer_id = %format_id(from),
            request = what,
            "rejected peer request because the sender was removed from the cluster"
        );
        return Err(Rejection::RemovedMember);
    }
    let to_text = header(headers, HEADER_TO);
    if parse_id(to_text) != Some(local_id) {
        tracing::warn!(
            local_member_id = %format_id(local_id),
            remote_peer_id = %format_id(from),
            target = %to_text,
            request = what,
            "rejected peer request: ID mismatch"
        );
        return Err(Rejection::ToMismatch);
    }
    Ok(from)
}
