//! Network faults injected by the harness's proxies (`ClusterSpec { proxied: true, .. }`) on real
//! 3-member clusters: the leader isolated, a one-way blackhole between a follower and the leader in each
//! direction, and latency on every peer link. Each runs against etcd 3.4 and against our `etcd`.

use crate::common;

use std::time::{Duration, Instant};

use client::{Client, ClientOptions};
use common::*;
use integration::{
    real_etcdctl, server_tests, Cluster, ClusterSpec, Delay, Error, Link, ServerBinary,
};
use testkit::{eventually_async, poll_async};

/// How long a one-way fault stays in force: several election timeouts (the harness sets 500 ms).
const FAULT_HOLDS: Duration = Duration::from_secs(2);

fn start_proxied(server: ServerBinary) -> Cluster {
    start_proxied_with(server, 3)
}

fn start_proxied_with(server: ServerBinary, size: usize) -> Cluster {
    let spec = ClusterSpec {
        size,
        server,
        proxied: true,
        proxy_seed: 42,
        ..ClusterSpec::default()
    };
    Cluster::start(spec).unwrap_or_else(|e| panic!("start a proxied {size}-member cluster: {e}"))
}

/// A client that gives up on a request after 3 s instead of the default 5 s.
async fn impatient(url: &str) -> Client {
    client_with_timeout(&[url], Duration::from_secs(3)).await
}

async fn client_with_timeout<S: AsRef<str>>(urls: &[S], request_timeout: Duration) -> Client {
    let options = ClientOptions {
        request_timeout,
        ..ClientOptions::default()
    };
    Client::connect(urls, options).await.expect("connect")
}

/// Puts `key` = `key` until a put is acknowledged, within [`WAIT`]: right after a fault or a heal,
/// members may not know the leader yet. Repeating the same put is harmless to what the tests check.
async fn put_eventually(client: &Client, key: &str) {
    poll_async(WAIT, || async {
        let put = client.put_kv(key, key).await;
        if let Err(e) = &put {
            tracing::debug!(key, error = %e, "put failed; retrying");
        }
        put
    })
    .await
    .unwrap_or_else(|e| panic!("put {key} not acknowledged within {WAIT:?}: {e}"));
}

/// Every key under `net/`, by a linearizable range through member `i`, retried within [`WAIT`]; but
/// those of writes that failed (`net/lost/`), which may be applied at any time.
async fn keys_on(cluster: &Cluster, i: usize) -> Vec<String> {
    let client = connect_to(cluster, i).await;
    let response = poll_async(WAIT, || async {
        let range = client::api::etcdserverpb::RangeRequest {
            key: b"net/".to_vec(),
            range_end: client::prefix_range_end(b"net/"),
            ..Default::default()
        };
        let response = client.range(range).await;
        if let Err(e) = &response {
            tracing::debug!(member = i, error = %e, "range failed; retrying");
        }
        response
    })
    .await
    .unwrap_or_else(|e| panic!("range on {} failed for {WAIT:?}: {e}", cluster.name(i)));
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .filter(|key| !key.starts_with("net/lost/"))
        .collect()
}

/// The member among `candidates` that claims leadership on `/metrics`, once exactly one does.
async fn leader_among(cluster: &Cluster, candidates: &[usize]) -> usize {
    poll_async(WAIT, || async {
        let claims: Vec<usize> = blocking(|| {
            candidates
                .iter()
                .copied()
                .filter(|&i| {
                    cluster
                        .metrics(i)
                        .is_ok_and(|m| metric_sum(&m, "etcd_server_is_leader") == 1.0)
                })
                .collect()
        });
        match claims.as_slice() {
            [only] => Ok(*only),
            _ => Err(claims),
        }
    })
    .await
    .unwrap_or_else(|claims| {
        panic!("no single leader among {candidates:?} within {WAIT:?}: {claims:?} claim it")
    })
}

/// After a heal: one leader, every member healthy, a write accepted through every member, and every
/// member holding the same keys, `acked` among them. Returns the leader.
async fn converges(cluster: &mut Cluster, acked: &mut Vec<String>, round: &str) -> usize {
    let leader = blocking(|| cluster.wait_for_leader(WAIT))
        .unwrap_or_else(|e| panic!("{round}: a leader after the heal: {e}"));
    blocking(|| cluster.wait_all_healthy(WAIT))
        .unwrap_or_else(|e| panic!("{round}: every member healthy after the heal: {e}"));
    for i in 0..cluster.size() {
        let key = format!("net/{round}/after-heal-via-{}", cluster.name(i));
        put_eventually(&connect_to(cluster, i).await, &key).await;
        acked.push(key);
    }
    acked.sort();
    let reference = keys_on(cluster, leader).await;
    for key in acked.iter() {
        assert!(
            reference.binary_search(key).is_ok(),
            "{round}: acknowledged {key} missing on the leader {}",
            cluster.name(leader)
        );
    }
    for i in 0..cluster.size() {
        assert_eq!(
            keys_on(cluster, i).await,
            reference,
            "{round}: {} disagrees with the leader {}",
            cluster.name(i),
            cluster.name(leader)
        );
    }
    leader
}

server_tests! {
    async fn an_isolated_leader_is_replaced_and_gets_every_write_after_the_heal;
    async fn one_way_blackholes_between_a_follower_and_the_leader_heal;
    async fn writes_succeed_with_50ms_on_every_peer_link;
    async fn peer_connections_reset_at_random_then_heal;
    async fn a_5_member_cluster_partitioned_with_the_leader_in_the_minority_heals;
    async fn a_member_added_at_runtime_is_proxied_and_can_be_isolated;
    fn network_faults_need_a_proxied_cluster;
}

/// The leader is cut off (peers and clients): the other two elect a leader and take writes; a write
/// sent to the isolated member fails, through its proxy and straight to its port; after the heal the
/// old leader is a follower holding every acknowledged write.
async fn an_isolated_leader_is_replaced_and_gets_every_write_after_the_heal(server: ServerBinary) {
    let mut cluster = start_proxied(server);
    let old = blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
    let others: Vec<usize> = (0..cluster.size()).filter(|&i| i != old).collect();
    let to_others = connect(&[cluster.client_url(others[0]), cluster.client_url(others[1])]).await;
    let to_old_proxied = impatient(cluster.client_url(old)).await;
    let to_old_direct = impatient(cluster.direct_client_url(old)).await;
    let mut acked = vec!["net/before".to_string()];
    put_eventually(&to_others, "net/before").await;

    cluster.isolate(old).expect("isolate the leader");
    let started = Instant::now();
    let new = leader_among(&cluster, &others).await;
    eprintln!(
        "{} isolated: {} leads after {:?}",
        cluster.name(old),
        cluster.name(new),
        started.elapsed()
    );
    for n in 0..20 {
        let key = format!("net/isolated/{n:02}");
        put_eventually(&to_others, &key).await;
        acked.push(key);
    }
    let (proxied, direct) = tokio::join!(
        to_old_proxied.put_kv("net/lost/through-proxy", "x"),
        to_old_direct.put_kv("net/lost/direct", "x"),
    );
    assert!(
        proxied.is_err(),
        "a write through the isolated member's proxy succeeded: {proxied:?}"
    );
    assert!(
        direct.is_err(),
        "a write to the isolated member, which has no quorum, succeeded: {direct:?}"
    );

    cluster.heal().expect("heal");
    let leader = converges(&mut cluster, &mut acked, "isolated").await;
    assert_ne!(
        leader, old,
        "the old leader, behind the others' log, cannot lead again"
    );
    // A failed write's outcome is unknown, as etcd's robustness tests treat it: the request held by
    // the proxy reaches the member after the heal, like a retransmission, and may be applied then.
    assert_eq!(
        keys_on(&cluster, old).await,
        acked,
        "{} after the heal: every acknowledged write",
        cluster.name(old)
    );
}

/// A follower's traffic to the leader is lost for a while (the leader's to it flows), then healed; then
/// the leader's traffic to that follower. Writes go on through the other members during each fault, and
/// after each heal the cluster converges.
async fn one_way_blackholes_between_a_follower_and_the_leader_heal(server: ServerBinary) {
    let mut cluster = start_proxied(server);
    let mut acked = Vec::new();
    for round in ["follower-to-leader", "leader-to-follower"] {
        let leader = blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
        let follower = (leader + 1) % cluster.size();
        let bystander = (leader + 2) % cluster.size();
        let link = if round == "follower-to-leader" {
            Link::Peer {
                from: follower,
                to: leader,
            }
        } else {
            Link::Peer {
                from: leader,
                to: follower,
            }
        };
        cluster.blackhole(link).expect("blackhole");
        // Through the bystander first: the only member whose links are all intact.
        let client = connect(&urls_from(&cluster, bystander)).await;
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < FAULT_HOLDS {
            let key = format!("net/{round}/{n:03}");
            put_eventually(&client, &key).await;
            acked.push(key);
            n += 1;
        }
        eprintln!("{round}: {link:?} for {:?}, {n} writes", started.elapsed());
        cluster.heal().expect("heal");
        converges(&mut cluster, &mut acked, round).await;
    }
}

/// 50 ms (+ up to 10 ms of jitter) on every peer link: writes are acknowledged, each after at least the
/// round trip to a follower and back (100 ms), and every member has them.
async fn writes_succeed_with_50ms_on_every_peer_link(server: ServerBinary) {
    let mut cluster = start_proxied(server);
    let leader = blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
    let delay = Delay {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(10),
    };
    for i in 0..cluster.size() {
        cluster.delay(Link::Peers(i), delay).expect("delay");
    }
    let client = connect_to(&cluster, leader).await;
    let mut acked = Vec::new();
    let started = Instant::now();
    for n in 0..20 {
        let key = format!("net/delayed/{n:02}");
        put_eventually(&client, &key).await;
        acked.push(key);
    }
    let took = started.elapsed();
    eprintln!("20 sequential writes with {delay:?} on every peer link: {took:?}");
    assert!(
        took >= Duration::from_millis(20 * 100),
        "20 commits, each needing a follower's answer across two delayed links, took only {took:?}"
    );
    cluster.heal().expect("heal");
    converges(&mut cluster, &mut acked, "delayed").await;
}

/// Half of a member's peer connections reset, for each member in turn and twice for two of them (each
/// time every open one may go, and half of the reconnections with it), while writes go on; after the
/// heal the cluster converges.
async fn peer_connections_reset_at_random_then_heal(server: ServerBinary) {
    let mut cluster = start_proxied(server);
    blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
    // A proposal forwarded over a connection that is reset is lost, and its client waits out its
    // timeout before trying again: keep that wait short.
    let client = client_with_timeout(&cluster.client_urls(), Duration::from_secs(1)).await;
    let mut acked = Vec::new();
    for round in 0..5 {
        let started = Instant::now();
        // One call per round, so each connection rolls once per round it is concerned by.
        cluster
            .drop_connections(Link::Peers(round % cluster.size()), 0.5)
            .expect("drop connections");
        for n in 0..10 {
            let key = format!("net/resets/{round}/{n:02}");
            put_eventually(&client, &key).await;
            acked.push(key);
        }
        eprintln!("round {round}: 10 writes in {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.heal().expect("heal");
    converges(&mut cluster, &mut acked, "resets").await;
}

/// Five members split 2 | 3 with the leader on the minority side: the majority elects a leader of
/// its own and takes writes, a write through the minority fails, and after the heal all five hold every
/// acknowledged write.
async fn a_5_member_cluster_partitioned_with_the_leader_in_the_minority_heals(
    server: ServerBinary,
) {
    let mut cluster = start_proxied_with(server, 5);
    let old = blocking(|| cluster.wait_for_leader(WAIT)).expect("a leader");
    let minority = [old, (old + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    let to_majority = connect(
        &majority
            .iter()
            .map(|&i| cluster.client_url(i))
            .collect::<Vec<_>>(),
    )
    .await;
    let to_minority = impatient(cluster.client_url(minority[1])).await;
    let mut acked = Vec::new();

    cluster
        .partition(&[&minority, &majority])
        .expect("partition");
    let new = leader_among(&cluster, &majority).await;
    for n in 0..20 {
        let key = format!("net/majority/{n:02}");
        put_eventually(&to_majority, &key).await;
        acked.push(key);
    }
    let lost = to_minority.put_kv("net/lost/minority", "x").await;
    assert!(
        lost.is_err(),
        "a write through the minority succeeded: {lost:?}"
    );
    eprintln!(
        "{:?} | {majority:?}: {} leads the majority",
        minority,
        cluster.name(new)
    );
    cluster.heal().expect("heal");
    let leader = converges(&mut cluster, &mut acked, "minority").await;
    assert!(
        majority.contains(&leader),
        "{} led after the heal, without the majority's writes",
        cluster.name(leader)
    );
}

/// A fourth member added at runtime (MemberAdd with its proxy's peer URL, then joined) gets proxies
/// too, and the proxies tell its connections from the others': isolated, it loses its leader while
/// the other three take writes, and it catches up after the heal.
async fn a_member_added_at_runtime_is_proxied_and_can_be_isolated(server: ServerBinary) {
    let mut cluster = start_proxied(server);
    let client = connect(&cluster.client_urls()).await;
    put_eventually(&client, "net/before-add").await;
    let mut acked = vec!["net/before-add".to_string()];

    let new = cluster.add_member_slot().expect("a member slot");
    let peer_url = cluster.peer_url(new).to_string();
    let name = cluster.name(new).to_string();
    let endpoints = format!("--endpoints={}", urls_from(&cluster, 0)[..3].join(","));
    // etcd refuses MemberAdd ("unhealthy cluster") until every member has been connected for 5 s.
    poll_async(WAIT, || async {
        let added = blocking(|| {
            integration::Cli::new(real_etcdctl())
                .args([
                    endpoints.as_str(),
                    "member",
                    "add",
                    &name,
                    &format!("--peer-urls={peer_url}"),
                ])
                .run_ok()
        });
        if let Err(e) = &added {
            tracing::debug!(error = %e, "member add refused; retrying");
        }
        added
    })
    .await
    .unwrap_or_else(|e| panic!("etcdctl member add: {e}"));
    blocking(|| {
        cluster.join(new, &[0, 1, 2, new])?;
        cluster.wait_healthy(new, WAIT)
    })
    .expect("the new member joins");
    assert_ne!(cluster.client_url(new), cluster.direct_client_url(new));

    cluster.isolate(new).expect("isolate the new member");
    let has_leader = |cluster: &Cluster| {
        cluster
            .metrics(new)
            .map(|m| metric_sum(&m, "etcd_server_has_leader"))
    };
    eventually_async(
        WAIT,
        "the isolated new member to lose its leader",
        || async { blocking(|| has_leader(&cluster)).is_ok_and(|v| v == 0.0) },
    )
    .await;
    for n in 0..10 {
        let key = format!("net/new-isolated/{n:02}");
        put_eventually(&client, &key).await;
        acked.push(key);
    }
    assert_eq!(
        blocking(|| has_leader(&cluster)).expect("metrics"),
        0.0,
        "the isolated member found a leader"
    );
    cluster.heal().expect("heal");
    converges(&mut cluster, &mut acked, "new-member").await;
}

/// Fault methods on a cluster without proxies say so instead of doing nothing; bad arguments are
/// refused.
fn network_faults_need_a_proxied_cluster(server: ServerBinary) {
    let plain = start(server.clone(), 1);
    assert!(matches!(plain.isolate(0), Err(Error::NotProxied)));
    assert!(matches!(plain.heal(), Err(Error::NotProxied)));
    assert_eq!(plain.client_url(0), plain.direct_client_url(0));
    drop(plain);

    let cluster = Cluster::start(ClusterSpec {
        server,
        proxied: true,
        ..ClusterSpec::default()
    })
    .expect("a proxied 1-member cluster");
    assert_ne!(cluster.client_url(0), cluster.direct_client_url(0));
    assert!(matches!(
        cluster.blackhole(Link::Peer { from: 0, to: 0 }),
        Err(Error::InvalidFault(_))
    ));
    assert!(matches!(
        cluster.blackhole(Link::Client(1)),
        Err(Error::NoSuchMember { index: 1, .. })
    ));
    assert!(matches!(
        cluster.drop_connections(Link::Client(0), 1.5),
        Err(Error::InvalidFault(_))
    ));
    assert!(matches!(
        cluster.partition(&[&[0], &[0]]),
        Err(Error::InvalidFault(_))
    ));
}
