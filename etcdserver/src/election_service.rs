//! The Election gRPC service (etcd's `v3election`): clientv3's election recipe run inside the
//! member. A candidate's key is `name/<lease in hex>`; the leader is the oldest key under
//! `name/`; a campaign returns once every older candidate's key is gone.
//!
//! Errors reach the caller as etcd's do: code `Unknown` with the recipe's text (see
//! [`crate::lock_service`]).

use std::pin::Pin;
use std::sync::Arc;

use api::etcdserverpb as pb;
use api::etcdserverpb::range_request::SortOrder;
use api::v3electionpb as epb;
use api::v3electionpb::election_server::{Election, ElectionServer};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::core::ServerCore;
use crate::error::ServerError;
use crate::kv_service::GRPC_OVERHEAD_BYTES;
use crate::lock_service::{
    create_revision_is, get, op, participants_prefix, put, range_kvs, recipe_status,
    remove_participant, session_key, under_prefix, CleanupOnCancel, RecipeError, RecipeKv,
};

/// Leader responses queued for an observer before the observing task waits for it.
const OBSERVE_BUFFER: usize = 16;

pub struct ElectionService<C: ServerCore> {
    kv: RecipeKv<C>,
}

pub type LeaderStream = Pin<Box<dyn Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

impl<C: ServerCore> ElectionService<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self {
            kv: RecipeKv { core },
        }
    }

    pub fn into_server(self) -> ElectionServer<Self> {
        let limit = self
            .kv
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        ElectionServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    /// clientv3's `Election.Campaign` for the session of `lease`.
    async fn campaign(
        &self,
        r: epb::CampaignRequest,
    ) -> Result<epb::CampaignResponse, RecipeError> {
        if r.lease == 0 {
            return Err(RecipeError::LeaseRequired);
        }
        let prefix = participants_prefix(&r.name);
        let key = session_key(&prefix, r.lease);
        let enter = pb::TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op(put(&key, r.value.clone(), r.lease))],
            failure: vec![op(get(&key))],
        };
        let resp = self.kv.txn(enter).await?;
        let header = resp.header.unwrap_or_default();
        let mut revision = header.revision;
        if !resp.succeeded {
            // This lease already campaigns: keep its place, take the new value.
            let Some(existing) = range_kvs(&resp, 0).first() else {
                return Err(RecipeError::NotLeader);
            };
            revision = existing.create_revision;
            if existing.value != r.value {
                if let Err(e) = self.proclaim(&key, revision, r.lease, r.value).await {
                    let _ = remove_participant(&self.kv, key, Some(revision)).await;
                    return Err(e);
                }
            }
        }

        let cleanup = CleanupOnCancel::new(&self.kv, &key, Some(revision));
        let waited = self.kv.wait_deletes(&prefix, revision - 1).await;
        // On a failure other than cancellation etcd keeps the key: the candidate may resume.
        cleanup.disarm();
        waited?;
        Ok(epb::CampaignResponse {
            header: Some(header),
            leader: Some(epb::LeaderKey {
                name: r.name,
                key,
                rev: revision,
                lease: r.lease,
            }),
        })
    }

    /// Sets the leader's value if `key` is still the key created at `revision`.
    async fn proclaim(
        &self,
        key: &[u8],
        revision: i64,
        lease: i64,
        value: Vec<u8>,
    ) -> Result<pb::ResponseHeader, RecipeError> {
        let txn = pb::TxnRequest {
            compare: vec![create_revision_is(key, revision)],
            success: vec![op(put(key, value, lease))],
            failure: Vec::new(),
        };
        let resp = self.kv.txn(txn).await?;
        if !resp.succeeded {
            return Err(RecipeError::NotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// The oldest candidate under `prefix`.
    async fn leader(&self, prefix: &[u8]) -> Result<epb::LeaderResponse, RecipeError> {
        let resp = self
            .kv
            .range(under_prefix(prefix, SortOrder::Ascend))
            .await?;
        let kv = resp.kvs.into_iter().next().ok_or(RecipeError::NoLeader)?;
        Ok(epb::LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }
}

/// Sends each leader of the election and each new value of a leader, in order, until the
/// observer goes away or the store fails (etcd's `Election.observe`). Errors end the stream
/// quietly, as etcd's does.
async fn observe<C: ServerCore>(
    kv: RecipeKv<C>,
    prefix: Vec<u8>,
    out: mpsc::Sender<Result<epb::LeaderResponse, Status>>,
) {
    let send = |resp: epb::LeaderResponse| {
        let out = out.clone();
        async move { out.send(Ok(resp)).await.is_ok() }
    };
    loop {
        let Ok(resp) = kv.range(under_prefix(&prefix, SortOrder::Ascend)).await else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        let leader = match resp.kvs.into_iter().next() {
            Some(leader) => Some((header, leader)),
            None => first_put(&kv, &prefix, header.revision).await,
        };
        let Some((header, leader)) = leader else {
            return;
        };
        let watch_from = header.revision + 1;
        let leader_key = leader.key.clone();
        if !send(epb::LeaderResponse {
            header: Some(header),
            kv: Some(leader),
        })
        .await
        {
            return;
        }
        // Each new value of the leader's key, until it is deleted.
        let mut watch = kv.core.store().watch_stream();
        if watch
            .watch(&mvcc::WatchRequest {
                key: leader_key,
                start_revision: watch_from,
                ..Default::default()
            })
            .is_err()
        {
            return;
        }
        'leader: loop {
            let Some(resp) = watch.recv().await else {
                return;
            };
            if resp.compact_revision != 0 {
                return;
            }
            for ev in resp.events {
                if ev.r#type == mvcc::EventType::Delete as i32 {
                    break 'leader;
                }
                let update = epb::LeaderResponse {
                    header: Some(kv.header(resp.revision)),
                    kv: ev.kv.map(crate::convert::key_value),
                };
                if !send(update).await {
                    return;
                }
            }
        }
    }
}

/// The first key put under `prefix` after `revision`, with a header at its revision; `None`
/// when the watch fails.
async fn first_put<C: ServerCore>(
    kv: &RecipeKv<C>,
    prefix: &[u8],
    revision: i64,
) -> Option<(pb::ResponseHeader, api::mvccpb::KeyValue)> {
    let mut watch = kv.core.store().watch_stream();
    watch
        .watch(&mvcc::WatchRequest {
            key: prefix.to_vec(),
            range_end: mvcc::prefix_range_end(prefix),
            start_revision: revision,
            ..Default::default()
        })
        .ok()?;
    loop {
        let resp = watch.recv().await?;
        if resp.compact_revision != 0 {
            return None;
        }
        // Deletes are skipped: the election is still leaderless after one.
        let put = resp
            .events
            .into_iter()
            .find(|ev| ev.r#type == mvcc::EventType::Put as i32)
            .and_then(|ev| ev.kv);
        if let Some(put) = put {
            let header = kv.header(put.mod_revision);
            return Some((header, crate::convert::key_value(put)));
        }
    }
}

fn leader_key(leader: Option<epb::LeaderKey>) -> Result<epb::LeaderKey, Status> {
    leader.ok_or_else(|| recipe_status(RecipeError::MissingLeaderKey))
}

#[tonic::async_trait]
impl<C: ServerCore> Election for ElectionService<C> {
    type ObserveStream = LeaderStream;

    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let resp = ElectionService::campaign(self, request.into_inner())
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let r = request.into_inner();
        let leader = leader_key(r.leader)?;
        let header = self
            .proclaim(&leader.key, leader.rev, leader.lease, r.value)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(epb::ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let prefix = participants_prefix(&request.into_inner().name);
        let resp = ElectionService::leader(self, &prefix)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        self.kv.require_leader(request.metadata())?;
        let prefix = participants_prefix(&request.into_inner().name);
        let (out, responses) = mpsc::channel(OBSERVE_BUFFER);
        let kv = self.kv.clone();
        tokio::spawn(async move {
            let closed = out.clone();
            tokio::select! {
                _ = observe(kv, prefix, out) => {}
                // The observer went away while the task waited on the store.
                _ = closed.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let leader = leader_key(request.into_inner().leader)?;
        // Deletes only the key of this leadership: a newer campaign with the same lease is not
        // resigned by a stale key.
        let header = remove_participant(&self.kv, leader.key, Some(leader.rev))
            .await
            .map_err(|e: ServerError| recipe_status(e.into()))?;
        Ok(Response::new(epb::ResignResponse {
            header: Some(header),
        }))
    }
}
