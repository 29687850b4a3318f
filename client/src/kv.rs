//! KV: Range, Put, DeleteRange, Txn, Compact, and the key-range conventions etcd uses.

use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::{
    request_op, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};

use crate::client::{Client, Retry};
use crate::error::Result;

pub use pkg::keys::prefix_range_end;

/// The `range_end` that selects every key `>= key` (etcdctl's `--from-key`).
pub const FROM_KEY_RANGE_END: &[u8] = &[0];

impl Client {
    unary_rpc!(range: KvClient::range(RangeRequest) -> RangeResponse, Retry::Safe);
    unary_rpc!(put: KvClient::put(PutRequest) -> PutResponse, Retry::Unsafe);
    unary_rpc!(delete_range: KvClient::delete_range(DeleteRangeRequest) -> DeleteRangeResponse, Retry::Unsafe);
    unary_rpc!(compact: KvClient::compact(CompactionRequest) -> CompactionResponse, Retry::Safe);

    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        let retry = if txn_is_read_only(&request) {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        self.call(retry, request, |channel, request| async move {
            rpc_client!(KvClient, channel, self).txn(request).await
        })
        .await
    }

    /// The value of one key at the latest revision, if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<api::mvccpb::KeyValue>> {
        let response = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Puts one key with no lease and no options.
    pub async fn put_kv(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse> {
        self.put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }
}

fn txn_is_read_only(request: &TxnRequest) -> bool {
    fn op_is_read_only(op: &RequestOp) -> bool {
        match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(txn)) => txn_is_read_only(txn),
            Some(_) => false,
        }
    }
    request
        .success
        .iter()
        .chain(&request.failure)
        .all(op_is_read_only)
}

/// Builders for the parts of a Txn, so callers read like etcd's `clientv3.Compare(...)`.
pub mod txn {
    use super::*;
    use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};

    fn compare(
        key: Vec<u8>,
        result: CompareResult,
        target: CompareTarget,
        value: TargetUnion,
    ) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key,
            target_union: Some(value),
            range_end: Vec::new(),
        }
    }

    pub fn version(key: impl Into<Vec<u8>>, result: CompareResult, version: i64) -> Compare {
        compare(
            key.into(),
            result,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }

    pub fn create_revision(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        revision: i64,
    ) -> Compare {
        compare(
            key.into(),
            result,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }

    pub fn mod_revision(key: impl Into<Vec<u8>>, result: CompareResult, revision: i64) -> Compare {
        compare(
            key.into(),
            result,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }

    pub fn value(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        value: impl Into<Vec<u8>>,
    ) -> Compare {
        compare(
            key.into(),
            result,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }

    pub fn lease(key: impl Into<Vec<u8>>, result: CompareResult, lease: i64) -> Compare {
        compare(
            key.into(),
            result,
            CompareTarget::Lease,
            TargetUnion::Lease(lease),
        )
    }

    pub fn range(request: RangeRequest) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(request)),
        }
    }

    pub fn put(request: PutRequest) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(request)),
        }
    }

    pub fn delete(request: DeleteRangeRequest) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(request)),
        }
    }

    pub fn nested(request: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(request)),
        }
    }

    /// Re-exported so callers need not name the generated module path.
    pub use api::etcdserverpb::compare::CompareResult as Cmp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_range_end(b"foo"), b"fop".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    #[test]
    fn read_only_txns_are_detected_through_nesting() {
        let read = TxnRequest {
            success: vec![txn::range(RangeRequest::default())],
            failure: vec![txn::nested(TxnRequest {
                success: vec![txn::range(RangeRequest::default())],
                ..Default::default()
            })],
            ..Default::default()
        };
        assert!(txn_is_read_only(&read));
        let write = TxnRequest {
            failure: vec![txn::nested(TxnRequest {
                success: vec![txn::put(PutRequest::default())],
                ..Default::default()
            })],
            ..Default::default()
        };
        assert!(!txn_is_read_only(&write));
    }
}
