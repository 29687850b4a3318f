//! `/health` answers as etcd 3.5 does: `{"health":"true","reason":""}`, or 503 with
//! `{"health":"false","reason":"RAFT NO LEADER"}` (etcd 3.4 answers `{"health":"true"}` without
//! the reason; clients read the `health` field only). Healthy means: no active alarm (other
//! than those named by `?exclude=`), a known leader and a linearizable read barrier passed
//! within a second; `?serializable=true` checks only the alarms, as etcd 3.5.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};

use super::{http_error, method_not_allowed, respond, to_json, ActiveAlarms, TEXT_PLAIN};
use crate::core::ServerCore;
use crate::error::ServerError;
use crate::metrics::metrics;

/// How long `/health` waits for the read barrier (etcd 3.4's quorum GET timeout).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// `/health`'s body, fields in etcd's order.
#[derive(serde::Serialize)]
struct Health<'a> {
    health: &'static str,
    reason: &'a str,
}

/// `/health`'s query: `exclude=<ALARM>` (repeatable) and `serializable=true`.
struct HealthQuery {
    excluded: Vec<String>,
    serializable: bool,
}

impl HealthQuery {
    fn parse(query: Option<&str>) -> HealthQuery {
        let mut q = HealthQuery {
            excluded: Vec::new(),
            serializable: false,
        };
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "exclude" if !value.is_empty() => q.excluded.push(value.to_owned()),
                "serializable" => q.serializable = value == "true",
                _ => {}
            }
        }
        q
    }
}

pub(super) async fn health<C: ServerCore>(
    core: Arc<C>,
    alarms: ActiveAlarms,
    req: Request<Body>,
) -> Response<Body> {
    if req.method() != Method::GET {
        tracing::warn!(status = 405, "/health error");
        return method_not_allowed();
    }
    let query = HealthQuery::parse(req.uri().query());
    let reason = unhealthy_reason(&*core, &alarms, &query).await;
    let body = to_json(&Health {
        health: if reason.is_none() { "true" } else { "false" },
        reason: reason.as_deref().unwrap_or(""),
    });
    match reason {
        None => {
            metrics().health_success.inc();
            tracing::debug!("/health OK");
            respond(StatusCode::OK, TEXT_PLAIN, body)
        }
        Some(reason) => {
            metrics().health_failures.inc();
            tracing::warn!(%reason, "/health error");
            http_error(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

/// Why the member is unhealthy, in etcd's words; `None` when it is healthy.
async fn unhealthy_reason<C: ServerCore>(
    core: &C,
    alarms: &ActiveAlarms,
    query: &HealthQuery,
) -> Option<String> {
    for alarm in alarms() {
        // etcd counts every alarm recorded, one of kind NONE too.
        if query.excluded.iter().any(|e| e == alarm.as_str_name()) {
            continue;
        }
        return Some(format!("ALARM {}", alarm.as_str_name()));
    }
    if query.serializable {
        // A serializable read is served from the local store and cannot fail.
        return None;
    }
    if core.leader_id().is_none() {
        return Some("RAFT NO LEADER".into());
    }
    let read = tokio::time::timeout(HEALTH_READ_TIMEOUT, core.read_barrier()).await;
    match read {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("RANGE ERROR:{e}")),
        Err(_) => Some(format!("RANGE ERROR:{}", ServerError::Timeout)),
    }
}
