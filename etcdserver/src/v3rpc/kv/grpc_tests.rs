use std::time::Duration;

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::response_op::Response as Resp;
use tonic::transport::Channel;
use tonic::Code;

use super::*;
use crate::core::Limits;
use crate::testing::{DirectCore, CLUSTER_ID, MEMBER_ID, TERM};
use crate::v3rpc::test_server::TestServer;

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
        ..Limits::default()
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
