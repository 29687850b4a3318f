//! The Lock gRPC service (etcd's `v3lock`): clientv3's mutex recipe run inside the member
//! against its own KV and watch. Lock puts `name/<lease in hex>` with the lease attached and
//! waits until no key under `name/` was created before it; Unlock deletes the key.
//!
//! etcd runs these services through an in-process client, so every failure reaches the caller
//! as code `Unknown` carrying the inner error's text; [`recipe_status`] reproduces that.
//!
//! A request naming lease 0 gets a new lease of [`SESSION_TTL`] seconds, as etcd's
//! `concurrency.NewSession` grants; etcd orphans that session at once, so nobody keeps the
//! lease alive and the lock or candidacy lapses after 60 s unless the caller renews the lease
//! named in the returned key.

use std::sync::Arc;

use api::etcdserverpb as pb;
use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::request_op::Request as Op;
use api::etcdserverpb::response_op::Response as OpResponse;
use api::mvccpb;
use api::v3lockpb as lockpb;
use api::v3lockpb::lock_server::{Lock, LockServer};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::{Applied, ServerCore};
use crate::error::ServerError;
use crate::v3rpc::kv::{self, requires_leader, GRPC_OVERHEAD_BYTES};
use crate::v3rpc::permission::{check_read, identity, require_user, stamp};

/// The TTL of the lease granted for a request with lease 0 (clientv3's `defaultSessionTTL`).
pub const SESSION_TTL: i64 = 60;

/// Why a recipe step failed; the texts are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The lock key vanished (its lease expired or someone deleted it) while waiting.
    #[error("mutex: session is expired")]
    SessionExpired,
    #[error("election: not leader")]
    NotLeader,
    #[error("election: no leader")]
    NoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
}

/// etcd's answer for a failed recipe: code `Unknown` with the error's text (its in-process
/// client turns server statuses into plain errors, which gRPC then reports as `Unknown`). A
/// server error keeps the message its own status has (`etcdserver: permission denied`).
pub fn recipe_status(e: RecipeError) -> Status {
    match e {
        RecipeError::Server(e) => Status::unknown(Status::from(e).message()),
        other => Status::unknown(other.to_string()),
    }
}

/// `name/<lease>` with the lease printed as Go's `%x` prints a signed id.
pub fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    key.extend_from_slice(hex.as_bytes());
    key
}

/// `name` + `/`: the prefix every participant's key is under.
pub fn participants_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The KV calls a recipe makes, as etcd's in-process client makes them: writes through raft,
/// linearizable reads, waits on the member's own watch hub; all as the caller (etcd's client
/// carries the caller's token), so each is checked as the caller's own request would be.
pub(crate) struct RecipeKv<C: ServerCore> {
    pub core: Arc<C>,
    /// Who the recipe acts for.
    pub who: auth::AuthInfo,
}

impl<C: ServerCore> Clone for RecipeKv<C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            who: self.who.clone(),
        }
    }
}

impl<C: ServerCore> RecipeKv<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self {
            core,
            who: auth::AuthInfo::default(),
        }
    }

    /// The recipe's calls on behalf of whoever sent `request`.
    pub async fn for_caller<T>(&self, request: &Request<T>) -> Result<Self, Status> {
        Ok(Self {
            core: self.core.clone(),
            who: identity(&*self.core, request).await?,
        })
    }

    /// etcd's watch check (`isWatchPermitted`) for a wait on `key`.
    fn check_watch(&self, key: &[u8]) -> Result<(), ServerError> {
        // Nothing is read under the check: there is no revision to compare afterwards.
        let _ = check_read(self.core.auth_store(), &self.who, None, |p| {
            p.auth.is_range_permitted(&self.who, key, &[])
        })?;
        Ok(())
    }

    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        let mut header = self.core.header();
        header.revision = revision;
        header
    }

    fn with_header(&self, header: &Option<pb::ResponseHeader>) -> Option<pb::ResponseHeader> {
        Some(self.header(header.as_ref().map_or(0, |h| h.revision)))
    }

    /// `lease`, or for 0 a new lease of [`SESSION_TTL`] seconds.
    pub async fn session_lease(&self, lease: i64) -> Result<i64, ServerError> {
        match lease {
            0 => {
                // A LeaseGrant: any authenticated user (etcd 3.5.28).
                require_user(self.core.auth_store(), &self.who)?;
                self.core.grant_session_lease(SESSION_TTL).await
            }
            id => Ok(id),
        }
    }

    /// Refuses as etcd's interceptor does when the client asked for a leader and none is known.
    pub fn require_leader(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        if requires_leader(metadata) && self.core.leader_id().is_none() {
            return Err(ServerError::NoLeader.into());
        }
        Ok(())
    }

    pub async fn txn(&self, txn: pb::TxnRequest) -> Result<pb::TxnResponse, ServerError> {
        kv::check_txn(&txn, self.core.limits().max_txn_ops)?;
        let mut req = pb::InternalRaftRequest {
            txn: Some(txn),
            ..Default::default()
        };
        stamp(&mut req, self.who.clone());
        kv::check_request_size(&req, self.core.limits().max_request_bytes)?;
        match self.core.propose(req).await? {
            Applied::Txn(mut resp) => {
                resp.header = self.with_header(&resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete(&self, key: Vec<u8>) -> Result<pb::DeleteRangeResponse, ServerError> {
        let delete = pb::DeleteRangeRequest {
            key,
            ..Default::default()
        };
        kv::check_delete(&delete)?;
        let mut req = pb::InternalRaftRequest {
            delete_range: Some(delete),
            ..Default::default()
        };
        stamp(&mut req, self.who.clone());
        kv::check_request_size(&req, self.core.limits().max_request_bytes)?;
        match self.core.propose(req).await? {
            Applied::DeleteRange(mut resp) => {
                resp.header = self.with_header(&resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    /// A linearizable range.
    pub async fn range(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, ServerError> {
        kv::check_range(&r)?;
        self.core.read_barrier().await?;
        let read = check_read(self.core.auth_store(), &self.who, None, |p| p.range(&r))?;
        let resp = self.core.store().range(&convert::range_request(r))?;
        read.finish()?;
        let mut resp = convert::range_response(resp);
        resp.header = self.with_header(&resp.header);
        Ok(resp)
    }

    /// Returns once `key` is deleted at or after `revision` (etcd's `waitDelete`).
    pub async fn wait_delete(&self, key: &[u8], revision: i64) -> Result<(), ServerError> {
        self.check_watch(key)?;
        let mut watch = self.core.store().watch_stream();
        watch
            .watch(&mvcc::WatchRequest {
                key: key.to_vec(),
                start_revision: revision,
                ..Default::default()
            })
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        loop {
            let Some(resp) = watch.recv().await else {
                return Err(ServerError::Internal(
                    "lost watcher waiting for delete".into(),
                ));
            };
            if resp.compact_revision != 0 {
                return Err(ServerError::Compacted);
            }
            if resp
                .events
                .iter()
                .any(|ev| ev.r#type == mvcc::EventType::Delete as i32)
            {
                return Ok(());
            }
        }
    }

    /// Returns once no key under `prefix` created at or before `max_create_revision` is left
    /// (etcd's `waitDeletes`): waits for the newest of them to go, then looks again.
    pub async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<pb::ResponseHeader, ServerError> {
        loop {
            let mut newest = under_prefix(prefix, SortOrder::Descend);
            newest.max_create_revision = max_create_revision;
            let resp = self.range(newest).await?;
            let header = resp.header.unwrap_or_default();
            let Some(kv) = resp.kvs.into_iter().next() else {
                return Ok(header);
            };
            self.wait_delete(&kv.key, header.revision).await?;
        }
    }
}

/// A txn whose compare found the key but whose get in the same revision did not.
pub(crate) fn txn_disagrees() -> ServerError {
    ServerError::Internal("a txn's compare and its get disagree".into())
}

fn unexpected(applied: Applied) -> ServerError {
    tracing::error!(?applied, "apply answered with the wrong kind of response");
    ServerError::Internal("apply answered with the wrong kind of response".into())
}

/// The oldest (`Ascend`) or newest (`Descend`) key by creation under `prefix`.
pub(crate) fn under_prefix(prefix: &[u8], order: SortOrder) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: mvcc::prefix_range_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

pub(crate) fn create_revision_is(key: &[u8], revision: i64) -> pb::Compare {
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

pub(crate) fn op(request: Op) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request),
    }
}

pub(crate) fn get(key: &[u8]) -> Op {
    Op::RequestRange(pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })
}

pub(crate) fn put(key: &[u8], value: Vec<u8>, lease: i64) -> Op {
    Op::RequestPut(pb::PutRequest {
        key: key.to_vec(),
        value,
        lease,
        ..Default::default()
    })
}

/// The key-values of the `index`th response of a txn, if it is a range.
pub(crate) fn range_kvs(resp: &pb::TxnResponse, index: usize) -> &[mvccpb::KeyValue] {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// Deletes a participant's key if the call that created it goes away (the client cancelled)
/// before it returns, as etcd's recipes clean up on a cancelled context.
pub(crate) struct CleanupOnCancel<C: ServerCore> {
    kv: RecipeKv<C>,
    key: Vec<u8>,
    /// Delete only if the key still has this creation revision; `None`: delete regardless.
    created: Option<i64>,
    armed: bool,
}

impl<C: ServerCore> CleanupOnCancel<C> {
    pub fn new(kv: &RecipeKv<C>, key: &[u8], created: Option<i64>) -> Self {
        Self {
            kv: kv.clone(),
            key: key.to_vec(),
            created,
            armed: true,
        }
    }

    pub fn disarm(mut self) {
        self.armed = false;
    }
}

pub(crate) async fn remove_participant<C: ServerCore>(
    kv: &RecipeKv<C>,
    key: Vec<u8>,
    created: Option<i64>,
) -> Result<pb::ResponseHeader, ServerError> {
    match created {
        None => Ok(kv.delete(key).await?.header.unwrap_or_default()),
        Some(rev) => {
            let txn = pb::TxnRequest {
                compare: vec![create_revision_is(&key, rev)],
                success: vec![op(Op::RequestDeleteRange(pb::DeleteRangeRequest {
                    key,
                    ..Default::default()
                }))],
                failure: Vec::new(),
            };
            Ok(kv.txn(txn).await?.header.unwrap_or_default())
        }
    }
}

impl<C: ServerCore> Drop for CleanupOnCancel<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kv = self.kv.clone();
        let key = std::mem::take(&mut self.key);
        let created = self.created;
        runtime.spawn(async move {
            if let Err(e) = remove_participant(&kv, key, created).await {
                tracing::warn!(error = %e, "cannot remove the key of a cancelled lock or campaign");
            }
        });
    }
}

pub struct LockService<C: ServerCore> {
    kv: RecipeKv<C>,
}

impl<C: ServerCore> LockService<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self {
            kv: RecipeKv::new(core),
        }
    }

    pub fn into_server(self) -> LockServer<Self> {
        let limit = self
            .kv
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        LockServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    /// clientv3's `Mutex.Lock` for the session of `lease`.
    async fn lock(
        kv: &RecipeKv<C>,
        name: &[u8],
        lease: i64,
    ) -> Result<lockpb::LockResponse, RecipeError> {
        let lease = kv.session_lease(lease).await?;
        let prefix = participants_prefix(name);
        let key = session_key(&prefix, lease);
        let oldest = Op::RequestRange(under_prefix(&prefix, SortOrder::Ascend));
        // Reuse the key if this lease already waits for or holds the lock.
        let acquire = pb::TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op(put(&key, Vec::new(), lease)), op(oldest.clone())],
            failure: vec![op(get(&key)), op(oldest)],
        };
        let resp = kv.txn(acquire).await?;
        let header = resp.header.unwrap_or_default();
        let my_revision = if resp.succeeded {
            header.revision
        } else {
            match range_kvs(&resp, 0).first() {
                Some(kv) => kv.create_revision,
                None => return Err(txn_disagrees().into()),
            }
        };
        let holder = range_kvs(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none() || holder == Some(my_revision) {
            return Ok(lockpb::LockResponse {
                header: Some(header),
                key,
            });
        }

        let cleanup = CleanupOnCancel::new(kv, &key, None);
        let waited = kv.wait_deletes(&prefix, my_revision - 1).await;
        let mine = match waited {
            Ok(_) => kv.range(pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            }),
            Err(e) => {
                cleanup.disarm();
                let _ = remove_participant(kv, key, None).await;
                return Err(e.into());
            }
        }
        .await;
        cleanup.disarm();
        match mine {
            Ok(resp) if resp.kvs.is_empty() => Err(RecipeError::SessionExpired),
            Ok(resp) => Ok(lockpb::LockResponse {
                header: resp.header,
                key,
            }),
            Err(e) => {
                let _ = remove_participant(kv, key, None).await;
                Err(e.into())
            }
        }
    }
}

#[tonic::async_trait]
impl<C: ServerCore> Lock for LockService<C> {
    async fn lock(
        &self,
        request: Request<lockpb::LockRequest>,
    ) -> Result<Response<lockpb::LockResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let r = request.into_inner();
        let resp = LockService::lock(&kv, &r.name, r.lease)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn unlock(
        &self,
        request: Request<lockpb::UnlockRequest>,
    ) -> Result<Response<lockpb::UnlockResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let r = request.into_inner();
        let resp = kv
            .delete(r.key)
            .await
            .map_err(|e| recipe_status(e.into()))?;
        Ok(Response::new(lockpb::UnlockResponse {
            header: resp.header,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests;
