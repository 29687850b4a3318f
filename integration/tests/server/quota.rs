//! `--quota-backend-bytes`, the NOSPACE and CORRUPT alarms and what each still lets through, as
//! etcd 3.4 does them: the error code and text, `alarm list`/`alarm disarm` from both etcdctls,
//! `Status.errors`, `/health`, an alarm surviving a restart, and the compact + defrag + disarm
//! recipe. Each test runs against etcd 3.4 and our `etcd`.

use crate::common;

use client::api::etcdserverpb::{
    alarm_request::AlarmAction, compare, request_op, AlarmMember, AlarmRequest, AlarmType,
    CompactionRequest, Compare, DefragmentRequest, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use client::{Client, Error};
use common::*;
use integration::output::without_logs;
use integration::{server_tests, Cli, Cluster, ServerBinary};
use testkit::eventually_async;
use tonic::Code;

/// A quota both backends pass when empty (etcd's bbolt file is 20 KiB, our redb file
/// [`OUR_EMPTY_DB`]) and exceed after a few [`VALUE`]-sized puts.
const QUOTA: u64 = 2 * 1024 * 1024;
/// Our empty database file (measured: 72 KiB): the quota above must leave room for a few puts.
const OUR_EMPTY_DB: u64 = 72 * 1024;
/// Each filling put's value: well under the 1.5 MiB request limit.
const VALUE: usize = 64 * 1024;
/// Bound on the puts that fill the quota.
const MAX_FILLING_PUTS: usize = 4 * (QUOTA as usize) / VALUE;

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";
const CORRUPT: &str = "etcdserver: corrupt cluster";

server_tests! {
    async fn nospace_refuses_growth_until_compact_defrag_disarm;
    async fn a_quota_below_the_current_size_refuses_the_first_write;
    async fn corrupt_alarm_refuses_changes_but_serves_reads;
    async fn an_alarm_of_kind_none_is_recorded_and_fails_health;
}

fn start_with_quota(server: ServerBinary, quota: u64) -> Cluster {
    start_with(server, 1, &[&format!("--quota-backend-bytes={quota}")])
}

fn put(key: &str, value: impl Into<Vec<u8>>) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put(key, value))),
    }
}

fn op_delete(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            },
        )),
    }
}

fn op_get(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

fn alarm(action: AlarmAction, member_id: u64, kind: AlarmType) -> AlarmRequest {
    AlarmRequest {
        action: action as i32,
        member_id,
        alarm: kind as i32,
    }
}

/// Asserts `result` is etcd's error `code` with `message`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Error>, code: Code, message: &str) {
    match result {
        Err(Error::Status {
            code: c,
            message: m,
        }) => {
            assert_eq!((c, m.as_str()), (code, message))
        }
        other => panic!("expected {code:?} {message:?}, got {other:?}"),
    }
}

/// `GET /health`: the HTTP status and the body.
fn health(cluster: &Cluster) -> (String, String) {
    let out = Cli::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("{}/health", cluster.client_url(0)))
        .run_ok()
        .unwrap_or_else(|e| panic!("{e}"));
    let (body, code) = out
        .trim_end()
        .rsplit_once('\n')
        .expect("curl's status line");
    (code.to_string(), body.to_string())
}

/// Both etcdctls' `alarm list` (or another alarm command): they must print the same; returns it.
fn etcdctl_alarm(cluster: &Cluster, args: &[&str]) -> String {
    let [(_, reference), (_, ours)] = etcdctls();
    let run = |bin| {
        let out = cluster
            .cli(bin)
            .args(args)
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        (out.code(), out.stdout, without_logs(&out.stderr))
    };
    let theirs = run(reference);
    let ours = run(ours);
    assert_eq!(
        ours, theirs,
        "etcdctl {args:?}: ours (left), etcdctl 3.4 (right)"
    );
    assert_eq!(ours.0, Some(0), "{ours:?}");
    ours.1
}

/// `alarm disarm` with one etcdctl (the first to run clears what the other would print).
fn etcdctl_disarm(cluster: &Cluster, bin: std::path::PathBuf) -> String {
    cluster
        .cli(bin)
        .args(["alarm", "disarm"])
        .run_ok()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn status_errors(client: &Client) -> Vec<String> {
    client
        .status(StatusRequest {})
        .await
        .expect("status")
        .errors
}

async fn member_id(client: &Client) -> u64 {
    let status = client.status(StatusRequest {}).await.expect("status");
    status.header.expect("header").member_id
}

/// Puts `VALUE`-sized values until the quota refuses one; returns how many went in.
async fn fill_until_nospace(client: &Client) -> usize {
    let value = vec![b'v'; VALUE];
    for i in 0..MAX_FILLING_PUTS {
        match client
            .put(put(&format!("fill/{i:04}"), value.clone()))
            .await
        {
            Ok(_) => continue,
            Err(e) => {
                assert_refused::<()>(Err(e), Code::ResourceExhausted, NOSPACE);
                return i;
            }
        }
    }
    panic!("{MAX_FILLING_PUTS} puts of {VALUE} bytes never exceeded a quota of {QUOTA}");
}

async fn nospace_refuses_growth_until_compact_defrag_disarm(server: ServerBinary) {
    // The quota must leave room for our empty database and a few puts.
    const _: () = assert!(QUOTA > OUR_EMPTY_DB + 4 * VALUE as u64);
    let mut cluster = start_with_quota(server, QUOTA);
    let client = connect_to(&cluster, 0).await;
    let id = member_id(&client).await;
    client
        .put(put("small", "1"))
        .await
        .expect("put under quota");
    let lease = client
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("lease grant")
        .id;
    let filled = fill_until_nospace(&client).await;
    assert!(filled >= 2, "only {filled} puts fitted");

    // The alarm is in force: raised by this member, listed as etcd prints it.
    let expected = format!("memberID:{id} alarm:NOSPACE \n");
    assert_eq!(etcdctl_alarm(&cluster, &["alarm", "list"]), expected);
    assert_eq!(
        status_errors(&client).await,
        [format!("memberID:{id} alarm:NOSPACE ")]
    );
    let (code, body) = health(&cluster);
    assert_eq!(code, "503", "{body}");
    assert!(body.starts_with(r#"{"health":"false""#), "{body}");

    // What grows the database is refused, whatever its size.
    assert_refused(
        client.put(put("small", "2")).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    assert_refused(
        client
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    let txn_put = TxnRequest {
        success: vec![op_put("small", "3")],
        ..Default::default()
    };
    assert_refused(
        client.txn(txn_put.clone()).await,
        Code::ResourceExhausted,
        NOSPACE,
    );

    // Reads, deletes, delete-only txns, lease revokes, compaction and defrag still work.
    let got = client
        .range(RangeRequest {
            key: b"small".to_vec(),
            ..Default::default()
        })
        .await
        .expect("get under NOSPACE");
    assert_eq!(got.kvs[0].value, b"1");
    let deleted = client
        .delete_range(DeleteRangeRequest {
            key: b"fill/".to_vec(),
            range_end: b"fill0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete under NOSPACE");
    // The last refused put may have been applied: it can pass the check before proposing (the
    // size read is the last commit's) and fail the one at apply.
    let deleted = deleted.deleted as usize;
    assert!(
        deleted == filled || deleted == filled + 1,
        "{deleted} of {filled}"
    );
    let delete_only = client
        .txn(TxnRequest {
            compare: vec![Compare {
                key: b"small".to_vec(),
                target: compare::CompareTarget::Version as i32,
                result: compare::CompareResult::Greater as i32,
                target_union: Some(compare::TargetUnion::Version(0)),
                ..Default::default()
            }],
            success: vec![op_delete("absent"), op_get("small")],
            failure: vec![],
        })
        .await
        .expect("delete-only txn under NOSPACE");
    assert!(delete_only.succeeded);
    client
        .lease_revoke(LeaseRevokeRequest { id: lease })
        .await
        .expect("lease revoke under NOSPACE");

    // The alarm survives a restart: still listed, writes still refused.
    drop(client);
    blocking(|| cluster.restart(0)).unwrap();
    let client = connect_to(&cluster, 0).await;
    eventually_async(WAIT, "the restarted member serves reads", || async {
        client
            .range(RangeRequest {
                key: b"small".to_vec(),
                ..Default::default()
            })
            .await
            .is_ok()
    })
    .await;
    assert_eq!(etcdctl_alarm(&cluster, &["alarm", "list"]), expected);
    assert_refused(
        client.put(put("small", "4")).await,
        Code::ResourceExhausted,
        NOSPACE,
    );

    // The recipe: compact, defragment, and only the disarm lets writes in again.
    let revision = got.header.expect("header").revision + 1;
    client
        .compact(CompactionRequest {
            revision,
            physical: true,
        })
        .await
        .expect("compact under NOSPACE");
    client
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment under NOSPACE");
    assert_refused(
        client.put(put("small", "5")).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    assert_eq!(etcdctl_disarm(&cluster, our_etcdctl()), expected);
    assert_eq!(etcdctl_alarm(&cluster, &["alarm", "list"]), "");
    client
        .put(put("small", "6"))
        .await
        .expect("put after disarm");
    assert!(status_errors(&client).await.is_empty());
    let (code, body) = health(&cluster);
    assert_eq!(
        (code.as_str(), body.starts_with(r#"{"health":"true""#)),
        ("200", true),
        "{body}"
    );
}

async fn a_quota_below_the_current_size_refuses_the_first_write(server: ServerBinary) {
    // Any positive quota is accepted, even one the empty database already exceeds.
    let cluster = start_with_quota(server, 1000);
    let metrics = cluster.metrics(0).expect("metrics");
    assert_eq!(
        metric_sum(&metrics, "etcd_server_quota_backend_bytes"),
        1000.0
    );
    let client = connect_to(&cluster, 0).await;
    let id = member_id(&client).await;
    assert_refused(
        client.put(put("k", "v")).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    assert_eq!(
        etcdctl_alarm(&cluster, &["alarm", "list"]),
        format!("memberID:{id} alarm:NOSPACE \n")
    );
    let got = client
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("get");
    assert!(got.kvs.is_empty(), "the refused put was not applied");
    // Disarming does not make room: the next write raises the alarm again.
    etcdctl_disarm(&cluster, integration::real_etcdctl());
    assert_refused(
        client.put(put("k", "v")).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    assert_eq!(
        etcdctl_alarm(&cluster, &["alarm", "list"]),
        format!("memberID:{id} alarm:NOSPACE \n")
    );
}

async fn corrupt_alarm_refuses_changes_but_serves_reads(server: ServerBinary) {
    let cluster = start_with(server, 1, &[]);
    let client = connect_to(&cluster, 0).await;
    client.put(put("k", "v1")).await.expect("put");
    client.put(put("k", "v2")).await.expect("put");
    let lease = client
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("lease grant")
        .id;

    // A client may raise CORRUPT (member 0, as the corruption checks do); the answer is the entry.
    let raised = client
        .alarm(alarm(AlarmAction::Activate, 0, AlarmType::Corrupt))
        .await
        .expect("activate CORRUPT");
    let corrupt = AlarmMember {
        member_id: 0,
        alarm: AlarmType::Corrupt as i32,
    };
    assert_eq!(raised.alarms, [corrupt]);
    assert_eq!(
        etcdctl_alarm(&cluster, &["alarm", "list"]),
        "alarm:CORRUPT \n"
    );
    assert_eq!(status_errors(&client).await, ["alarm:CORRUPT "]);
    let (code, body) = health(&cluster);
    assert_eq!(code, "503", "{body}");
    assert!(body.starts_with(r#"{"health":"false""#), "{body}");

    // Every change is refused with DataLoss...
    assert_refused(client.put(put("k", "v3")).await, Code::DataLoss, CORRUPT);
    assert_refused(
        client
            .delete_range(DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await,
        Code::DataLoss,
        CORRUPT,
    );
    assert_refused(
        client
            .txn(TxnRequest {
                success: vec![op_delete("k")],
                ..Default::default()
            })
            .await,
        Code::DataLoss,
        CORRUPT,
    );
    assert_refused(
        client
            .compact(CompactionRequest {
                revision: 2,
                physical: false,
            })
            .await,
        Code::DataLoss,
        CORRUPT,
    );
    assert_refused(
        client
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await,
        Code::DataLoss,
        CORRUPT,
    );
    assert_refused(
        client.lease_revoke(LeaseRevokeRequest { id: lease }).await,
        Code::DataLoss,
        CORRUPT,
    );
    // ... reads, read-only txns and defragmentation are not.
    let got = client
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("get under CORRUPT");
    assert_eq!(got.kvs[0].value, b"v2");
    let read = client
        .txn(TxnRequest {
            success: vec![op_get("k")],
            ..Default::default()
        })
        .await
        .expect("read-only txn under CORRUPT");
    assert!(read.succeeded);
    client
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment under CORRUPT");

    // Only a DEACTIVATE clears it; the answer is the entry cleared, then nothing.
    let cleared = client
        .alarm(alarm(AlarmAction::Deactivate, 0, AlarmType::Corrupt))
        .await
        .expect("deactivate CORRUPT");
    assert_eq!(cleared.alarms, [corrupt]);
    let again = client
        .alarm(alarm(AlarmAction::Deactivate, 0, AlarmType::Corrupt))
        .await
        .expect("deactivate CORRUPT again");
    assert!(again.alarms.is_empty());
    client
        .put(put("k", "v4"))
        .await
        .expect("put after clearing");
    client
        .lease_revoke(LeaseRevokeRequest { id: lease })
        .await
        .expect("lease revoke after clearing");
}

async fn an_alarm_of_kind_none_is_recorded_and_fails_health(server: ServerBinary) {
    let cluster = start_with(server, 1, &[]);
    let client = connect_to(&cluster, 0).await;
    let raised = client
        .alarm(alarm(AlarmAction::Activate, 5, AlarmType::None))
        .await
        .expect("activate NONE");
    assert_eq!(
        raised.alarms,
        [AlarmMember {
            member_id: 5,
            alarm: 0
        }]
    );
    // GET ignores the request's member; NONE lists every kind.
    let listed = client
        .alarm(alarm(AlarmAction::Get, 9, AlarmType::None))
        .await
        .expect("get alarms");
    assert_eq!(listed.alarms, raised.alarms);
    let nospace = client
        .alarm(alarm(AlarmAction::Get, 5, AlarmType::Nospace))
        .await
        .expect("get NOSPACE alarms");
    assert!(nospace.alarms.is_empty());
    assert_eq!(etcdctl_alarm(&cluster, &["alarm", "list"]), "memberID:5 \n");
    let (code, body) = health(&cluster);
    assert_eq!(code, "503", "{body}");
    assert!(body.starts_with(r#"{"health":"false""#), "{body}");
    // It blocks nothing.
    client.put(put("k", "v")).await.expect("put");
    assert_eq!(
        etcdctl_disarm(&cluster, integration::real_etcdctl()),
        "memberID:5 \n"
    );
    client
        .alarm(alarm(AlarmAction::Activate, 5, AlarmType::None))
        .await
        .expect("activate NONE again");
    assert_eq!(etcdctl_disarm(&cluster, our_etcdctl()), "memberID:5 \n");
    assert_eq!(etcdctl_alarm(&cluster, &["alarm", "list"]), "");
    let (code, _) = health(&cluster);
    assert_eq!(code, "200");
}
