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
