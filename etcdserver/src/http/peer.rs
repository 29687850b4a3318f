//! The peer port's HTTP routes besides raft's own (etcd's `etcdserver/api/etcdhttp` peer
//! handler and `leasehttp`): `/members` for joining members, and the leader's ends of what
//! followers forward to it (lease renewals and TimeToLive, learner promotion).

use api::etcdserverpb as pb;
use axum::http::{header, HeaderName, StatusCode};
use axum::Router;
use bytes::Bytes;
use prost::Message;

use crate::core::ServerCore;
use crate::error::ServerError;
use crate::server::{
    EtcdServer, CLUSTER_ID_HEADER, LEASE_RENEW_PATH, LEASE_TIME_TO_LIVE_PATH, PROMOTE_PATH,
};

/// The peer listener's handlers: raft's transport plus etcd's `/members`, the forwarded lease
/// requests and promotions.
pub fn router(server: &EtcdServer) -> Router {
    let members = server.clone();
    server
        .raft_router()
        .merge(lease_routes(server))
        .merge(promote_route(server))
        // corrupt
        .merge(crate::server::corrupt::hash_kv_route(server))
        .merge(downgrade_routes(server))
        .route(
            "/members",
            axum::routing::get(move || {
                let server = members.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json".to_owned()),
                            (
                                HeaderName::from_static(CLUSTER_ID_HEADER),
                                format!("{:x}", server.cluster_id()),
                            ),
                        ],
                        server.members_json(),
                    )
                }
            }),
        )
}

/// The peer endpoints where followers forward renewals and TimeToLive to the leader.
fn lease_routes(server: &EtcdServer) -> Router {
    let weak = server.downgrade();
    let renew_weak = weak.clone();
    Router::new()
        .route(
            LEASE_RENEW_PATH,
            axum::routing::post(move |body: Bytes| {
                let weak = renew_weak.clone();
                async move {
                    let Some(server) = weak.upgrade() else {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    };
                    let Ok(req) = pb::LeaseKeepAliveRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !server.is_leader() {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    }
                    match server.lease_renew_here(req.id).await {
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
            LEASE_TIME_TO_LIVE_PATH,
            axum::routing::post(move |body: Bytes| {
                let weak = weak.clone();
                async move {
                    let Some(server) = weak.upgrade() else {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    };
                    let Ok(req) = pb::LeaseTimeToLiveRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !server.is_leader() {
                        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                    }
                    match server.lease_time_to_live_here(req.id, req.keys).await {
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

/// The leader's end of forwarded promotions: `POST /members/promote/<id>` answers 200 and the
/// members as JSON, 404 for an unknown member, 412 with etcd's message for a member that is not a
/// learner or not in sync, 503 off the leader or on any other failure (the sender retries).
fn promote_route(server: &EtcdServer) -> Router {
    let weak = server.downgrade();
    Router::new().route(
        &format!("{PROMOTE_PATH}{{id}}"),
        axum::routing::post(
            move |axum::extract::Path(id): axum::extract::Path<String>| {
                let weak = weak.clone();
                async move {
                    let Some(server) = weak.upgrade() else {
                        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                    };
                    let Ok(id) = id.parse::<u64>() else {
                        return (StatusCode::BAD_REQUEST, format!("invalid member id {id:?}"));
                    };
                    match server.promote_member_here(id).await {
                        Ok(members) => (
                            StatusCode::OK,
                            serde_json::to_string(&members).unwrap_or_default(),
                        ),
                        Err(e @ ServerError::MemberNotFound) => {
                            (StatusCode::NOT_FOUND, e.to_string())
                        }
                        Err(e @ (ServerError::MemberNotLearner | ServerError::LearnerNotReady)) => {
                            (StatusCode::PRECONDITION_FAILED, e.to_string())
                        }
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                    }
                }
            },
        ),
    )
}

// downgrade
/// etcd's `DowngradeEnabledPath`.
const DOWNGRADE_ENABLED_PATH: &str = "/downgrade/enabled";

/// The peer port's `/version` (what the leader asks each member to decide the cluster version)
/// and `/downgrade/enabled` (`true`/`false` after a linearizable read, as etcd's
/// `downgradeEnabledHandler`).
fn downgrade_routes(server: &EtcdServer) -> Router {
    let version_core = std::sync::Arc::new(server.clone());
    let weak = server.downgrade();
    Router::new()
        .route(
            "/version",
            axum::routing::any(move |method: axum::http::Method| {
                super::version(version_core.clone(), method)
            }),
        )
        .route(
            DOWNGRADE_ENABLED_PATH,
            axum::routing::any(move |method: axum::http::Method| {
                let weak = weak.clone();
                async move {
                    use axum::response::IntoResponse;
                    if method != axum::http::Method::GET {
                        return super::method_not_allowed();
                    }
                    let Some(server) = weak.upgrade() else {
                        return super::http_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "server stopped",
                        );
                    };
                    let cluster_id = (
                        HeaderName::from_static(CLUSTER_ID_HEADER),
                        format!("{:x}", server.cluster_id()),
                    );
                    if let Err(e) = server.read_barrier().await {
                        let text = format!("failed linearized read: {e}");
                        let mut answer =
                            super::http_error(StatusCode::INTERNAL_SERVER_ERROR, &text);
                        if let Ok(v) = cluster_id.1.parse() {
                            answer.headers_mut().insert(cluster_id.0, v);
                        }
                        return answer;
                    }
                    let enabled = server.downgrade_info().enabled;
                    (
                        [(header::CONTENT_TYPE, "text/plain".to_owned()), cluster_id],
                        enabled.to_string(),
                    )
                        .into_response()
                }
            }),
        )
}
