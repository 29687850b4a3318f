//! Wire messages (`etcdserverpb`, `mvccpb`) to and from the mvcc store's request types.
//!
//! Requests only go one way (wire to store) and responses the other. A malformed request (a
//! `RequestOp` with nothing set) is refused with etcd's answer for it rather than guessed at.

use api::etcdserverpb as pb;
use api::etcdserverpb::compare::{CompareResult as PbResult, CompareTarget as PbTarget};
use api::etcdserverpb::range_request::{SortOrder as PbSortOrder, SortTarget as PbSortTarget};
use api::etcdserverpb::{request_op, response_op};
use api::mvccpb;

use crate::error::ServerError;

pub fn range_request(r: pb::RangeRequest) -> mvcc::RangeRequest {
    let sort_order = match PbSortOrder::try_from(r.sort_order) {
        Ok(PbSortOrder::Ascend) => mvcc::SortOrder::Ascend,
        Ok(PbSortOrder::Descend) => mvcc::SortOrder::Descend,
        // etcd sorts nothing for an order it does not know.
        Ok(PbSortOrder::None) | Err(_) => mvcc::SortOrder::None,
    };
    let sort_target = match PbSortTarget::try_from(r.sort_target) {
        Ok(PbSortTarget::Version) => mvcc::SortTarget::Version,
        Ok(PbSortTarget::Create) => mvcc::SortTarget::Create,
        Ok(PbSortTarget::Mod) => mvcc::SortTarget::Mod,
        Ok(PbSortTarget::Value) => mvcc::SortTarget::Value,
        Ok(PbSortTarget::Key) | Err(_) => mvcc::SortTarget::Key,
    };
    mvcc::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put_request(r: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_range_request(r: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

/// As etcd: the target says what is compared; a `target_union` of another kind (or none)
/// compares against zero / the empty value.
pub fn compare(c: pb::Compare) -> mvcc::Compare {
    use pb::compare::TargetUnion as U;
    let int = |want: fn(&U) -> Option<i64>| c.target_union.as_ref().and_then(want).unwrap_or(0);
    let target = match PbTarget::try_from(c.target).unwrap_or(PbTarget::Version) {
        PbTarget::Version => mvcc::CompareTarget::Version(int(|u| match u {
            U::Version(v) => Some(*v),
            _ => None,
        })),
        PbTarget::Create => mvcc::CompareTarget::Create(int(|u| match u {
            U::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        PbTarget::Mod => mvcc::CompareTarget::Mod(int(|u| match u {
            U::ModRevision(v) => Some(*v),
            _ => None,
        })),
        PbTarget::Lease => mvcc::CompareTarget::Lease(int(|u| match u {
            U::Lease(v) => Some(*v),
            _ => None,
        })),
        PbTarget::Value => mvcc::CompareTarget::Value(match c.target_union {
            Some(U::Value(v)) => v,
            _ => Vec::new(),
        }),
    };
    let result = match PbResult::try_from(c.result).unwrap_or(PbResult::Equal) {
        PbResult::Equal => mvcc::CompareResult::Equal,
        PbResult::Greater => mvcc::CompareResult::Greater,
        PbResult::Less => mvcc::CompareResult::Less,
        PbResult::NotEqual => mvcc::CompareResult::NotEqual,
    };
    mvcc::Compare {
        key: c.key,
        range_end: c.range_end,
        result,
        target,
    }
}

/// A txn op with no request in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a txn op carries no request")]
pub struct EmptyRequestOp;

/// etcd answers an empty op with `key not found`.
impl From<EmptyRequestOp> for ServerError {
    fn from(_: EmptyRequestOp) -> ServerError {
        ServerError::KeyNotFound
    }
}

/// Fails for a `RequestOp` with no request in it.
pub fn txn_request(r: pb::TxnRequest) -> Result<mvcc::TxnRequest, EmptyRequestOp> {
    let ops = |ops: Vec<pb::RequestOp>| -> Result<Vec<mvcc::RequestOp>, EmptyRequestOp> {
        ops.into_iter().map(request_op).collect()
    };
    Ok(mvcc::TxnRequest {
        compare: r.compare.into_iter().map(compare).collect(),
        success: ops(r.success)?,
        failure: ops(r.failure)?,
    })
}

fn request_op(op: pb::RequestOp) -> Result<mvcc::RequestOp, EmptyRequestOp> {
    Ok(match op.request {
        Some(request_op::Request::RequestRange(r)) => mvcc::RequestOp::Range(range_request(r)),
        Some(request_op::Request::RequestPut(r)) => mvcc::RequestOp::Put(put_request(r)),
        Some(request_op::Request::RequestDeleteRange(r)) => {
            mvcc::RequestOp::DeleteRange(delete_range_request(r))
        }
        Some(request_op::Request::RequestTxn(r)) => mvcc::RequestOp::Txn(txn_request(r)?),
        None => return Err(EmptyRequestOp),
    })
}

pub fn key_value(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(ev: mvcc::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: ev.r#type,
        kv: ev.kv.map(key_value),
        prev_kv: ev.prev_kv.map(key_value),
    }
}

/// A header carrying only a revision: what the apply layer knows. The service fills the rest.
fn revision_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

pub fn range_response(r: mvcc::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: revision_header(r.revision),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: mvcc::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: revision_header(r.revision),
        prev_kv: r.prev_kv.map(key_value),
    }
}

pub fn delete_range_response(r: mvcc::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: revision_header(r.revision),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// The top-level response carries the revision after the txn; the responses of its ops carry
/// the revision each op saw, and a nested txn's own header is empty, exactly as etcd answers.
pub fn txn_response(r: mvcc::TxnResponse) -> pb::TxnResponse {
    let mut resp = nested_txn_response(r.responses, r.succeeded);
    resp.header = revision_header(r.revision);
    resp
}

fn nested_txn_response(responses: Vec<mvcc::ResponseOp>, succeeded: bool) -> pb::TxnResponse {
    let responses = responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                mvcc::ResponseOp::Range(r) => {
                    response_op::Response::ResponseRange(range_response(r))
                }
                mvcc::ResponseOp::Put(r) => response_op::Response::ResponsePut(put_response(r)),
                mvcc::ResponseOp::DeleteRange(r) => {
                    response_op::Response::ResponseDeleteRange(delete_range_response(r))
                }
                mvcc::ResponseOp::Txn(t) => response_op::Response::ResponseTxn(
                    nested_txn_response(t.responses, t.succeeded),
                ),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: Some(pb::ResponseHeader::default()),
        succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::compare::TargetUnion;

    #[test]
    fn compare_takes_its_operand_from_the_matching_union_member_only() {
        let c = pb::Compare {
            result: PbResult::Greater as i32,
            target: PbTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: Some(TargetUnion::ModRevision(7)),
        };
        let m = compare(c.clone());
        assert_eq!(m.target, mvcc::CompareTarget::Mod(7));
        assert_eq!(m.result, mvcc::CompareResult::Greater);
        let mismatched = pb::Compare {
            target_union: Some(TargetUnion::Version(3)),
            ..c.clone()
        };
        assert_eq!(compare(mismatched).target, mvcc::CompareTarget::Mod(0));
        let value = pb::Compare {
            target: PbTarget::Value as i32,
            target_union: Some(TargetUnion::Value(b"v".to_vec())),
            ..c
        };
        assert_eq!(
            compare(value).target,
            mvcc::CompareTarget::Value(b"v".to_vec())
        );
    }

    #[test]
    fn empty_request_op_is_refused_as_etcd_does() {
        let txn = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(
            ServerError::from(txn_request(txn).unwrap_err()),
            ServerError::KeyNotFound
        );
    }

    #[test]
    fn range_options_carry_over() {
        let r = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 3,
            revision: 9,
            sort_order: PbSortOrder::Descend as i32,
            sort_target: PbSortTarget::Create as i32,
            keys_only: true,
            count_only: false,
            min_mod_revision: 1,
            max_mod_revision: 2,
            min_create_revision: 3,
            max_create_revision: 4,
            serializable: true,
        };
        let m = range_request(r);
        assert_eq!(
            (
                m.limit,
                m.revision,
                m.sort_order,
                m.sort_target,
                m.keys_only
            ),
            (
                3,
                9,
                mvcc::SortOrder::Descend,
                mvcc::SortTarget::Create,
                true
            )
        );
        assert_eq!(
            (
                m.min_mod_revision,
                m.max_mod_revision,
                m.min_create_revision,
                m.max_create_revision
            ),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn nested_txn_headers_are_as_etcds() {
        let r = mvcc::TxnResponse {
            succeeded: true,
            revision: 5,
            responses: vec![
                mvcc::ResponseOp::Range(mvcc::RangeResponse {
                    revision: 4,
                    ..Default::default()
                }),
                mvcc::ResponseOp::Txn(mvcc::TxnResponse {
                    succeeded: false,
                    revision: 5,
                    responses: vec![mvcc::ResponseOp::Put(mvcc::PutResponse {
                        prev_kv: None,
                        revision: 5,
                    })],
                }),
            ],
        };
        let pb = txn_response(r);
        assert_eq!(pb.header.unwrap().revision, 5);
        let Some(response_op::Response::ResponseRange(range)) = &pb.responses[0].response else {
            panic!("range expected");
        };
        assert_eq!(range.header.as_ref().unwrap().revision, 4);
        let Some(response_op::Response::ResponseTxn(nested)) = &pb.responses[1].response else {
            panic!("txn expected");
        };
        assert_eq!(nested.header, Some(pb::ResponseHeader::default()));
        assert!(!nested.succeeded);
        let Some(response_op::Response::ResponsePut(put)) = &nested.responses[0].response else {
            panic!("put expected");
        };
        assert_eq!(put.header.as_ref().unwrap().revision, 5);
    }
}
