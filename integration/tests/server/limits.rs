//! Request limits with non-default flags, on etcd 3.4 and on our `etcd`: `--max-request-bytes`
//! (etcd's own refusal, then gRPC's receive limit 512 KiB above it), `--max-request-bytes 0`,
//! `--max-txn-ops`, `--max-concurrent-streams` (extra streams wait, no error). And etcd's
//! `too many requests` once the apply backlog passes 5000 entries, on ours alone: only a hidden
//! test flag (`--test-only-apply-delay`) makes that backlog happen on demand.

use crate::common;

use std::time::Duration;

use client::api::etcdserverpb::kv_client::KvClient;
use client::api::etcdserverpb::watch_client::WatchClient;
use client::api::etcdserverpb::*;
use client::{go_code_name, txn};
use common::*;
use integration::{server_tests, ServerBinary};
use tonic::transport::Channel;

fn assert_etcd_error<T: std::fmt::Debug>(result: client::Result<T>, code: &str, message: &str) {
    match result {
        Err(e) => assert_eq!(
            (e.code().map(go_code_name), e.server_message()),
            (Some(code), Some(message)),
            "{e:?}"
        ),
        Ok(answer) => panic!("expected {code} {message:?}, got {answer:?}"),
    }
}

/// One HTTP/2 connection to `url`.
async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn put(key: &str, value: &str) -> RequestOp {
    txn::put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

/// A PutRequest of key `k` and a 600 000-byte value is 600 007 bytes on the wire.
const BIG_VALUE: usize = 600_000;
const BIG_PUT_BYTES: usize = 600_007;

server_tests! {
    async fn max_request_bytes_is_etcds_limit_then_grpcs;
    async fn max_request_bytes_zero_refuses_every_write_and_serves_reads;
    async fn max_txn_ops_bounds_each_part_of_a_txn;
    async fn streams_beyond_max_concurrent_streams_wait_without_an_error;
}

/// `--max-request-bytes 1024`: a write over it is `request is too large` (InvalidArgument); a
/// message over 1024 + 512 KiB never reaches etcd: gRPC answers ResourceExhausted.
async fn max_request_bytes_is_etcds_limit_then_grpcs(server: ServerBinary) {
    let cluster = start_with(server, 1, &["--max-request-bytes", "1024"]);
    let c = connect(&cluster.client_urls()).await;
    c.put_kv("small", "x".repeat(900))
        .await
        .expect("under the limit");
    assert_etcd_error(
        c.put_kv("k", "x".repeat(2000)).await,
        "InvalidArgument",
        "etcdserver: request is too large",
    );
    let limit = 1024 + 512 * 1024;
    assert_etcd_error(
        c.put_kv("k", "x".repeat(BIG_VALUE)).await,
        "ResourceExhausted",
        &format!("grpc: received message larger than max ({BIG_PUT_BYTES} vs. {limit})"),
    );
    assert!(c.get("k").await.expect("get").is_none());
}

/// `--max-request-bytes 0`: accepted; the member starts and serves reads, every write (a raft
/// proposal) is `request is too large`, and gRPC's limit is the 512 KiB overhead alone.
async fn max_request_bytes_zero_refuses_every_write_and_serves_reads(server: ServerBinary) {
    let mut cluster = start_with(server, 1, &["--max-request-bytes", "0"]);
    let c = connect(&cluster.client_urls()).await;
    let too_large = "etcdserver: request is too large";
    assert_etcd_error(c.put_kv("k", "v").await, "InvalidArgument", too_large);
    assert_etcd_error(
        c.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await,
        "InvalidArgument",
        too_large,
    );
    assert!(c.get("k").await.expect("a read").is_none());
    c.member_list(MemberListRequest::default())
        .await
        .expect("member list");
    assert_etcd_error(
        c.put_kv("k", "x".repeat(BIG_VALUE)).await,
        "ResourceExhausted",
        &format!(
            "grpc: received message larger than max ({BIG_PUT_BYTES} vs. {})",
            512 * 1024
        ),
    );
    blocking(|| cluster.wait_healthy(0, WAIT)).expect("healthy");
}

/// `--max-txn-ops 3`: compares, success and failure ops are each bounded.
async fn max_txn_ops_bounds_each_part_of_a_txn(server: ServerBinary) {
    let cluster = start_with(server, 1, &["--max-txn-ops", "3"]);
    let c = connect(&cluster.client_urls()).await;
    let ops = |n: usize| {
        (0..n)
            .map(|i| put(&format!("t/{i}"), "v"))
            .collect::<Vec<_>>()
    };
    let compare = |n: usize| {
        (0..n)
            .map(|i| Compare {
                key: format!("t/{i}").into(),
                target: compare::CompareTarget::Version as i32,
                result: compare::CompareResult::Equal as i32,
                target_union: Some(compare::TargetUnion::Version(0)),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let too_many = "etcdserver: too many operations in txn request";
    for request in [
        TxnRequest {
            success: ops(4),
            ..Default::default()
        },
        TxnRequest {
            failure: ops(4),
            ..Default::default()
        },
        TxnRequest {
            compare: compare(4),
            ..Default::default()
        },
    ] {
        assert_etcd_error(c.txn(request).await, "InvalidArgument", too_many);
    }
    let accepted = c
        .txn(TxnRequest {
            compare: compare(3),
            success: ops(3),
            failure: ops(3),
        })
        .await
        .expect("a txn at the limit");
    assert!(accepted.succeeded);
    assert_eq!(accepted.responses.len(), 3);
}

/// `--max-concurrent-streams 2`: with two watch streams open on one connection, a third call on
/// it waits (no error) until one of them ends, then completes.
async fn streams_beyond_max_concurrent_streams_wait_without_an_error(server: ServerBinary) {
    let cluster = start_with(server, 1, &["--max-concurrent-streams", "2"]);
    let conn = channel(cluster.client_url(0)).await;
    let mut watches = Vec::new();
    for i in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: format!("w/{i}").into(),
                    ..Default::default()
                },
            )),
        })
        .await
        .expect("queue the create");
        let mut responses = WatchClient::new(conn.clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch stream")
            .into_inner();
        let created = tokio::time::timeout(WAIT, responses.message())
            .await
            .expect("created in time")
            .expect("a message")
            .expect("not the end");
        assert!(created.created);
        watches.push((tx, responses));
    }
    let mut kv = KvClient::new(conn.clone());
    let third = tokio::spawn(async move {
        kv.range(RangeRequest {
            key: "w/0".into(),
            ..Default::default()
        })
        .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a third stream waits for a free slot");
    drop(watches.pop());
    let answer = tokio::time::timeout(WAIT, third)
        .await
        .expect("the third call completes once a stream ends")
        .expect("task");
    answer.expect("no error, only a wait");
}

/// With the apply thread held back (hidden test flag), more than 5000 committed but unapplied
/// entries make every new proposal fail with etcd's `too many requests`, code Unknown as etcd 3.4
/// and 3.5 answer it (etcd's error map holds clientv3's value, so the lookup misses); reads still
/// work.
#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_past_the_apply_backlog_on_etcd_rs() {
    let cluster = start_with(
        integration::server_tests::etcd_rs_or_panic(),
        1,
        &["--test-only-apply-delay", "250ms"],
    );
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(channel(cluster.client_url(0)).await);
    }
    let conn = conns[0].clone();
    // 8000 writes at once over 16 connections: raft commits them as they come, the apply thread
    // takes 250 ms over each.
    let flood: Vec<_> = (0..8000)
        .map(|i| {
            let mut kv = KvClient::new(conns[i % conns.len()].clone());
            tokio::spawn(async move {
                let _ = kv
                    .put(PutRequest {
                        key: format!("flood/{i}").into(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .await;
            })
        })
        .collect();
    let mut kv = KvClient::new(conn.clone());
    let refused = tokio::time::timeout(3 * WAIT, async {
        loop {
            let answer = kv
                .put(PutRequest {
                    key: "one-more".into(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await;
            match answer {
                Err(status) if status.message() == "etcdserver: too many requests" => {
                    return status
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("a write refused once the backlog passes 5000 entries");
    assert_eq!(refused.code(), tonic::Code::Unknown);
    let read = kv
        .range(RangeRequest {
            key: "one-more".into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .expect("a serializable read still works");
    assert!(read.into_inner().kvs.is_empty());
    for task in flood {
        task.abort();
    }
}
