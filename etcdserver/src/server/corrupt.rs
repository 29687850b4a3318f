//! etcd's corruption checks (`etcdserver/corrupt.go`): members holding the same history have
//! the same `HashKV` at the same revision, so a member whose data diverged shows up as a hash
//! that differs from its peers' at one revision with one compaction revision.
//!
//! - the initial check: a restarting member compares its hash with its peers' before raft
//!   starts, and refuses to start on a mismatch (`<id> found data inconsistency with peers`);
//! - the periodic check: the leader hashes, asks the followers for the same revision, hashes
//!   again after a read barrier, and raises CORRUPT on any mismatch etcd counts as one;
//! - the compaction hash check (3.5): the leader compares the hashes recorded at the last
//!   compactions (newest first) with the followers' for the same compaction.
//!
//! Peers answer on the peer port's `GET /members/hashkv` (etcd's `PeerHashKVPath`), with
//! etcd's JSON. CORRUPT is raised for member 0, as etcd 3.4.23/3.5 do: which member diverged
//! is not known.

use std::time::Duration;

use api::etcdserverpb::AlarmType;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::forward::{send, ForwardError};
use super::membership::Member;
use super::EtcdServer;
use crate::config::CorruptCheckConfig;
use crate::core::ServerCore;
use crate::server::CLUSTER_ID_HEADER;

/// etcd's `PeerHashKVPath`.
pub(crate) const PEER_HASH_KV_PATH: &str = "/members/hashkv";
/// rafthttp's `ErrClusterIDMismatch`, which a peer of another cluster answers with.
const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";

/// Why a check could not run, or what it found.
#[derive(Debug, thiserror::Error)]
pub enum CorruptCheckError {
    /// etcd's `InitialCheck` message; the id is this member's, in hex.
    #[error("{0:x} found data inconsistency with peers")]
    Inconsistent(u64),
    #[error("{member:x} failed to fetch hash ({source})")]
    LocalHash { member: u64, source: mvcc::Error },
    #[error("hashing the key table: {0}")]
    Hash(#[from] mvcc::Error),
    #[error("the hashing task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Server(#[from] crate::error::ServerError),
}

/// etcd's `pb.HashKVRequest` as Go's `encoding/json` writes it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HashKvRequestJson {
    #[serde(default, skip_serializing_if = "is_zero")]
    revision: i64,
}

/// etcd's `pb.ResponseHeader` as Go's `encoding/json` writes it (every field `omitempty`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct HeaderJson {
    #[serde(default, skip_serializing_if = "is_zero")]
    cluster_id: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    member_id: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    revision: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    raft_term: u64,
}

/// etcd's `pb.HashKVResponse` as Go's `encoding/json` writes it: etcd fills only the header's
/// revision (the peer's current revision).
#[derive(Debug, Default, Serialize, Deserialize)]
struct HashKvResponseJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<HeaderJson>,
    #[serde(default, skip_serializing_if = "is_zero")]
    hash: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    compact_revision: i64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One peer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerHash {
    hash: u32,
    compact_revision: i64,
    /// The peer's current revision.
    revision: i64,
}

/// Why a peer gave no hash.
#[derive(Debug, thiserror::Error)]
enum PeerHashError {
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("cluster ID mismatch")]
    ClusterIdMismatch,
    #[error("unknown error: {0}")]
    Unknown(String),
    #[error("{0}")]
    Unreachable(#[from] ForwardError),
    #[error("decoding the answer: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A peer and what it answered (etcd's `peerHashKVResp`).
struct PeerAnswer {
    id: u64,
    urls: Vec<String>,
    answer: Result<PeerHash, PeerHashError>,
}

/// What asking peers needs: who we are and how to reach them.
struct PeerAsker {
    local_id: u64,
    cluster_id: u64,
    dialer: rafthttp::Dialer,
    timeout: Duration,
}

impl PeerAsker {
    /// etcd's `getPeerHashKVs`: every other member with peer URLs is asked for its hash at
    /// `rev`, trying its URLs in turn until one answers.
    async fn peer_hashes(&self, members: &[Member], rev: i64) -> Vec<PeerAnswer> {
        let mut answers = Vec::new();
        for m in members {
            if m.id == self.local_id || m.peer_urls.is_empty() {
                continue;
            }
            let mut last = None;
            for url in &m.peer_urls {
                match self.hash_by_rev(url, rev).await {
                    Ok(hash) => {
                        last = Some(Ok(hash));
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            local_member_id = format!("{:x}", self.local_id),
                            requested_revision = rev,
                            remote_peer_endpoint = %url,
                            error = %e,
                            "failed hash kv request"
                        );
                        last = Some(Err(e));
                    }
                }
            }
            if let Some(answer) = last {
                answers.push(PeerAnswer {
                    id: m.id,
                    urls: m.peer_urls.clone(),
                    answer,
                });
            }
        }
        answers
    }

    /// etcd's `HashByRev` client: a GET with the JSON request as its body.
    async fn hash_by_rev(&self, url: &str, rev: i64) -> Result<PeerHash, PeerHashError> {
        let body = serde_json::to_vec(&HashKvRequestJson { revision: rev })?;
        let target = format!("{}{PEER_HASH_KV_PATH}", url.trim_end_matches('/'));
        let headers = [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                HeaderName::from_static(CLUSTER_ID_HEADER),
                format!("{:x}", self.cluster_id),
            ),
        ];
        let (status, body) = send(
            &self.dialer,
            Method::GET,
            &target,
            &headers,
            body,
            self.timeout,
        )
        .await?;
        let text = String::from_utf8_lossy(&body);
        if status == StatusCode::BAD_REQUEST {
            if text.contains(&mvcc::Error::Compacted.to_string()) {
                return Err(PeerHashError::Compacted);
            }
            if text.contains(&mvcc::Error::FutureRevision.to_string()) {
                return Err(PeerHashError::FutureRevision);
            }
        } else if status == StatusCode::PRECONDITION_FAILED && text.contains(CLUSTER_ID_MISMATCH) {
            return Err(PeerHashError::ClusterIdMismatch);
        }
        if status != StatusCode::OK {
            return Err(PeerHashError::Unknown(text.into_owned()));
        }
        let resp: HashKvResponseJson = serde_json::from_slice(&body)?;
        Ok(PeerHash {
            hash: resp.hash,
            compact_revision: resp.compact_revision,
            revision: resp.header.map_or(0, |h| h.revision),
        })
    }
}

/// Hashes the store off the async threads (a whole key table walk).
async fn hash_store(
    store: &std::sync::Arc<mvcc::Store>,
    rev: i64,
) -> Result<mvcc::KvHash, CorruptCheckError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.hash_kv(rev))
        .await
        .map_err(|e| CorruptCheckError::Task(e.to_string()))?
        .map_err(CorruptCheckError::from)
}

/// etcd's `InitialCheck`, run by a restarting member before raft starts: its hash at its
/// current revision against each peer's at the same revision. Only a different hash with the
/// same compaction revision is a mismatch; slow peers, compacted peers and unreachable ones
/// are logged.
pub(crate) fn initial_check(
    store: &std::sync::Arc<mvcc::Store>,
    members: &[Member],
    local_id: u64,
    cluster_id: u64,
    dialer: rafthttp::Dialer,
    timeout: Duration,
) -> Result<(), CorruptCheckError> {
    let asker = PeerAsker {
        local_id,
        cluster_id,
        dialer,
        timeout,
    };
    tracing::info!(
        local_member_id = format!("{local_id:x}"),
        ?timeout,
        "starting initial corruption check"
    );
    let h = store
        .hash_kv(0)
        .map_err(|source| CorruptCheckError::LocalHash {
            member: local_id,
            source,
        })?;
    // Called from the member's start, which may itself run on an async thread: the peers are
    // asked from a thread of its own with a runtime of its own.
    let peers = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(asker.peer_hashes(members, h.revision)))
            })
            .join()
    })
    .map_err(|_| CorruptCheckError::Task("the initial check thread panicked".into()))?
    .map_err(|e| CorruptCheckError::Task(e.to_string()))?;
    let mut mismatch = 0;
    for p in &peers {
        match &p.answer {
            Ok(peer) => {
                if peer.hash == h.hash {
                    continue;
                }
                if peer.compact_revision == h.compact_revision {
                    tracing::warn!(
                        local_member_id = format!("{local_id:x}"),
                        local_member_revision = h.revision,
                        local_member_compact_revision = h.compact_revision,
                        local_member_hash = h.hash,
                        remote_peer_id = format!("{:x}", p.id),
                        remote_peer_endpoints = ?p.urls,
                        remote_peer_revision = peer.revision,
                        remote_peer_compact_revision = peer.compact_revision,
                        remote_peer_hash = peer.hash,
                        "found different hash values from remote peer"
                    );
                    mismatch += 1;
                } else {
                    tracing::warn!(
                        local_member_id = format!("{local_id:x}"),
                        local_member_compact_revision = h.compact_revision,
                        remote_peer_id = format!("{:x}", p.id),
                        remote_peer_compact_revision = peer.compact_revision,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            Err(PeerHashError::FutureRevision) => tracing::warn!(
                local_member_id = format!("{local_id:x}"),
                local_member_revision = h.revision,
                remote_peer_id = format!("{:x}", p.id),
                remote_peer_endpoints = ?p.urls,
                "cannot fetch hash from slow remote peer"
            ),
            Err(PeerHashError::Compacted) => tracing::warn!(
                local_member_id = format!("{local_id:x}"),
                local_member_revision = h.revision,
                remote_peer_id = format!("{:x}", p.id),
                remote_peer_endpoints = ?p.urls,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            Err(PeerHashError::ClusterIdMismatch) => tracing::warn!(
                local_member_id = format!("{local_id:x}"),
                remote_peer_id = format!("{:x}", p.id),
                "cluster ID mismatch"
            ),
            Err(_) => {}
        }
    }
    if mismatch > 0 {
        return Err(CorruptCheckError::Inconsistent(local_id));
    }
    tracing::info!(
        local_member_id = format!("{local_id:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

impl EtcdServer {
    fn peer_asker(&self) -> PeerAsker {
        PeerAsker {
            local_id: self.member_id(),
            cluster_id: self.cluster_id(),
            dialer: self.inner.transport.dialer().clone(),
            timeout: self.inner.proposer.request_timeout(),
        }
    }

    /// etcd's `triggerCorruptAlarm`: CORRUPT for member 0, through raft.
    async fn trigger_corrupt_alarm(&self) {
        if let Err(e) = self.raise_alarm(0, AlarmType::Corrupt).await {
            tracing::error!(error = %e, "raising the CORRUPT alarm");
        }
    }

    /// etcd's `PeriodicCheck` (run by the leader): hash, ask the followers at that revision,
    /// pass a read barrier, hash again; a follower ahead of the leader's revision or
    /// compaction, or with another hash at the leader's first compaction revision, or the
    /// leader's own hash changing under the same revisions, raises CORRUPT (once).
    pub(crate) async fn periodic_corrupt_check(&self) -> Result<(), CorruptCheckError> {
        let store = self.store().clone();
        let h = hash_store(&store, 0).await?;
        let members = self.membership().list();
        let peers = self.peer_asker().peer_hashes(&members, h.revision).await;
        self.read_barrier().await?;
        let h2 = hash_store(&store, 0).await?;

        let mut mismatch = false;
        if h2.hash != h.hash
            && h2.revision == h.revision
            && h.compact_revision == h2.compact_revision
        {
            tracing::warn!(
                revision_1 = h.revision,
                compact_revision_1 = h.compact_revision,
                hash_1 = h.hash,
                revision_2 = h2.revision,
                compact_revision_2 = h2.compact_revision,
                hash_2 = h2.hash,
                "found hash mismatch"
            );
            mismatch = true;
        }
        let mut checked = 0;
        for p in &peers {
            let Ok(peer) = &p.answer else { continue };
            checked += 1;
            let follower = format!("{:x}", p.id);
            if peer.revision > h2.revision {
                tracing::warn!(
                    leader_revision = h2.revision,
                    follower_revision = peer.revision,
                    follower_peer_id = %follower,
                    "revision from follower must be less than or equal to leader's"
                );
                mismatch = true;
            }
            if peer.compact_revision > h2.compact_revision {
                tracing::warn!(
                    leader_compact_revision = h2.compact_revision,
                    follower_compact_revision = peer.compact_revision,
                    follower_peer_id = %follower,
                    "compact revision from follower must be less than or equal to leader's"
                );
                mismatch = true;
            }
            if peer.compact_revision == h.compact_revision && peer.hash != h.hash {
                tracing::warn!(
                    leader_compact_revision = h.compact_revision,
                    leader_hash = h.hash,
                    follower_compact_revision = peer.compact_revision,
                    follower_hash = peer.hash,
                    follower_peer_id = %follower,
                    "same compact revision then hashes must match"
                );
                mismatch = true;
            }
        }
        if mismatch {
            self.trigger_corrupt_alarm().await;
        }
        tracing::info!(
            number_of_peers_checked = checked,
            "finished peer corruption check"
        );
        Ok(())
    }

    /// etcd 3.5's `CompactHashCheck` (run by the leader): the hashes recorded at compactions
    /// newer than `latest_checked`, newest first, against each follower's for the same
    /// compaction. A different hash raises CORRUPT; the first compaction every follower
    /// confirmed becomes the new `latest_checked`.
    pub(crate) async fn compact_hash_check(&self, latest_checked: &mut i64) {
        tracing::info!(
            local_member_id = format!("{:x}", self.member_id()),
            "starting compact hash check"
        );
        let hashes: Vec<mvcc::KvHash> = self
            .store()
            .compaction_hashes()
            .into_iter()
            .take_while(|h| h.revision > *latest_checked)
            .collect();
        let asker = self.peer_asker();
        for (i, hash) in hashes.iter().enumerate() {
            let peers = asker
                .peer_hashes(&self.membership().list(), hash.revision)
                .await;
            if peers.is_empty() {
                continue;
            }
            let mut checked = 0;
            for p in &peers {
                let Ok(peer) = &p.answer else { continue };
                if peer.compact_revision != hash.compact_revision {
                    continue;
                }
                if peer.hash != hash.hash {
                    self.trigger_corrupt_alarm().await;
                    tracing::error!(
                        compact_revision = hash.compact_revision,
                        leader_hash = hash.hash,
                        follower_hash = peer.hash,
                        follower_peer_id = format!("{:x}", p.id),
                        "failed compaction hash check"
                    );
                    return;
                }
                checked += 1;
                tracing::info!(
                    compact_revision = hash.compact_revision,
                    leader_hash = hash.hash,
                    follower_peer_id = format!("{:x}", p.id),
                    "successfully checked hash on follower"
                );
            }
            if checked == peers.len() {
                tracing::info!(
                    compact_revision = hash.compact_revision,
                    hash = hash.hash,
                    "successfully checked hash on whole cluster"
                );
                *latest_checked = (*latest_checked).max(hash.revision);
                tracing::info!(
                    number_of_hashes_checked = i + 1,
                    "finished compaction hash check"
                );
                return;
            }
            tracing::warn!(
                compact_revision = hash.compact_revision,
                peers_checked = checked,
                "skipped revision in compaction hash check; was not able to check all peers"
            );
        }
        tracing::info!(
            number_of_hashes_checked = hashes.len(),
            "finished compaction hash check"
        );
    }

    /// Starts etcd's `monitorKVHash` and `monitorCompactHash` as configured: each waits its
    /// interval, and runs its check when this member is the leader, until the member stops.
    pub(crate) fn spawn_corrupt_monitors(&self, config: &CorruptCheckConfig) {
        if let Some(every) = config.periodic {
            tracing::info!(
                local_member_id = format!("{:x}", self.member_id()),
                interval = ?every,
                "enabled corruption checking"
            );
            self.spawn_leader_loop(every, |server| async move {
                if let Err(e) = server.periodic_corrupt_check().await {
                    tracing::warn!(error = %e, "failed to check hash KV");
                }
            });
        }
        if let Some(every) = config.compact_hash {
            tracing::info!(
                local_member_id = format!("{:x}", self.member_id()),
                interval = ?every,
                "enabled compaction hash check"
            );
            let latest = std::sync::Arc::new(parking_lot::Mutex::new(0i64));
            self.spawn_leader_loop(every, move |server| {
                let latest = latest.clone();
                async move {
                    let mut checked = *latest.lock();
                    server.compact_hash_check(&mut checked).await;
                    *latest.lock() = checked;
                }
            });
        }
    }
}

/// The peer port's `/members/hashkv` (etcd's `hashKVHandler`): GET only, a cluster id header
/// that names another cluster is refused, the body is a JSON `HashKVRequest`; the answer is
/// the hash a compaction recorded at that revision if there is one (etcd 3.5's
/// `hashStorage.HashByRev`), else the store's hash.
pub(crate) fn hash_kv_route(server: &EtcdServer) -> axum::Router {
    let weak = server.downgrade();
    axum::Router::new().route(
        PEER_HASH_KV_PATH,
        axum::routing::any(move |method: Method, headers: HeaderMap, body: Bytes| {
            let weak = weak.clone();
            async move {
                let Some(server) = weak.upgrade() else {
                    return plain_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "etcdserver: server stopped",
                    );
                };
                serve_hash_kv(&server, &method, &headers, &body).await
            }
        }),
    )
}

/// Go's `http.Error`: the text and a newline, as text/plain.
fn plain_error(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

async fn serve_hash_kv(
    server: &EtcdServer,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if method != Method::GET {
        let mut resp = plain_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return resp;
    }
    let cluster_id = format!("{:x}", server.cluster_id());
    if let Some(given) = headers.get(CLUSTER_ID_HEADER) {
        if !given.is_empty() && given.as_bytes() != cluster_id.as_bytes() {
            return plain_error(StatusCode::PRECONDITION_FAILED, CLUSTER_ID_MISMATCH);
        }
    }
    let req: HashKvRequestJson = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => {
            tracing::warn!(error = %e, "failed to unmarshal request");
            return plain_error(StatusCode::BAD_REQUEST, "error unmarshalling request");
        }
    };
    let store = server.store();
    let hash = match store.compaction_hash(req.revision) {
        Some(recorded) => Ok(recorded),
        None => hash_store(store, req.revision).await,
    };
    let hash = match hash {
        Ok(hash) => hash,
        Err(e) => {
            tracing::warn!(requested_revision = req.revision, error = %e, "failed to get hashKV");
            let text = match e {
                CorruptCheckError::Hash(e) => e.to_string(),
                other => other.to_string(),
            };
            return plain_error(StatusCode::BAD_REQUEST, &text);
        }
    };
    let resp = HashKvResponseJson {
        header: Some(HeaderJson {
            revision: hash.current_revision,
            ..Default::default()
        }),
        hash: hash.hash,
        compact_revision: hash.compact_revision,
    };
    let json = match serde_json::to_vec(&resp) {
        Ok(json) => json,
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    (
        StatusCode::OK,
        [
            (HeaderName::from_static(CLUSTER_ID_HEADER), cluster_id),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        json,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_go_encoding_json_of_etcds_messages() {
        let req = serde_json::to_string(&HashKvRequestJson { revision: 7 }).unwrap();
        assert_eq!(req, r#"{"revision":7}"#);
        assert_eq!(
            serde_json::to_string(&HashKvRequestJson::default()).unwrap(),
            "{}"
        );
        let parsed: HashKvRequestJson = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed.revision, 0);
        let resp = HashKvResponseJson {
            header: Some(HeaderJson {
                revision: 9,
                ..Default::default()
            }),
            hash: 123,
            compact_revision: -1,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"header":{"revision":9},"hash":123,"compact_revision":-1}"#
        );
        let back: HashKvResponseJson =
            serde_json::from_str(r#"{"header":{"revision":4},"hash":5}"#).unwrap();
        assert_eq!((back.hash, back.compact_revision), (5, 0));
    }

    #[test]
    fn the_initial_check_error_is_etcds() {
        assert_eq!(
            CorruptCheckError::Inconsistent(0x8e9e05c52164694d).to_string(),
            "8e9e05c52164694d found data inconsistency with peers"
        );
    }
}
