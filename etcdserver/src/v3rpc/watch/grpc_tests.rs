use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::watch_client::WatchClient;
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic::Code;

use super::*;
use crate::core::Limits;
use crate::testing::{DirectCore, CLUSTER_ID, MEMBER_ID, TERM};
use crate::v3rpc::test_server::TestServer;

/// Generous: only a broken server takes this long.
const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    core: Arc<DirectCore>,
    kv: KvClient<Channel>,
    server: TestServer,
}

async fn start(limits: Limits, progress: Duration) -> Fixture {
    let core = DirectCore::new(limits).unwrap();
    let server = TestServer::start(core.clone(), progress).await.unwrap();
    let kv = KvClient::connect(server.endpoint()).await.unwrap();
    Fixture { core, kv, server }
}

/// A raw watch stream, to see every message the server sends.
struct RawWatch {
    requests: mpsc::UnboundedSender<pb::WatchRequest>,
    responses: Streaming<pb::WatchResponse>,
}

impl RawWatch {
    async fn open(server: &TestServer, has_leader: bool) -> Result<RawWatch, Status> {
        let mut client = WatchClient::connect(server.endpoint()).await.unwrap();
        let (requests, rx) = mpsc::unbounded_channel();
        let mut request = Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        if has_leader {
            request
                .metadata_mut()
                .insert("hasleader", "true".parse().unwrap());
        }
        let responses = client.watch(request).await?.into_inner();
        Ok(RawWatch {
            requests,
            responses,
        })
    }

    fn send(&self, request: RequestUnion) {
        self.requests
            .send(pb::WatchRequest {
                request_union: Some(request),
            })
            .unwrap();
    }

    fn create(&self, create: pb::WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(create));
    }

    async fn next(&mut self) -> pb::WatchResponse {
        timeout(WAIT, self.responses.message())
            .await
            .expect("no watch response in time")
            .unwrap()
            .expect("watch stream ended")
    }

    /// Waits for the response to `create`, checks it and returns the watch id.
    async fn created(&mut self, create: pb::WatchCreateRequest, revision: i64) -> i64 {
        self.create(create);
        let r = self.next().await;
        assert!(r.created && !r.canceled, "{r:?}");
        assert_eq!(r.header, Some(header(revision)));
        r.watch_id
    }
}

fn header(revision: i64) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: CLUSTER_ID,
        member_id: MEMBER_ID,
        revision,
        raft_term: TERM,
    }
}

fn watch_key(key: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: key.into(),
        ..Default::default()
    }
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    let r = kv
        .put(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    r.into_inner().header.unwrap().revision
}

async fn delete(kv: &mut KvClient<Channel>, key: &str) -> i64 {
    let r = kv
        .delete_range(pb::DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    r.into_inner().header.unwrap().revision
}

fn summary(r: &pb::WatchResponse) -> Vec<(i32, String, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap();
            let prev = e.prev_kv.as_ref().map_or(String::new(), |p| {
                String::from_utf8(p.value.clone()).unwrap()
            });
            (
                e.r#type,
                String::from_utf8(kv.key).unwrap(),
                prev,
                kv.mod_revision,
            )
        })
        .collect()
}

const PUT: i32 = 0;
const DELETE: i32 = 1;

#[tokio::test]
async fn events_prev_kv_and_filters() {
    let Fixture {
        mut kv,
        server,
        core: _core,
    } = start(Limits::default(), DEFAULT_PROGRESS_NOTIFY_INTERVAL).await;
    let mut w = RawWatch::open(&server, true).await.unwrap();
    let plain = w.created(watch_key("k"), 1).await;
    assert_eq!(plain, 0);
    let with_prev = pb::WatchCreateRequest {
        prev_kv: true,
        ..watch_key("k")
    };
    assert_eq!(w.created(with_prev, 1).await, 1);
    let no_put = pb::WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        ..watch_key("k")
    };
    assert_eq!(w.created(no_put, 1).await, 2);
    let prefix = pb::WatchCreateRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        filters: vec![FilterType::Nodelete as i32],
        watch_id: 7,
        ..Default::default()
    };
    assert_eq!(w.created(prefix, 1).await, 7);

    assert_eq!(put(&mut kv, "k", "1").await, 2);
    assert_eq!(put(&mut kv, "k", "2").await, 3);
    assert_eq!(put(&mut kv, "ax", "3").await, 4);
    assert_eq!(delete(&mut kv, "k").await, 5);
    assert_eq!(delete(&mut kv, "ax").await, 6);

    let mut seen: HashMap<i64, Vec<(i32, String, String, i64)>> = HashMap::new();
    let mut headers = Vec::new();
    // 3 events each for watchers 0 and 1, one for 2, one for 7.
    while seen.values().map(Vec::len).sum::<usize>() < 8 {
        let r = w.next().await;
        assert!(!r.created && !r.canceled);
        headers.push((
            r.header.unwrap(),
            r.events.last().unwrap().kv.clone().unwrap(),
        ));
        seen.entry(r.watch_id).or_default().extend(summary(&r));
    }
    let ev = |t, k: &str, prev: &str, rev| (t, k.to_string(), prev.to_string(), rev);
    assert_eq!(
        seen[&0],
        [
            ev(PUT, "k", "", 2),
            ev(PUT, "k", "", 3),
            ev(DELETE, "k", "", 5)
        ]
    );
    assert_eq!(
        seen[&1],
        [
            ev(PUT, "k", "", 2),
            ev(PUT, "k", "1", 3),
            ev(DELETE, "k", "2", 5)
        ]
    );
    assert_eq!(seen[&2], [ev(DELETE, "k", "", 5)]);
    assert_eq!(seen[&7], [ev(PUT, "ax", "", 4)]);
    for (h, last) in headers {
        assert_eq!(
            (h.cluster_id, h.member_id, h.raft_term),
            (CLUSTER_ID, MEMBER_ID, TERM)
        );
        assert!(h.revision >= last.mod_revision);
    }

    // A bad create is answered, not fatal: created + canceled, id -1, etcd's reason.
    let empty_range = pb::WatchCreateRequest {
        key: b"b".to_vec(),
        range_end: b"a".to_vec(),
        ..Default::default()
    };
    w.create(empty_range);
    let r = w.next().await;
    assert!(r.created && r.canceled && r.watch_id == -1);
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty");
    let duplicate = pb::WatchCreateRequest {
        watch_id: 7,
        ..watch_key("z")
    };
    w.create(duplicate);
    let r = w.next().await;
    assert!(r.created && r.canceled && r.watch_id == -1);
    assert_eq!(
        r.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
}

#[tokio::test]
async fn history_compaction_cancel_and_progress_request() {
    let Fixture {
        mut kv,
        server,
        core,
    } = start(Limits::default(), DEFAULT_PROGRESS_NOTIFY_INTERVAL).await;
    for v in ["1", "2", "3", "4"] {
        put(&mut kv, "k", v).await; // revisions 2..=5
    }
    let mut w = RawWatch::open(&server, false).await.unwrap();
    let from_3 = pb::WatchCreateRequest {
        start_revision: 3,
        prev_kv: true,
        ..watch_key("k")
    };
    let id = w.created(from_3, 5).await;
    let mut events = Vec::new();
    while events.len() < 3 {
        let r = w.next().await;
        assert_eq!(r.watch_id, id);
        assert_eq!(r.header.unwrap().revision, 5);
        events.extend(summary(&r));
    }
    let ev = |prev: &str, rev| (PUT, "k".to_string(), prev.to_string(), rev);
    assert_eq!(events, [ev("1", 3), ev("2", 4), ev("3", 5)]);

    // Compacted start: created first, then the compaction and the end of the watcher.
    kv.compact(pb::CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .unwrap();
    let from_2 = pb::WatchCreateRequest {
        start_revision: 2,
        ..watch_key("k")
    };
    let compacted = w.created(from_2, 5).await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.canceled, r.compact_revision, r.events.len()),
        (compacted, true, 4, 0)
    );
    assert_eq!(r.header, Some(header(5)));
    assert_eq!(r.cancel_reason, "");
    // A negative start revision is refused as compacted.
    w.create(pb::WatchCreateRequest {
        start_revision: -1,
        ..watch_key("k")
    });
    let r = w.next().await;
    assert!(r.created && r.canceled && r.watch_id == -1);
    assert_eq!(
        r.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );

    // Progress for the whole stream: watch id -1, the current revision, no events.
    w.send(RequestUnion::ProgressRequest(pb::WatchProgressRequest {}));
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.events.len(), r.created, r.canceled),
        (-1, 0, false, false)
    );
    assert_eq!(r.header, Some(header(5)));

    // Cancel: a known id is answered, an unknown one is not.
    w.send(RequestUnion::CancelRequest(pb::WatchCancelRequest {
        watch_id: 99,
    }));
    w.send(RequestUnion::CancelRequest(pb::WatchCancelRequest {
        watch_id: id,
    }));
    let r = w.next().await;
    assert_eq!((r.watch_id, r.canceled, r.created), (id, true, false));
    assert_eq!(r.header, Some(header(5)));
    put(&mut kv, "k", "5").await;
    w.send(RequestUnion::ProgressRequest(pb::WatchProgressRequest {}));
    let r = w.next().await;
    // Nothing for the canceled watcher came before the progress notification.
    assert_eq!((r.watch_id, r.events.len()), (-1, 0));
    assert_eq!(r.header.unwrap().revision, 6);
    assert_eq!(core.store().current_revision(), 6);
}

#[tokio::test]
async fn progress_notify_reaches_idle_watchers_only() {
    let Fixture {
        mut kv,
        server,
        core: _core,
    } = start(Limits::default(), Duration::from_millis(100)).await;
    let mut w = RawWatch::open(&server, false).await.unwrap();
    let notified = pb::WatchCreateRequest {
        progress_notify: true,
        ..watch_key("k")
    };
    let id = w.created(notified, 1).await;
    let silent = w.created(watch_key("k"), 1).await;
    // The next message is a notification for the watcher that asked, nothing else.
    let r = w.next().await;
    assert_eq!((r.watch_id, r.events.len(), r.canceled), (id, 0, false));
    assert_eq!(r.header, Some(header(1)));
    put(&mut kv, "k", "v").await;
    let mut got_events = HashSet::new();
    let mut notification_after_event = false;
    while !(got_events.len() == 2 && notification_after_event) {
        let r = w.next().await;
        if r.events.is_empty() {
            assert_eq!(r.watch_id, id, "only the watcher that asked is notified");
            // A tick may beat the put; once the event is out, progress covers it.
            let revision = r.header.unwrap().revision;
            if got_events.contains(&id) {
                assert_eq!(revision, 2);
                notification_after_event = true;
            } else {
                assert_eq!(revision, 1);
            }
        } else {
            assert!(got_events.insert(r.watch_id));
        }
    }
    assert!(got_events.contains(&silent));
}

#[tokio::test]
async fn large_responses_are_fragmented_on_request() {
    let limits = Limits {
        max_request_bytes: 64 * 1024,
        ..Limits::default()
    };
    let Fixture { core, server, .. } = start(limits, DEFAULT_PROGRESS_NOTIFY_INTERVAL).await;
    let prefix = |fragment| pb::WatchCreateRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        fragment,
        ..Default::default()
    };
    let mut raw = RawWatch::open(&server, false).await.unwrap();
    let split = raw.created(prefix(true), 1).await;
    let whole = raw.created(prefix(false), 1).await;
    let client = client::Client::connect(&[server.endpoint()], Default::default())
        .await
        .unwrap();
    let mut joined = client
        .watch(
            b"big/".to_vec(),
            client::WatchOptions {
                range_end: b"big0".to_vec(),
                fragment: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // One revision of 12 x 60 KB: more than the 576 KiB a message may have.
    core.apply_direct(|txn| {
        for i in 0..12 {
            txn.put(mvcc::PutRequest::new(
                format!("big/{i:02}"),
                vec![b'v'; 60_000],
            ))
            .unwrap();
        }
    });
    assert_eq!(core.store().current_revision(), 2);
    let limit = 64 * 1024 + GRPC_OVERHEAD_BYTES;
    let mut pieces = Vec::new();
    let mut unsplit = None;
    while unsplit.is_none() || pieces.last().is_none_or(|p: &pb::WatchResponse| p.fragment) {
        let r = raw.next().await;
        if r.watch_id == split {
            pieces.push(r);
        } else {
            assert_eq!(r.watch_id, whole);
            unsplit = Some(r);
        }
    }
    let unsplit = unsplit.unwrap();
    assert_eq!(unsplit.events.len(), 12);
    assert!(!unsplit.fragment && unsplit.encoded_len() > limit);
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.encoded_len() < limit));
    let events: Vec<_> = pieces.iter().flat_map(|p| p.events.clone()).collect();
    assert_eq!(events, unsplit.events);

    let r = timeout(WAIT, joined.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!r.fragment);
    assert_eq!(r.events, unsplit.events);
}

#[tokio::test]
async fn has_leader_metadata_needs_a_leader() {
    let Fixture { core, server, .. } =
        start(Limits::default(), DEFAULT_PROGRESS_NOTIFY_INTERVAL).await;
    core.set_leader(false);
    let refused = RawWatch::open(&server, true).await.err().unwrap();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
    // Without the metadata the member serves watches regardless.
    let mut w = RawWatch::open(&server, false).await.unwrap();
    w.created(watch_key("k"), 1).await;
    core.set_leader(true);
    let mut w = RawWatch::open(&server, true).await.unwrap();
    w.created(watch_key("k"), 1).await;
}

#[tokio::test]
async fn has_leader_streams_end_when_the_leader_is_lost() {
    let core = DirectCore::new(Limits::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = WatchService::new(core.clone(), DEFAULT_PROGRESS_NOTIFY_INTERVAL)
        .with_election_timeout(Duration::from_millis(50));
    let incoming = futures::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(incoming),
    );
    let endpoint = format!("http://{addr}");
    let open = |has_leader: bool| {
        let endpoint = endpoint.clone();
        async move {
            let mut client = WatchClient::connect(endpoint).await.unwrap();
            let (tx, rx) = mpsc::unbounded_channel::<pb::WatchRequest>();
            let mut request =
                Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
            if has_leader {
                request
                    .metadata_mut()
                    .insert("hasleader", "true".parse().unwrap());
            }
            let stream = client.watch(request).await.unwrap().into_inner();
            tx.send(pb::WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(watch_key("k"))),
            })
            .unwrap();
            (tx, stream)
        }
    };
    let (_keep_needy, mut needy) = open(true).await;
    let (_keep_patient, mut patient) = open(false).await;
    for stream in [&mut needy, &mut patient] {
        let created = timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(created.created);
    }
    core.set_leader(false);
    let end = timeout(WAIT, needy.message()).await.unwrap().unwrap_err();
    assert_eq!(
        (end.code(), end.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
    // The stream without the metadata stays: a write still reaches it.
    core.apply_direct(|txn| txn.put(mvcc::PutRequest::new("k", "v")))
        .unwrap();
    let r = timeout(WAIT, patient.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.events.len(), 1);
    server.abort();
}
