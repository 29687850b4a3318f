//! Our `client` crate against Debian's real etcd 3.4 and against our `etcd` (`server_tests!`): every
//! service, the retry and failover policy, watch resumption across a member's death, lease keep-alive,
//! auth token refresh, and the lock and election recipes.

use std::collections::BTreeSet;
use std::time::Duration;

use client::api::etcdserverpb::compare::CompareResult;
use client::api::etcdserverpb::range_request::{SortOrder, SortTarget};
use client::api::etcdserverpb::*;
use client::api::mvccpb::event::EventType;
use client::concurrency::{Election, Mutex, Session};
use client::{prefix_range_end, txn, Client, ClientOptions, WatchOptions};
use integration::{server_tests, Cluster, ClusterSpec, ServerBinary};

const WAIT: Duration = Duration::from_secs(20);

server_tests! {
    async fn kv_range_options_txn_and_compaction_behave_as_etcd;
    async fn watch_resumes_on_another_member_without_gaps_or_repeats;
    async fn watch_resumes_across_a_server_restart;
    async fn watch_from_a_compacted_revision_is_canceled_with_the_compact_revision;
    async fn many_watches_share_one_stream_and_progress_requests_answer;
    async fn lease_keep_alive_keeps_a_key_past_its_ttl_and_revoke_deletes_it;
    async fn a_key_on_an_unrenewed_lease_expires;
    async fn requests_fail_over_when_a_member_dies;
    async fn maintenance_status_hashkv_alarm_defrag_and_snapshot;
    // Needs the permission checks of the KV service (issue 13's auth-enforce part): an anonymous
    // get must fail with "user name is empty".
    async fn auth_token_is_sent_and_refreshed_when_the_auth_store_changes;
    async fn mutex_admits_one_holder_at_a_time_in_arrival_order;
    async fn election_leadership_passes_when_the_leader_resigns;
    async fn server_side_lock_and_election_services;
}

async fn connect(endpoints: &[String]) -> Client {
    Client::connect(endpoints, ClientOptions::default())
        .await
        .expect("connect")
}

fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn prefix(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: prefix_range_end(key.as_bytes()),
        ..Default::default()
    }
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

async fn kv_range_options_txn_and_compaction_behave_as_etcd(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;

    for (k, v) in [("a/1", "z"), ("a/2", "y"), ("a/3", "x"), ("b", "w")] {
        c.put_kv(k, v).await.unwrap();
    }
    let all_a = c.range(prefix("a/")).await.unwrap();
    assert_eq!(keys(&all_a), ["a/1", "a/2", "a/3"]);
    assert_eq!(all_a.count, 3);

    let limited = c
        .range(RangeRequest {
            limit: 2,
            ..prefix("a/")
        })
        .await
        .unwrap();
    assert_eq!(keys(&limited), ["a/1", "a/2"]);
    assert!(limited.more);
    assert_eq!(limited.count, 3);

    let by_value_desc = c
        .range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            ..prefix("a/")
        })
        .await
        .unwrap();
    assert_eq!(keys(&by_value_desc), ["a/1", "a/2", "a/3"]);

    let counted = c
        .range(RangeRequest {
            count_only: true,
            ..prefix("a/")
        })
        .await
        .unwrap();
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, 3);

    let keys_only = c
        .range(RangeRequest {
            keys_only: true,
            ..range("b")
        })
        .await
        .unwrap();
    assert!(keys_only.kvs[0].value.is_empty());

    let first_rev = all_a.kvs[0].mod_revision;
    let newer = c
        .range(RangeRequest {
            min_mod_revision: first_rev + 1,
            ..prefix("a/")
        })
        .await
        .unwrap();
    assert_eq!(keys(&newer), ["a/2", "a/3"]);

    // Put with prev_kv, then a historical read at the old revision.
    let put = c
        .put(PutRequest {
            key: b"b".to_vec(),
            value: b"v2".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(put.prev_kv.unwrap().value, b"w");
    let old = c
        .range(RangeRequest {
            revision: put.header.as_ref().unwrap().revision - 1,
            ..range("b")
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b"w");

    // Errors keep etcd's messages.
    let missing = c
        .put(PutRequest {
            key: b"nosuch".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "etcdserver: key not found");
    let empty = c.put_kv("", "x").await.unwrap_err();
    assert_eq!(empty.to_string(), "etcdserver: key is not provided");
    let current = put.header.as_ref().unwrap().revision;
    let future = c
        .range(RangeRequest {
            revision: current + 100,
            ..range("b")
        })
        .await
        .unwrap_err();
    assert_eq!(
        future.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );

    // Txn: compare, then success or failure branch.
    let txn_request = |expected: &str| TxnRequest {
        compare: vec![txn::value("b", CompareResult::Equal, expected)],
        success: vec![txn::put(PutRequest {
            key: b"t".to_vec(),
            value: b"ok".to_vec(),
            ..Default::default()
        })],
        failure: vec![txn::range(range("b"))],
    };
    let hit = c.txn(txn_request("v2")).await.unwrap();
    assert!(hit.succeeded);
    assert_eq!(c.get("t").await.unwrap().unwrap().value, b"ok");
    let miss = c.txn(txn_request("nope")).await.unwrap();
    assert!(!miss.succeeded);
    match &miss.responses[0].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"v2"),
        other => panic!("expected a range response, got {other:?}"),
    }

    // Delete a prefix with prev_kv.
    let deleted = c
        .delete_range(DeleteRangeRequest {
            key: b"a/".to_vec(),
            range_end: prefix_range_end(b"a/"),
            prev_kv: true,
        })
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 3);
    assert_eq!(deleted.prev_kvs.len(), 3);

    // Compaction: reads below it are refused with etcd's message.
    let latest = deleted.header.unwrap().revision;
    c.compact(CompactionRequest {
        revision: latest,
        physical: true,
    })
    .await
    .unwrap();
    let compacted = c
        .range(RangeRequest {
            revision: latest - 1,
            ..range("b")
        })
        .await
        .unwrap_err();
    assert_eq!(
        compacted.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

/// Waits (bounded) for a watch to be created: against a server that never answers, creation retries
/// for ever.
async fn created(
    watch: impl std::future::Future<Output = client::Result<client::WatchStream>>,
) -> client::WatchStream {
    tokio::time::timeout(WAIT, watch)
        .await
        .expect("the watch is created in time")
        .expect("create the watch")
}

/// A follower's index, and every client URL with that follower's first.
fn follower_first(cluster: &Cluster) -> (usize, Vec<String>) {
    let leader = cluster.wait_for_leader(WAIT).expect("a leader");
    let victim = (leader + 1) % cluster.size();
    let mut urls = vec![cluster.client_url(victim).to_string()];
    urls.extend(
        (0..cluster.size())
            .filter(|&i| i != victim)
            .map(|i| cluster.client_url(i).to_string()),
    );
    (victim, urls)
}

/// Collects PUT keys from `stream` until `expected` of them arrived.
async fn collect_puts(stream: &mut client::WatchStream, expected: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < expected {
        let response = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("watch stalled")
            .expect("watch ended")
            .expect("watch failed");
        for event in response.events {
            assert_eq!(event.r#type, EventType::Put as i32);
            seen.push(String::from_utf8_lossy(&event.kv.unwrap().key).into_owned());
        }
    }
    seen
}

async fn watch_resumes_on_another_member_without_gaps_or_repeats(server: ServerBinary) {
    let mut cluster = Cluster::start(ClusterSpec {
        size: 3,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    // The watcher dials a follower first; the writer never talks to that follower. Killing a
    // follower keeps every write unambiguous (a write in flight to a dying leader may or may
    // not commit, which would make the expected event list uncertain).
    let (victim, urls) = follower_first(&cluster);
    let watcher = connect(&urls).await;
    let writer = connect(&urls[1..]).await;

    let mut stream = created(watcher.watch(
        "w/",
        WatchOptions {
            range_end: prefix_range_end(b"w/"),
            ..Default::default()
        },
    ))
    .await;
    for i in 0..5 {
        writer.put_kv(format!("w/{i:02}"), "v").await.unwrap();
    }
    let mut seen = collect_puts(&mut stream, 5).await;

    cluster.kill(victim).expect("kill the watched member");
    for i in 5..10 {
        writer.put_kv(format!("w/{i:02}"), "v").await.unwrap();
    }
    seen.extend(collect_puts(&mut stream, 5).await);

    cluster.restart(victim).expect("restart the killed member");
    cluster
        .wait_healthy(victim, WAIT)
        .expect("the killed member rejoins");
    for i in 10..12 {
        writer.put_kv(format!("w/{i:02}"), "v").await.unwrap();
    }
    seen.extend(collect_puts(&mut stream, 2).await);

    let expected: Vec<String> = (0..12).map(|i| format!("w/{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "events in order, none missed, none repeated"
    );
}

async fn watch_resumes_across_a_server_restart(server: ServerBinary) {
    let mut cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    let mut stream = created(c.watch(
        "r/",
        WatchOptions {
            range_end: prefix_range_end(b"r/"),
            ..Default::default()
        },
    ))
    .await;
    c.put_kv("r/1", "v").await.unwrap();
    c.put_kv("r/2", "v").await.unwrap();
    let mut seen = collect_puts(&mut stream, 2).await;

    cluster.kill(0).expect("kill the server");
    cluster.restart(0).expect("restart the server");
    cluster.wait_healthy(0, WAIT).expect("server back");
    c.put_kv("r/3", "v").await.unwrap();
    seen.extend(collect_puts(&mut stream, 1).await);
    assert_eq!(
        seen,
        ["r/1", "r/2", "r/3"],
        "nothing missed, nothing repeated"
    );
}

async fn watch_from_a_compacted_revision_is_canceled_with_the_compact_revision(
    server: ServerBinary,
) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    c.put_kv("k", "1").await.unwrap();
    let rev = c.put_kv("k", "2").await.unwrap().header.unwrap().revision;
    c.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let mut stream = created(c.watch(
        "k",
        WatchOptions {
            start_revision: rev - 1,
            ..Default::default()
        },
    ))
    .await;
    let error = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    match error {
        client::Error::WatchCanceled {
            compact_revision, ..
        } => assert_eq!(compact_revision, rev),
        other => panic!("expected a compacted watch, got {other:?}"),
    }
}

async fn many_watches_share_one_stream_and_progress_requests_answer(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    let watcher = c.watcher();
    let mut streams = Vec::new();
    for i in 0..20 {
        streams.push(created(watcher.watch(format!("m/{i}"), WatchOptions::default())).await);
    }
    let ids: BTreeSet<i64> = streams.iter().map(|s| s.watch_id()).collect();
    assert_eq!(
        ids.len(),
        20,
        "each watch has its own id on the shared stream"
    );
    for i in 0..20 {
        c.put_kv(format!("m/{i}"), "v").await.unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_eq!(collect_puts(stream, 1).await, [format!("m/{i}")]);
    }
    let revision = c
        .put_kv("other", "x")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    watcher.request_progress();
    let progress = tokio::time::timeout(WAIT, streams[0].message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(progress.events.is_empty());
    assert!(progress.header.unwrap().revision >= revision);
}

async fn lease_keep_alive_keeps_a_key_past_its_ttl_and_revoke_deletes_it(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    let lease = c
        .lease_grant(LeaseGrantRequest { ttl: 2, id: 0 })
        .await
        .unwrap();
    c.put(PutRequest {
        key: b"kept".to_vec(),
        lease: lease.id,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut keep_alive = c.keep_alive(lease.id);
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let renewal = keep_alive.next().await.unwrap().unwrap();
        assert_eq!(renewal.id, lease.id);
        assert!(renewal.ttl > 0);
    }
    assert!(
        c.get("kept").await.unwrap().is_some(),
        "kept alive past 2 x TTL"
    );
    let ttl = c
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease.id,
            keys: true,
        })
        .await
        .unwrap();
    assert_eq!(ttl.keys, [b"kept".to_vec()]);
    let listed = c.lease_leases(LeaseLeasesRequest {}).await.unwrap();
    assert!(listed.leases.iter().any(|l| l.id == lease.id));

    c.lease_revoke(LeaseRevokeRequest { id: lease.id })
        .await
        .unwrap();
    assert!(
        c.get("kept").await.unwrap().is_none(),
        "revoke deletes attached keys"
    );
    let gone = keep_alive.next().await.unwrap();
    assert!(matches!(gone, Err(client::Error::LeaseExpired(_))));
    let after = c
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease.id,
            keys: false,
        })
        .await
        .unwrap();
    assert_eq!(after.ttl, -1);
}

async fn a_key_on_an_unrenewed_lease_expires(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    let lease = c
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .unwrap();
    c.put(PutRequest {
        key: b"ephemeral".to_vec(),
        lease: lease.id,
        ..Default::default()
    })
    .await
    .unwrap();
    testkit::eventually_async(WAIT, "the lease to expire", || async {
        c.get("ephemeral").await.unwrap().is_none()
    })
    .await;
}

async fn requests_fail_over_when_a_member_dies(server: ServerBinary) {
    let mut cluster = Cluster::start(ClusterSpec {
        size: 3,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let (victim, urls) = follower_first(&cluster);
    let c = connect(&urls).await;
    c.put_kv("before", "1").await.unwrap();
    cluster
        .kill(victim)
        .expect("kill the member the client uses");
    // A read retries on the next endpoint; a write too, since it never reached the dead one.
    assert_eq!(c.get("before").await.unwrap().unwrap().value, b"1");
    c.put_kv("after", "2").await.unwrap();
    let members = c.member_list(MemberListRequest::default()).await.unwrap();
    assert_eq!(members.members.len(), 3);
}

async fn maintenance_status_hashkv_alarm_defrag_and_snapshot(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 3,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let urls = cluster.client_urls();
    let c = connect(&urls).await;
    for i in 0..10 {
        c.put_kv(format!("h/{i}"), "v").await.unwrap();
    }
    let revision = c.get("h/9").await.unwrap().unwrap().mod_revision;
    let mut leaders = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for url in &urls {
        let member = c.for_endpoint(url).unwrap();
        let status = member.status(StatusRequest {}).await.unwrap();
        assert!(status.version.starts_with("3."));
        leaders.insert(status.leader);
        let hash = member.hash_kv(HashKvRequest { revision }).await.unwrap();
        hashes.insert(hash.hash);
        member.defragment(DefragmentRequest {}).await.unwrap();
    }
    assert_eq!(leaders.len(), 1, "every member agrees on the leader");
    assert_eq!(hashes.len(), 1, "every member has the same data");
    let alarms = c.alarm(AlarmRequest::default()).await.unwrap();
    assert!(alarms.alarms.is_empty());

    // etcd's framing: database chunks whose remaining_bytes count down to 0, then one message of the
    // database's 32-byte SHA-256 (what `etcdctl snapshot restore` checks).
    let mut chunks = c.snapshot().await.unwrap();
    let mut messages = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        messages.push((chunk.blob.len() as u64, chunk.remaining_bytes));
    }
    let (sha, data) = messages.split_last().expect("at least one message");
    assert_eq!(*sha, (32, 0), "the SHA-256 message");
    let (first_len, first_remaining) = data.first().expect("database chunks");
    let database: u64 = data.iter().map(|(len, _)| len).sum();
    assert_eq!(database, first_len + first_remaining);
    assert_eq!(data.last().unwrap().1, 0);
}

async fn auth_token_is_sent_and_refreshed_when_the_auth_store_changes(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let urls = cluster.client_urls();
    let admin = connect(&urls).await;
    admin
        .user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "rootpw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let not_root = admin.auth_enable(AuthEnableRequest {}).await.unwrap_err();
    assert_eq!(
        not_root.to_string(),
        "etcdserver: root user does not have root role"
    );
    admin
        .role_add(AuthRoleAddRequest {
            name: "root".into(),
        })
        .await
        .unwrap();
    admin
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .unwrap();
    admin.auth_enable(AuthEnableRequest {}).await.unwrap();

    let anonymous = connect(&urls).await;
    assert_eq!(
        anonymous.get("x").await.unwrap_err().to_string(),
        "etcdserver: user name is empty"
    );
    let root = Client::connect(
        &urls,
        ClientOptions {
            credentials: Some(("root".into(), "rootpw".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    root.put_kv("x", "1").await.unwrap();
    // Adding a user bumps the auth revision: the old token is refused and must be renewed.
    root.user_add(AuthUserAddRequest {
        name: "other".into(),
        password: "pw".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(root.get("x").await.unwrap().unwrap().value, b"1");
    let wrong = Client::connect(
        &urls,
        ClientOptions {
            credentials: Some(("root".into(), "bad".into())),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("wrong password refused");
    assert_eq!(
        wrong.to_string(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
}

async fn mutex_admits_one_holder_at_a_time_in_arrival_order(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let urls = cluster.client_urls();
    let first_client = connect(&urls).await;
    let second_client = connect(&urls).await;
    let first_session = Session::new(&first_client, 10).await.unwrap();
    let second_session = Session::new(&second_client, 10).await.unwrap();

    let held = Mutex::lock(&first_session, "mtx").await.unwrap();
    assert!(String::from_utf8_lossy(held.key()).starts_with("mtx/"));
    let waiter = tokio::spawn(async move {
        let lock = Mutex::lock(&second_session, "mtx").await.unwrap();
        (lock, second_session)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "second locker waits while the first holds"
    );
    held.unlock(&first_client).await.unwrap();
    let (second, second_session) = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert!(second.revision() > 0);
    second.unlock(&second_client).await.unwrap();
    second_session.close().await.unwrap();
    first_session.close().await.unwrap();
}

async fn election_leadership_passes_when_the_leader_resigns(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let urls = cluster.client_urls();
    let a_client = connect(&urls).await;
    let b_client = connect(&urls).await;
    let a_session = Session::new(&a_client, 10).await.unwrap();
    let b_session = Session::new(&b_client, 10).await.unwrap();

    let mut a = Election::new("elect");
    a.campaign(&a_session, "a").await.unwrap();
    assert_eq!(a.leader(&a_client).await.unwrap().value, b"a");

    let b_task = tokio::spawn(async move {
        let mut b = Election::new("elect");
        b.campaign(&b_session, "b").await.unwrap();
        (b, b_session)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b_task.is_finished(), "b waits while a leads");
    a.proclaim(&a_client, "a2").await.unwrap();
    assert_eq!(a.leader(&a_client).await.unwrap().value, b"a2");
    a.resign(&a_client).await.unwrap();
    let (b, _b_session) = tokio::time::timeout(WAIT, b_task).await.unwrap().unwrap();
    assert_eq!(b.leader(&b_client).await.unwrap().value, b"b");
    let stale = a.proclaim(&a_client, "again").await.unwrap_err();
    assert_eq!(
        stale.to_string(),
        "rpc error: code = Unknown desc = election: not leader"
    );
}

async fn server_side_lock_and_election_services(server: ServerBinary) {
    let cluster = Cluster::start(ClusterSpec {
        size: 1,
        server,
        ..ClusterSpec::default()
    })
    .expect("cluster");
    let c = connect(&cluster.client_urls()).await;
    let lease = c
        .lease_grant(LeaseGrantRequest { ttl: 10, id: 0 })
        .await
        .unwrap();
    let locked = c
        .lock(client::api::v3lockpb::LockRequest {
            name: b"svc-lock".to_vec(),
            lease: lease.id,
        })
        .await
        .unwrap();
    assert_eq!(locked.key, format!("svc-lock/{:x}", lease.id).into_bytes());
    c.unlock(client::api::v3lockpb::UnlockRequest { key: locked.key })
        .await
        .unwrap();

    use client::api::v3electionpb::*;
    let campaign = c
        .campaign(CampaignRequest {
            name: b"svc-elect".to_vec(),
            lease: lease.id,
            value: b"me".to_vec(),
        })
        .await
        .unwrap();
    let leader = c
        .leader(LeaderRequest {
            name: b"svc-elect".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(leader.kv.unwrap().value, b"me");
    let mut observed = c.observe("svc-elect").await.unwrap();
    let first = observed.message().await.unwrap().unwrap();
    assert_eq!(first.kv.unwrap().value, b"me");
    c.resign(ResignRequest {
        leader: campaign.leader,
    })
    .await
    .unwrap();
    let none = c
        .leader(LeaderRequest {
            name: b"svc-elect".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        none.to_string(),
        "rpc error: code = Unknown desc = election: no leader"
    );

    // Lease 0: the server grants a session lease of 60 s for the lock and for the candidacy, and
    // names it in the key; nobody keeps it alive.
    let session_lease = |key: &[u8], prefix: &str| {
        let key = String::from_utf8(key.to_vec()).unwrap();
        let hex = key.strip_prefix(prefix).unwrap_or_else(|| panic!("{key}"));
        i64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    let locked = c
        .lock(client::api::v3lockpb::LockRequest {
            name: b"svc-lock0".to_vec(),
            lease: 0,
        })
        .await
        .unwrap();
    let lock_lease = session_lease(&locked.key, "svc-lock0/");
    let campaign = c
        .campaign(CampaignRequest {
            name: b"svc-elect0".to_vec(),
            lease: 0,
            value: b"v".to_vec(),
        })
        .await
        .unwrap();
    let leader_key = campaign.leader.unwrap();
    let campaign_lease = session_lease(&leader_key.key, "svc-elect0/");
    assert_eq!(leader_key.lease, campaign_lease);
    assert_ne!(lock_lease, campaign_lease);
    for (id, key) in [(lock_lease, locked.key), (campaign_lease, leader_key.key)] {
        let ttl = c
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
            .unwrap();
        assert_eq!(ttl.granted_ttl, 60);
        assert!((1..=60).contains(&ttl.ttl), "{ttl:?}");
        assert_eq!(ttl.keys, vec![key]);
    }
}
