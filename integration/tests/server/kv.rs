//! Requests through our client on a three-member cluster: bad requests get etcd's gRPC code and
//! exact message and leave the cluster serving; watches replay history from a past revision and are
//! canceled at a compacted one. Each runs against etcd 3.4 and against our `etcd`.

use crate::common;

use client::api::etcdserverpb::*;
use client::api::mvccpb::event::EventType;
use client::{go_code_name, prefix_range_end, txn, Client, WatchOptions, WatchStream};
use common::*;
use integration::{server_tests, ServerBinary};
use testkit::eventually_async;

fn put_op(key: &str, value: &str) -> RequestOp {
    txn::put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn range(key: &str, revision: i64) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        revision,
        ..Default::default()
    }
}

/// Asserts `result` is the server's error with grpc-go's name of `code` and exactly `message`.
#[track_caller]
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

/// A watch created within the test's bound (creation waits for the server's answer).
async fn watch(client: &Client, key: &str, options: WatchOptions) -> WatchStream {
    tokio::time::timeout(WAIT, client.watch(key, options))
        .await
        .expect("the watch is created in time")
        .expect("create the watch")
}

/// `(type, key, value, mod revision, previous value)` of the next events, until `count` arrived.
async fn events(
    stream: &mut WatchStream,
    count: usize,
) -> Vec<(&'static str, String, String, i64, String)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {seen:?}"))
            .expect("watch open")
            .expect("watch not failed");
        for event in response.events {
            let kind = if event.r#type == EventType::Delete as i32 {
                "DELETE"
            } else {
                "PUT"
            };
            let kv = event.kv.unwrap_or_default();
            let prev = event
                .prev_kv
                .map(|p| String::from_utf8_lossy(&p.value).into_owned());
            seen.push((
                kind,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
                prev.unwrap_or_default(),
            ));
        }
    }
    seen
}

server_tests! {
    async fn bad_requests_get_etcds_errors_and_the_cluster_keeps_serving;
    async fn watch_replays_history_and_is_canceled_at_a_compacted_revision;
    async fn periodic_auto_compaction_drops_history_older_than_the_retention;
}

/// `--auto-compaction-mode periodic --auto-compaction-retention 1s`: the leader compacts, through
/// raft, to the revision of about a second ago, so an early revision soon reads as compacted on
/// every member while the latest values stay.
async fn periodic_auto_compaction_drops_history_older_than_the_retention(server: ServerBinary) {
    let cluster = start_with(
        server,
        3,
        &[
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1s",
        ],
    );
    let c = connect(&cluster.client_urls()).await;
    let first = c
        .put_kv("ac", "1")
        .await
        .expect("put")
        .header
        .expect("header")
        .revision;
    let mut value = 1;
    let c = &c;
    eventually_async(WAIT, &format!("revision {first} to be compacted"), || {
        value += 1;
        let value = value.to_string();
        async move {
            c.put_kv("ac", value).await.expect("put");
            match c.range(range("ac", first)).await {
                Err(e) => {
                    e.server_message()
                        == Some("etcdserver: mvcc: required revision has been compacted")
                        || panic!("reading revision {first}: {e:?}")
                }
                Ok(_) => false,
            }
        }
    })
    .await;
    for i in 0..cluster.size() {
        // Linearizable reads: each member has applied the compaction before it answers.
        let member = connect_to(&cluster, i).await;
        let latest = member.get("ac").await.expect("get").expect("the key");
        assert_eq!(latest.value, value.to_string().into_bytes(), "member {i}");
        assert_etcd_error(
            member.range(range("ac", first)).await,
            "OutOfRange",
            "etcdserver: mvcc: required revision has been compacted",
        );
    }
}

/// Empty keys, a request over `--max-request-bytes` (1.5 MiB), a txn over `--max-txn-ops` (128),
/// duplicate keys in a txn, future and compacted revisions: each refused with etcd's code and
/// message, nothing applied, and afterwards every member still serves reads and writes.
async fn bad_requests_get_etcds_errors_and_the_cluster_keeps_serving(server: ServerBinary) {
    let mut cluster = start(server, 3);
    let c = connect(&cluster.client_urls()).await;
    let mut revision = 0;
    for value in ["1", "2", "3"] {
        revision = c
            .put_kv("k", value)
            .await
            .expect("put")
            .header
            .expect("header")
            .revision;
    }

    let empty = "etcdserver: key is not provided";
    assert_etcd_error(c.put_kv("", "v").await, "InvalidArgument", empty);
    assert_etcd_error(c.range(range("", 0)).await, "InvalidArgument", empty);
    assert_etcd_error(
        c.delete_range(DeleteRangeRequest::default()).await,
        "InvalidArgument",
        empty,
    );
    assert_etcd_error(
        c.txn(TxnRequest {
            success: vec![put_op("", "v")],
            ..Default::default()
        })
        .await,
        "InvalidArgument",
        empty,
    );

    // 1.5 MiB is the server's limit; the client's own (2 MiB) lets this through.
    let big = vec![b'x'; 1024 * 1024 * 3 / 2 + 1024];
    assert_etcd_error(
        c.put_kv("big", big).await,
        "InvalidArgument",
        "etcdserver: request is too large",
    );

    let ops = |n: usize| {
        (0..n)
            .map(|i| put_op(&format!("op/{i:03}"), "v"))
            .collect::<Vec<_>>()
    };
    assert_etcd_error(
        c.txn(TxnRequest {
            success: ops(129),
            ..Default::default()
        })
        .await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    assert_etcd_error(
        c.txn(TxnRequest {
            failure: ops(129),
            ..Default::default()
        })
        .await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    let duplicate = "etcdserver: duplicate key given in txn request";
    assert_etcd_error(
        c.txn(TxnRequest {
            success: vec![put_op("d", "1"), put_op("d", "2")],
            ..Default::default()
        })
        .await,
        "InvalidArgument",
        duplicate,
    );
    assert_etcd_error(
        c.txn(TxnRequest {
            success: vec![
                put_op("d/1", "1"),
                txn::delete(DeleteRangeRequest {
                    key: b"d/".to_vec(),
                    range_end: prefix_range_end(b"d/"),
                    prev_kv: false,
                }),
            ],
            ..Default::default()
        })
        .await,
        "InvalidArgument",
        duplicate,
    );

    let future = "etcdserver: mvcc: required revision is a future revision";
    assert_etcd_error(
        c.range(range("k", revision + 1)).await,
        "OutOfRange",
        future,
    );
    assert_etcd_error(
        c.compact(CompactionRequest {
            revision: revision + 1,
            physical: true,
        })
        .await,
        "OutOfRange",
        future,
    );
    c.compact(CompactionRequest {
        revision: revision - 1,
        physical: true,
    })
    .await
    .expect("compact");
    let compacted = "etcdserver: mvcc: required revision has been compacted";
    assert_etcd_error(
        c.range(range("k", revision - 2)).await,
        "OutOfRange",
        compacted,
    );
    assert_etcd_error(
        c.compact(CompactionRequest {
            revision: revision - 1,
            physical: false,
        })
        .await,
        "OutOfRange",
        compacted,
    );
    assert_eq!(
        c.range(range("k", revision - 1))
            .await
            .expect("read at the compacted revision")
            .kvs[0]
            .value,
        b"2"
    );

    // Nothing of the refused requests was applied (the revision is unchanged), and a txn of 128
    // operations, the limit itself, is accepted.
    let response = c.range(range("k", 0)).await.expect("range");
    assert_eq!(response.header.expect("header").revision, revision);
    assert!(c.get("big").await.expect("get").is_none());
    assert!(dump(&c, "d").await.is_empty());
    let accepted = c
        .txn(TxnRequest {
            success: ops(128),
            ..Default::default()
        })
        .await
        .expect("a txn of exactly --max-txn-ops operations");
    assert_eq!(accepted.responses.len(), 128);

    blocking(|| cluster.wait_all_healthy(WAIT)).expect("every member healthy");
    for i in 0..cluster.size() {
        let member = connect_to(&cluster, i).await;
        member
            .put_kv(format!("after/{i}"), "ok")
            .await
            .expect("a write after the errors");
        assert_eq!(
            dump(&member, "after/").await.len(),
            i + 1,
            "{}",
            cluster.name(i)
        );
    }
}

/// A watch from a past revision, created on a follower, replays the history in order (with
/// previous values) and then delivers live events; a watch below the compacted revision is
/// canceled with that revision; one at the compacted revision still replays from there.
async fn watch_replays_history_and_is_canceled_at_a_compacted_revision(server: ServerBinary) {
    let cluster = start(server, 3);
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let writer = connect_to(&cluster, leader).await;
    let watcher = connect_to(&cluster, (leader + 1) % cluster.size()).await;

    let first = writer
        .put_kv("w/a", "1")
        .await
        .expect("put")
        .header
        .expect("header")
        .revision;
    writer.put_kv("w/b", "2").await.expect("put");
    writer.put_kv("w/a", "3").await.expect("put");
    writer
        .delete_range(DeleteRangeRequest {
            key: b"w/a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("del");
    writer.put_kv("other", "x").await.expect("put");

    let prefix = WatchOptions {
        range_end: prefix_range_end(b"w/"),
        start_revision: first,
        prev_kv: true,
        ..Default::default()
    };
    let mut history = watch(&watcher, "w/", prefix.clone()).await;
    let expected_history = vec![
        (
            "PUT",
            "w/a".to_string(),
            "1".to_string(),
            first,
            String::new(),
        ),
        (
            "PUT",
            "w/b".to_string(),
            "2".to_string(),
            first + 1,
            String::new(),
        ),
        (
            "PUT",
            "w/a".to_string(),
            "3".to_string(),
            first + 2,
            "1".to_string(),
        ),
        (
            "DELETE",
            "w/a".to_string(),
            String::new(),
            first + 3,
            "3".to_string(),
        ),
    ];
    assert_eq!(events(&mut history, 4).await, expected_history);
    writer.put_kv("w/c", "live").await.expect("put");
    assert_eq!(
        events(&mut history, 1).await,
        [(
            "PUT",
            "w/c".to_string(),
            "live".to_string(),
            first + 5,
            String::new()
        )]
    );

    let compact_revision = first + 2;
    writer
        .compact(CompactionRequest {
            revision: compact_revision,
            physical: true,
        })
        .await
        .expect("compact");
    let mut too_old = watch(&watcher, "w/", prefix.clone()).await;
    match tokio::time::timeout(WAIT, too_old.message())
        .await
        .expect("an answer in time")
    {
        Some(Err(client::Error::WatchCanceled {
            compact_revision: at,
            ..
        })) => {
            assert_eq!(at, compact_revision)
        }
        other => panic!("expected a compacted cancel, got {other:?}"),
    }
    let mut at_compaction = watch(
        &watcher,
        "w/",
        WatchOptions {
            start_revision: compact_revision,
            ..prefix
        },
    )
    .await;
    // The previous value of the first event is below the compaction, so it is gone.
    assert_eq!(
        events(&mut at_compaction, 3).await,
        [
            (
                "PUT",
                "w/a".to_string(),
                "3".to_string(),
                first + 2,
                String::new()
            ),
            expected_history[3].clone(),
            (
                "PUT",
                "w/c".to_string(),
                "live".to_string(),
                first + 5,
                String::new()
            ),
        ]
    );
}
