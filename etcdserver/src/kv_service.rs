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
        let r = request.into_inner();
        check_range(&r)?;
        self.read_barrier(r.serializable).await?;
        let resp = self
            .core
            .store()
            .range(&convert::range_request(&r))
            .map_err(ServerError::from)?;
        let mut resp = convert::range_response(resp);
        resp.header = self.header(revision_of(&resp.header));
        Ok(Response::new(resp))
    }

    async fn put(
        &self,
        request: GrpcRequest<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.require_leader(&request)?;
        let r = request.into_inner();
        check_put(&r)?;
        let req = pb::InternalRaftRequest {
            put: Some(r),
            ..Default::default()
        };
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
        let r = request.into_inner();
        check_delete(&r)?;
        let req = pb::InternalRaftRequest {
            delete_range: Some(r),
            ..Default::default()
        };
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
        let r = request.into_inner();
        check_txn(&r, self.core.limits().max_txn_ops)?;
        // After the cheap checks, as etcd does, to bound the work on a bad request.
        check_intervals(&r.success)?;
        check_intervals(&r.failure)?;
        let mut resp = if is_txn_readonly(&r) {
            self.read_barrier(is_txn_serializable(&r)).await?;
            let txn = convert::txn_request(&r)?;
            // Read-only: nothing attaches a lease.
            let resp = self
                .core
                .store()
                .read_txn(&txn)
                .map_err(ServerError::from)?;
            convert::txn_response(resp)
        } else {
            let req = pb::InternalRaftRequest {
                txn: Some(r),
                ..Default::default()
            };
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
        let r = request.into_inner();
        let physical = r.physical;
        let req = pb::InternalRaftRequest {
            compaction: Some(r),
            ..Default::default()
        };
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
mod tests {
    use super::*;

    fn put(key: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                prev_kv: false,
            })),
        }
    }

    fn nested(success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestTxn(pb::TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    #[test]
    fn duplicate_keys_as_etcds_check_intervals() {
        let dup = Err(ServerError::DuplicateKey);
        assert_eq!(check_intervals(&[put("a"), put("b")]), Ok(()));
        assert_eq!(check_intervals(&[put("a"), put("a")]), dup);
        assert_eq!(check_intervals(&[put("b"), del("a", "c")]), dup);
        assert_eq!(check_intervals(&[put("c"), del("a", "c")]), Ok(()));
        assert_eq!(check_intervals(&[put("a"), del("a", "")]), dup);
        assert_eq!(check_intervals(&[put("ab"), del("a", "")]), Ok(()));
        // "\0" is not "to the end" in etcd's interval check.
        assert_eq!(check_intervals(&[put("b"), del("a", "\0")]), Ok(()));
        // Nested: a put below clashes with a put or delete above...
        assert_eq!(
            check_intervals(&[put("a"), nested(vec![put("a")], vec![])]),
            dup
        );
        assert_eq!(
            check_intervals(&[del("a", "z"), nested(vec![], vec![put("k")])]),
            dup
        );
        // ... and a delete below with a put above.
        assert_eq!(
            check_intervals(&[put("k"), nested(vec![del("k", "")], vec![])]),
            dup
        );
        // The two branches of one nested txn exclude each other.
        assert_eq!(
            check_intervals(&[nested(vec![put("a")], vec![put("a")])]),
            Ok(())
        );
        // Two nested txns both writing a key do not.
        assert_eq!(
            check_intervals(&[
                nested(vec![put("a")], vec![]),
                nested(vec![], vec![put("a")])
            ]),
            dup
        );
    }

    #[test]
    fn txn_op_limits_as_etcds_check_txn_request() {
        let txn = |n: usize| pb::TxnRequest {
            compare: vec![],
            success: (0..n).map(|i| put(&format!("k{i}"))).collect(),
            failure: vec![],
        };
        assert_eq!(check_txn(&txn(3), 3), Ok(()));
        assert_eq!(check_txn(&txn(4), 3), Err(ServerError::TooManyOps));
        // A nested txn gets what its parent's widest list left over.
        let parent = pb::TxnRequest {
            success: vec![put("a"), nested(vec![put("b"), put("c")], vec![])],
            ..Default::default()
        };
        assert_eq!(check_txn(&parent, 4), Ok(()));
        assert_eq!(check_txn(&parent, 3), Err(ServerError::TooManyOps));
        let empty_op = pb::TxnRequest {
            failure: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(check_txn(&empty_op, 8), Err(ServerError::KeyNotFound));
    }

    #[test]
    fn readonly_txn_is_ranges_only() {
        let range = |serializable| pb::RequestOp {
            request: Some(Request::RequestRange(pb::RangeRequest {
                key: b"k".to_vec(),
                serializable,
                ..Default::default()
            })),
        };
        let t = pb::TxnRequest {
            success: vec![range(true)],
            failure: vec![range(false)],
            ..Default::default()
        };
        assert!(is_txn_readonly(&t) && !is_txn_serializable(&t));
        let t = pb::TxnRequest {
            success: vec![range(true)],
            ..Default::default()
        };
        assert!(is_txn_readonly(&t) && is_txn_serializable(&t));
        let t = pb::TxnRequest {
            success: vec![nested(vec![range(true)], vec![])],
            ..Default::default()
        };
        assert!(!is_txn_readonly(&t));
    }
}

#[cfg(test)]
mod grpc_tests {
    use std::time::Duration;

    use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use api::etcdserverpb::kv_client::KvClient;
    use api::etcdserverpb::range_request::{SortOrder, SortTarget};
    use api::etcdserverpb::response_op::Response as Resp;
    use tonic::transport::Channel;
    use tonic::Code;

    use super::*;
    use crate::core::Limits;
    use crate::testing::{DirectCore, TestServer, CLUSTER_ID, MEMBER_ID, TERM};

    struct Fixture {
        core: Arc<DirectCore>,
        kv: KvClient<Channel>,
        _server: TestServer,
    }

    async fn start(limits: Limits) -> Fixture {
        let core = DirectCore::new(limits).unwrap();
        let server = TestServer::start(core.clone(), Duration::from_secs(600))
            .await
            .unwrap();
        let kv = KvClient::connect(server.endpoint()).await.unwrap();
        Fixture {
            core,
            kv,
            _server: server,
        }
    }

    fn range(key: &str) -> pb::RangeRequest {
        pb::RangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    fn put_req(key: &str, value: &str) -> pb::PutRequest {
        pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    fn op_put(key: &str, value: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestPut(put_req(key, value))),
        }
    }

    fn op_range(key: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestRange(range(key))),
        }
    }

    fn op_delete(key: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn value_is(key: &str, value: &str) -> pb::Compare {
        pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.into(),
            range_end: vec![],
            target_union: Some(TargetUnion::Value(value.into())),
        }
    }

    fn status_of<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
        let s = r.unwrap_err();
        (s.code(), s.message().to_string())
    }

    fn invalid(message: &str) -> (Code, String) {
        (Code::InvalidArgument, message.to_string())
    }

    fn assert_member_header(h: &Option<pb::ResponseHeader>, revision: i64) {
        assert_eq!(
            h.unwrap(),
            pb::ResponseHeader {
                cluster_id: CLUSTER_ID,
                member_id: MEMBER_ID,
                revision,
                raft_term: TERM,
            }
        );
    }

    #[tokio::test]
    async fn bad_requests_get_etcds_codes_and_messages() {
        let limits = Limits {
            max_request_bytes: 4096,
            max_txn_ops: 4,
        };
        let Fixture {
            core,
            mut kv,
            _server,
        } = start(limits).await;
        let empty_key = invalid("etcdserver: key is not provided");
        assert_eq!(status_of(kv.range(range("")).await), empty_key);
        assert_eq!(status_of(kv.put(put_req("", "v")).await), empty_key);
        let del = pb::DeleteRangeRequest::default();
        assert_eq!(status_of(kv.delete_range(del).await), empty_key);
        let txn_compare_empty = pb::TxnRequest {
            compare: vec![value_is("", "v")],
            ..Default::default()
        };
        assert_eq!(status_of(kv.txn(txn_compare_empty).await), empty_key);
        let txn_op_empty = pb::TxnRequest {
            failure: vec![op_put("", "v")],
            ..Default::default()
        };
        assert_eq!(status_of(kv.txn(txn_op_empty).await), empty_key);

        let mut ignore_value = put_req("k", "v");
        ignore_value.ignore_value = true;
        assert_eq!(
            status_of(kv.put(ignore_value).await),
            invalid("etcdserver: value is provided")
        );
        let mut ignore_lease = put_req("k", "v");
        ignore_lease.ignore_lease = true;
        ignore_lease.lease = 5;
        assert_eq!(
            status_of(kv.put(ignore_lease).await),
            invalid("etcdserver: lease is provided")
        );
        let too_many = pb::TxnRequest {
            success: (0..5).map(|i| op_put(&format!("k{i}"), "v")).collect(),
            ..Default::default()
        };
        assert_eq!(
            status_of(kv.txn(too_many).await),
            invalid("etcdserver: too many operations in txn request")
        );
        let duplicate = pb::TxnRequest {
            success: vec![op_put("a", "1"), op_put("a", "2")],
            ..Default::default()
        };
        assert_eq!(
            status_of(kv.txn(duplicate).await),
            invalid("etcdserver: duplicate key given in txn request")
        );
        let empty_op = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(
            status_of(kv.txn(empty_op).await),
            invalid("etcdserver: key not found")
        );
        let big = "x".repeat(4096);
        assert_eq!(
            status_of(kv.put(put_req("k", &big)).await),
            invalid("etcdserver: request is too large")
        );
        // Just below the limit passes (the widest request id counted).
        let fits = "x".repeat(4096 - 30);
        kv.put(put_req("k", &fits)).await.unwrap();

        // Refused while applying.
        let mut missing = put_req("nope", "");
        missing.ignore_value = true;
        assert_eq!(
            status_of(kv.put(missing).await),
            invalid("etcdserver: key not found")
        );
        let mut leased = put_req("k", "v");
        leased.lease = 0x1234;
        assert_eq!(
            status_of(kv.put(leased).await),
            (
                Code::NotFound,
                "etcdserver: requested lease not found".to_string()
            )
        );
        // Only the one good put changed anything.
        assert_eq!(core.store().current_revision(), 2);
    }

    #[tokio::test]
    async fn range_options_reach_the_store() {
        let Fixture {
            mut kv, _server, ..
        } = start(Limits::default()).await;
        // a=3 (rev 2), b=1 (rev 3), c=2 (rev 4), then a=0 (rev 5), d=9 (rev 6)
        for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("a", "0"), ("d", "9")] {
            kv.put(put_req(k, v)).await.unwrap();
        }
        let all = || pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"e".to_vec(),
            ..Default::default()
        };
        let keys = |r: &pb::RangeResponse| {
            r.kvs
                .iter()
                .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        };
        let r = kv.range(all()).await.unwrap().into_inner();
        assert_eq!((keys(&r), r.count, r.more), ("a,b,c,d".into(), 4, false));
        assert_member_header(&r.header, 6);

        let limited = pb::RangeRequest { limit: 2, ..all() };
        let r = kv.range(limited).await.unwrap().into_inner();
        assert_eq!((keys(&r), r.count, r.more), ("a,b".into(), 4, true));

        let by_value = pb::RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            ..all()
        };
        let r = kv.range(by_value).await.unwrap().into_inner();
        assert_eq!(keys(&r), "d,c,b,a");

        let keys_only = pb::RangeRequest {
            keys_only: true,
            ..all()
        };
        let r = kv.range(keys_only).await.unwrap().into_inner();
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 4);

        let count_only = pb::RangeRequest {
            count_only: true,
            ..all()
        };
        let r = kv.range(count_only).await.unwrap().into_inner();
        assert_eq!((r.kvs.len(), r.count), (0, 4));

        let mod_window = pb::RangeRequest {
            min_mod_revision: 3,
            max_mod_revision: 5,
            ..all()
        };
        let r = kv.range(mod_window).await.unwrap().into_inner();
        assert_eq!((keys(&r), r.count), ("a,b,c".into(), 4));
        let created_late = pb::RangeRequest {
            min_create_revision: 4,
            ..all()
        };
        assert_eq!(
            keys(&kv.range(created_late).await.unwrap().into_inner()),
            "c,d"
        );
        let created_early = pb::RangeRequest {
            max_create_revision: 3,
            serializable: true,
            ..all()
        };
        assert_eq!(
            keys(&kv.range(created_early).await.unwrap().into_inner()),
            "a,b"
        );

        // The past as it was; the header still says now.
        let past = pb::RangeRequest {
            revision: 3,
            ..range("a")
        };
        let r = kv.range(past).await.unwrap().into_inner();
        assert_eq!(r.kvs[0].value, b"3");
        assert_member_header(&r.header, 6);
        let from_key = pb::RangeRequest {
            key: b"b".to_vec(),
            range_end: vec![0],
            ..Default::default()
        };
        assert_eq!(
            keys(&kv.range(from_key).await.unwrap().into_inner()),
            "b,c,d"
        );

        let future = pb::RangeRequest {
            revision: 7,
            ..range("a")
        };
        assert_eq!(
            status_of(kv.range(future).await),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision".into()
            )
        );
    }

    #[tokio::test]
    async fn put_and_delete_answer_as_etcd() {
        let Fixture {
            mut kv, _server, ..
        } = start(Limits::default()).await;
        let r = kv.put(put_req("k", "1")).await.unwrap().into_inner();
        assert_member_header(&r.header, 2);
        assert_eq!(r.prev_kv, None);
        let with_prev = pb::PutRequest {
            prev_kv: true,
            ..put_req("k", "2")
        };
        let r = kv.put(with_prev).await.unwrap().into_inner();
        let prev = r.prev_kv.unwrap();
        assert_eq!(
            (prev.value, prev.version, prev.mod_revision),
            (b"1".to_vec(), 1, 2)
        );
        let keep_value = pb::PutRequest {
            ignore_value: true,
            ..put_req("k", "")
        };
        kv.put(keep_value).await.unwrap();
        let got = kv.range(range("k")).await.unwrap().into_inner();
        assert_eq!(
            (got.kvs[0].value.clone(), got.kvs[0].version),
            (b"2".to_vec(), 3)
        );

        let del_nothing = pb::DeleteRangeRequest {
            key: b"x".to_vec(),
            ..Default::default()
        };
        let r = kv.delete_range(del_nothing).await.unwrap().into_inner();
        assert_eq!(r.deleted, 0);
        assert_member_header(&r.header, 4);
        let del = pb::DeleteRangeRequest {
            key: b"k".to_vec(),
            prev_kv: true,
            ..Default::default()
        };
        let r = kv.delete_range(del).await.unwrap().into_inner();
        assert_eq!((r.deleted, r.prev_kvs.len()), (1, 1));
        assert_member_header(&r.header, 5);
    }

    #[tokio::test]
    async fn txn_branches_nesting_and_readonly() {
        let Fixture {
            core,
            mut kv,
            _server,
        } = start(Limits::default()).await;
        kv.put(put_req("a", "1")).await.unwrap();

        let txn = pb::TxnRequest {
            compare: vec![value_is("a", "1")],
            success: vec![op_range("a"), op_put("b", "2"), op_range("b")],
            failure: vec![op_put("c", "3")],
        };
        let r = kv.txn(txn.clone()).await.unwrap().into_inner();
        assert!(r.succeeded);
        assert_member_header(&r.header, 3);
        let revisions: Vec<i64> = r
            .responses
            .iter()
            .map(|op| match &op.response {
                Some(Resp::ResponseRange(r)) => r.header.as_ref().unwrap().revision,
                Some(Resp::ResponsePut(r)) => r.header.as_ref().unwrap().revision,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // Each op carries the revision it saw, as etcd does.
        assert_eq!(revisions, [2, 3, 3]);

        let txn = pb::TxnRequest {
            compare: vec![value_is("a", "nope")],
            ..txn
        };
        let r = kv.txn(txn).await.unwrap().into_inner();
        assert!(!r.succeeded);
        assert_member_header(&r.header, 4);
        assert_eq!(
            kv.range(range("c")).await.unwrap().into_inner().kvs[0].value,
            b"3"
        );

        let nested = pb::TxnRequest {
            compare: vec![],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(pb::TxnRequest {
                    compare: vec![value_is("b", "2")],
                    success: vec![op_delete("c"), op_put("n", "1")],
                    failure: vec![],
                })),
            }],
            failure: vec![],
        };
        let r = kv.txn(nested).await.unwrap().into_inner();
        assert_member_header(&r.header, 5);
        let Some(Resp::ResponseTxn(inner)) = &r.responses[0].response else {
            panic!("nested txn response expected");
        };
        assert!(inner.succeeded);
        assert_eq!(inner.header, Some(pb::ResponseHeader::default()));
        assert_eq!(inner.responses.len(), 2);
        assert!(kv
            .range(range("c"))
            .await
            .unwrap()
            .into_inner()
            .kvs
            .is_empty());

        // Read-only: answered from the store, no new revision.
        let readonly = pb::TxnRequest {
            compare: vec![value_is("n", "1")],
            success: vec![op_range("n")],
            failure: vec![],
        };
        let r = kv.txn(readonly).await.unwrap().into_inner();
        assert!(r.succeeded);
        assert_member_header(&r.header, 5);
        assert_eq!(core.store().current_revision(), 5);
        assert_eq!(core.store().consistent_index().0, 4); // four proposals, no more
    }

    #[tokio::test]
    async fn only_linearizable_reads_wait_for_the_read_barrier() {
        let Fixture {
            core,
            mut kv,
            _server,
        } = start(Limits::default()).await;
        kv.put(put_req("k", "v")).await.unwrap();
        let serializable = pb::RangeRequest {
            serializable: true,
            ..range("k")
        };
        kv.range(serializable.clone()).await.unwrap();
        assert_eq!(core.read_barriers(), 0);
        kv.range(range("k")).await.unwrap();
        assert_eq!(core.read_barriers(), 1);
        let txn_of = |ops: Vec<pb::RangeRequest>| pb::TxnRequest {
            compare: vec![value_is("k", "v")],
            success: ops
                .into_iter()
                .map(|r| pb::RequestOp {
                    request: Some(Request::RequestRange(r)),
                })
                .collect(),
            failure: vec![],
        };
        kv.txn(txn_of(vec![serializable.clone()])).await.unwrap();
        assert_eq!(core.read_barriers(), 1);
        kv.txn(txn_of(vec![serializable, range("k")]))
            .await
            .unwrap();
        assert_eq!(core.read_barriers(), 2);
        // Writes are ordered by raft, not by a barrier.
        kv.txn(pb::TxnRequest {
            success: vec![op_put("k", "w")],
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(core.read_barriers(), 2);
    }

    #[tokio::test]
    async fn has_leader_metadata_needs_a_leader() {
        let Fixture {
            core,
            mut kv,
            _server,
        } = start(Limits::default()).await;
        let needy = |key: &str| {
            let mut request = GrpcRequest::new(range(key));
            request
                .metadata_mut()
                .insert("hasleader", "true".parse().unwrap());
            request
        };
        kv.range(needy("k")).await.unwrap();
        core.set_leader(false);
        assert_eq!(
            status_of(kv.range(needy("k")).await),
            (Code::Unavailable, "etcdserver: no leader".to_string())
        );
        kv.range(range("k")).await.unwrap();
    }

    #[tokio::test]
    async fn compaction_errors_and_physical_wait() {
        let Fixture {
            core,
            mut kv,
            _server,
        } = start(Limits::default()).await;
        for i in 0..250 {
            kv.put(put_req("k", &i.to_string())).await.unwrap();
        }
        // Revisions 2..=251; compact to 200 and wait for the rows to go.
        let compact = |revision, physical| pb::CompactionRequest { revision, physical };
        let r = kv.compact(compact(200, true)).await.unwrap().into_inner();
        assert_member_header(&r.header, 251);
        let mut rows = 0;
        core.store()
            .backend()
            .read()
            .scan(mvcc::KEY_TABLE, &[], None, |_, _| {
                rows += 1;
                true
            })
            .unwrap();
        // Revision 200 is still the value at 200; 201..=251 are newer.
        assert_eq!(rows, 52);

        let compacted = (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".to_string(),
        );
        let old = pb::RangeRequest {
            revision: 199,
            ..range("k")
        };
        assert_eq!(status_of(kv.range(old).await), compacted);
        let at = pb::RangeRequest {
            revision: 200,
            ..range("k")
        };
        assert_eq!(
            kv.range(at).await.unwrap().into_inner().kvs[0].value,
            b"198"
        );
        assert_eq!(status_of(kv.compact(compact(200, false)).await), compacted);
        assert_eq!(
            status_of(kv.compact(compact(300, false)).await),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision".into()
            )
        );
        kv.compact(compact(251, false)).await.unwrap();
        assert_eq!(core.store().compact_revision(), 251);
    }
}
