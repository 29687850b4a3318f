//! The KV gRPC service (etcd's `v3rpc/key.go` plus the request paths of `v3_server.go`):
//! requests are checked as etcd checks them, writes go through raft, reads are served from the
//! local store (after a read barrier unless serializable).

use std::collections::HashSet;
use std::sync::Arc;

use api::etcdserverpb as pb;
use api::etcdserverpb::kv_server::{Kv, KvServer};
use api::etcdserverpb::request_op::Request;
use prost::Message;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::convert;
use crate::core::{Applied, ServerCore};
use crate::error::ServerError;
use crate::server::quota;
use crate::v3rpc::permission::{self, check_read, identity, stamp};

/// What gRPC accepts on top of `--max-request-bytes` (etcd's `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub struct KvService<C: ServerCore> {
    core: Arc<C>,
}

impl<C: ServerCore> KvService<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self { core }
    }

    /// The tonic service, accepting messages up to `--max-request-bytes` plus gRPC's overhead
    /// as etcd's gRPC server does.
    pub fn into_server(self) -> KvServer<Self> {
        let limit = self
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        KvServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    /// etcd's `hasleader` metadata check for unary calls: a client that asks for a leader
    /// gets `etcdserver: no leader` from a member that knows none.
    fn require_leader<T>(&self, request: &GrpcRequest<T>) -> Result<(), ServerError> {
        if requires_leader(request.metadata()) && self.core.leader_id().is_none() {
            return Err(ServerError::NoLeader);
        }
        Ok(())
    }

    /// The member's header with the revision of the answer.
    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        let mut header = self.core.header();
        header.revision = revision;
        Some(header)
    }

    async fn propose(&self, req: pb::InternalRaftRequest) -> Result<Applied, ServerError> {
        check_request_size(&req, self.core.limits().max_request_bytes)?;
        self.core.propose(req).await
    }

    async fn read_barrier(&self, serializable: bool) -> Result<(), ServerError> {
        if serializable {
            Ok(())
        } else {
            self.core.read_barrier().await
        }
    }
}

/// Whether the client set etcd's `hasleader` metadata (clientv3's `WithRequireLeader`).
pub fn requires_leader(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get("hasleader")
        .is_some_and(|v| v.as_bytes() == b"true")
}

fn revision_of(header: &Option<pb::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

fn unexpected(applied: Applied) -> Status {
    tracing::error!(?applied, "apply answered with the wrong kind of response");
    ServerError::Internal("apply answered with the wrong kind of response".into()).into()
}

#[tonic::async_trait]
impl<C: ServerCore> Kv for KvService<C> {
    async fn range(
        &self,
        request: GrpcRequest<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.require_leader(&request)?;
        // The request is checked before its token, as etcd does.
        check_range(request.get_ref())?;
        let info = identity(&*self.core, &request).await?;
        let r = request.into_inner();
        self.read_barrier(r.serializable).await?;
        let read = check_read(self.core.auth_store(), &info, None, |p| p.range(&r))?;
        let resp = self
            .core
            .store()
            .range(&convert::range_request(r))
            .map_err(ServerError::from)?;
        read.finish()?;
        let mut resp = convert::range_response(resp);
        resp.header = self.header(revision_of(&resp.header));
        Ok(Response::new(resp))
    }

    async fn put(
        &self,
        request: GrpcRequest<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.require_leader(&request)?;
        // etcd's `quotaKVServer` checks before anything else.
        self.core
            .check_quota(quota::put_cost(request.get_ref()))
            .await?;
        check_put(request.get_ref())?;
        let info = identity(&*self.core, &request).await?;
        let r = request.into_inner();
        let mut req = pb::InternalRaftRequest {
            put: Some(r),
            ..Default::default()
        };
        stamp(&mut req, info);
        match self.propose(req).await? {
            Applied::Put(mut resp) => {
                resp.header = self.header(revision_of(&resp.header));
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: GrpcRequest<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.require_leader(&request)?;
        check_delete(request.get_ref())?;
        let info = identity(&*self.core, &request).await?;
        let r = request.into_inner();
        let mut req = pb::InternalRaftRequest {
            delete_range: Some(r),
            ..Default::default()
        };
        stamp(&mut req, info);
        match self.propose(req).await? {
            Applied::DeleteRange(mut resp) => {
                resp.header = self.header(revision_of(&resp.header));
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(
        &self,
        request: GrpcRequest<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        self.require_leader(&request)?;
        self.core
            .check_quota(quota::txn_cost(request.get_ref()))
            .await?;
        {
            let r = request.get_ref();
            check_txn(r, self.core.limits().max_txn_ops)?;
            // After the cheap checks, as etcd does, to bound the work on a bad request.
            check_intervals(&r.success)?;
            check_intervals(&r.failure)?;
        }
        let info = identity(&*self.core, &request).await?;
        let r = request.into_inner();
        let mut resp = if is_txn_readonly(&r) {
            self.read_barrier(is_txn_serializable(&r)).await?;
            let read = check_read(self.core.auth_store(), &info, None, |p| p.txn(&r))?;
            let txn = convert::txn_request(r).map_err(ServerError::from)?;
            // Read-only: nothing attaches a lease.
            let resp = self.core.store().read_txn(txn).map_err(ServerError::from)?;
            read.finish()?;
            convert::txn_response(resp)
        } else {
            let mut req = pb::InternalRaftRequest {
                txn: Some(r),
                ..Default::default()
            };
            stamp(&mut req, info);
            match self.propose(req).await? {
                Applied::Txn(resp) => resp,
                other => return Err(unexpected(other)),
            }
        };
        resp.header = self.header(revision_of(&resp.header));
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: GrpcRequest<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.require_leader(&request)?;
        let info = identity(&*self.core, &request).await?;
        // Admin only since etcd 3.5.28 (3.4.23 lets anyone compact).
        permission::require_admin(self.core.auth_store(), &info)?;
        let r = request.into_inner();
        let physical = r.physical;
        let mut req = pb::InternalRaftRequest {
            compaction: Some(r),
            ..Default::default()
        };
        stamp(&mut req, info);
        match self.propose(req).await? {
            Applied::Compaction { mut response, done } => {
                if physical {
                    if let Some(done) = done {
                        // A failed removal is logged where it failed; the compaction itself
                        // (the index) is in effect either way.
                        if done.await.is_ok() {
                            // As etcd: the finished removal is made durable before answering,
                            // so a crash does not resume (and re-hash) it.
                            self.core.store().commit().map_err(ServerError::from)?;
                        }
                    }
                }
                // etcd answers with the revision current when it replies.
                response.header = self.header(self.core.store().current_revision());
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }
}

/// etcd refuses a proposal whose encoding exceeds `--max-request-bytes`. The request id the
/// core adds is counted at its widest.
pub fn check_request_size(
    req: &pb::InternalRaftRequest,
    max_request_bytes: usize,
) -> Result<(), ServerError> {
    const HEADER_TAG: u32 = 100;
    let own_header = req
        .header
        .as_ref()
        .map_or(0, |h| prost::encoding::message::encoded_len(HEADER_TAG, h));
    let widest_header = pb::RequestHeader {
        id: u64::MAX,
        ..req.header.clone().unwrap_or_default()
    };
    let size = req.encoded_len() - own_header
        + prost::encoding::message::encoded_len(HEADER_TAG, &widest_header);
    if size > max_request_bytes {
        return Err(ServerError::RequestTooLarge);
    }
    Ok(())
}

pub fn check_range(r: &pb::RangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &pb::PutRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(ServerError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(ServerError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &pb::DeleteRangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest`: each of compare/success/failure within `max_txn_ops`, and a
/// nested txn within what its parent left over.
pub fn check_txn(r: &pb::TxnRequest, max_txn_ops: usize) -> Result<(), ServerError> {
    check_txn_within(r, max_txn_ops as i64)
}

fn check_txn_within(r: &pb::TxnRequest, max_txn_ops: i64) -> Result<(), ServerError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(ServerError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(ServerError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r)?,
            Some(Request::RequestPut(r)) => check_put(r)?,
            Some(Request::RequestDeleteRange(r)) => check_delete(r)?,
            Some(Request::RequestTxn(t)) => check_txn_within(t, max_txn_ops - opc)?,
            None => return Err(ServerError::KeyNotFound),
        }
    }
    Ok(())
}

/// A key interval as etcd's `adt` builds them for this check: `[begin, end)`, where a delete
/// of one key is `[key, key\0)`. etcd does not read `"\0"` as "to the end" here, so a
/// from-key delete covers no key (and conflicts with no put), as in etcd.
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    fn of_delete(d: &pb::DeleteRangeRequest) -> Self {
        let end = if d.range_end.is_empty() {
            let mut end = d.key.clone();
            end.push(0);
            end
        } else {
            d.range_end.clone()
        };
        Self {
            begin: d.key.clone(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && key < self.end.as_slice()
    }
}

fn deleted(dels: &[Interval], key: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(key))
}

/// etcd's `checkIntervals`: within one branch no key may be put twice or be both put and
/// deleted, nested txns included (the two branches of a nested txn exclude each other).
pub fn check_intervals(ops: &[pb::RequestOp]) -> Result<(), ServerError> {
    intervals(ops).map(|_| ())
}

fn intervals(ops: &[pb::RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), ServerError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Interval::of_delete(d)),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(ServerError::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in puts_else {
            let clashes = puts.contains(&k) && !puts_then.contains(&k);
            if clashes || deleted(&dels, &k) {
                return Err(ServerError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(ServerError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// etcd's `isTxnReadonly`: only ranges in either branch (a nested txn counts as a write).
pub fn is_txn_readonly(r: &pb::TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// etcd's `isTxnSerializable`: only serializable ranges in either branch.
pub fn is_txn_serializable(r: &pb::TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(&op.request, Some(Request::RequestRange(r)) if r.serializable))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod grpc_tests;
