//! Fault-injection scenarios: a proxied cluster, recorded traffic, faults injected and recovered in
//! cycles while the traffic runs, then every checker over the history once the cluster healed.
//!
//! A scenario is seeded: the seed picks the traffic's requests, the proxy's connection resets and
//! which member each fault hits. Timing is not reproducible (real processes), so a seed replays the
//! same plan, not the same interleaving.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use client::api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, MemberAddRequest, MemberListRequest, MemberRemoveRequest,
    StatusRequest,
};
use client::{Client, ClientOptions};
use rand::Rng as _;
use testkit::Rng;

use crate::check::{self, Options, Report};
use crate::traffic::{self, Clock, TrafficSpec};
use crate::{Cluster, ClusterSpec, Delay, Link, ServerBinary};

/// Which member a fault hits, chosen when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    /// A member other than the leader, picked by the seed.
    Follower,
}

/// One kind of fault; a scenario injects its faults together in every cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// SIGKILL, then restart with the same data dir.
    Kill(Target),
    /// SIGSTOP, then SIGCONT.
    Pause(Target),
    /// Every peer link and the client link of the member blocked, then healed.
    Isolate(Target),
    /// The leader and (in 5 members) one follower cut off from the majority, both ways.
    PartitionLeaderInMinority,
    /// The leader's traffic to one follower lost, the way back intact.
    BlackholeLeaderToFollower,
    /// Latency on every peer link.
    DelayPeers { latency: Duration, jitter: Duration },
    /// A share of peer connections reset, open ones and new ones.
    DropPeerConnections(f64),
    /// A follower removed, its data wiped, added back fresh under the same name and URLs.
    ReplaceFollower,
    /// Compaction to a recent revision and a defragment of every member.
    CompactAndDefragment,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub members: usize,
    pub faults: Vec<Fault>,
    /// How long traffic runs; fault cycles repeat within it.
    pub traffic: Duration,
    /// Healthy time before each injection.
    pub settle: Duration,
    /// How long each injection lasts before recovery.
    pub hold: Duration,
    pub seed: u64,
}

impl Scenario {
    /// A scenario with the short tier's timing: 12 s of traffic, faults held 2.5 s after 1.5 s of calm.
    pub fn short(name: &str, members: usize, faults: &[Fault]) -> Scenario {
        Scenario {
            name: name.to_string(),
            members,
            faults: faults.to_vec(),
            traffic: Duration::from_secs(12),
            settle: Duration::from_millis(1500),
            hold: Duration::from_millis(2500),
            seed: seed_for(name),
        }
    }

    /// The same plan with the soak tier's timing: a minute of traffic, longer holds.
    pub fn soak(name: &str, members: usize, faults: &[Fault]) -> Scenario {
        Scenario {
            traffic: Duration::from_secs(60),
            settle: Duration::from_secs(2),
            hold: Duration::from_secs(4),
            ..Scenario::short(name, members, faults)
        }
    }
}

/// The seed of a scenario: `$ETCD_RS_SEED` if set (to replay a failure), else derived from its name.
fn seed_for(name: &str) -> u64 {
    if let Some(seed) = std::env::var("ETCD_RS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    // FNV-1a: stable across runs and toolchains, unlike the std hasher.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a scenario run found.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: String,
    pub server: String,
    pub members: usize,
    pub seed: u64,
    pub operations: usize,
    pub watch_events: usize,
    /// Watch streams opened, and how many of them their watcher closed to reopen at a random revision.
    pub watch_streams: usize,
    pub rewound_streams: usize,
    pub cycles: usize,
    pub report: Report,
    /// Keys still attached to a lease long after every lease of the run must have expired.
    pub lease_keys_left: Vec<String>,
}

impl Outcome {
    /// Violations of every checker, plus one per key an expired lease left behind.
    pub fn violation_count(&self) -> usize {
        self.report.violation_count() + self.lease_keys_left.len()
    }

    /// One row of the scenario table: scenario, server, members, operations, watch events, cycles,
    /// violations, inconclusive checks.
    pub fn table_row(&self) -> String {
        let inconclusive: usize = self
            .report
            .checkers
            .iter()
            .map(|c| c.inconclusive.len())
            .sum();
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.server,
            self.members,
            self.operations,
            self.watch_events,
            self.cycles,
            self.violation_count(),
            inconclusive
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} on {} ({} members, seed {}): {} operations, {} watch events on {} streams \
             ({} rewound), {} fault cycles",
            self.scenario,
            self.server,
            self.members,
            self.seed,
            self.operations,
            self.watch_events,
            self.watch_streams,
            self.rewound_streams,
            self.cycles
        )?;
        if !self.lease_keys_left.is_empty() {
            writeln!(
                f,
                "keys left by leases that must have expired: {:?}",
                self.lease_keys_left
            )?;
        }
        write!(f, "{}", self.report)
    }
}

/// Bound on every wait for the cluster to recover after a fault.
const RECOVERY: Duration = Duration::from_secs(60);

/// Runs `scenario` on a proxied cluster of `server` and checks the history. Panics with the member
/// logs (the cluster's drop prints them) if the cluster cannot be started or does not recover;
/// violations are in the returned report. Needs a multi-threaded tokio runtime.
pub async fn run(server: ServerBinary, scenario: &Scenario) -> Outcome {
    let label = server_label(&server);
    let trust_progress_notifications = server != ServerBinary::real_etcd();
    let mut cluster = blocking(|| {
        Cluster::start(ClusterSpec {
            size: scenario.members,
            server,
            proxied: true,
            proxy_seed: scenario.seed,
            ..ClusterSpec::default()
        })
    })
    .unwrap_or_else(|e| panic!("start the cluster: {e}"));
    let urls = cluster.client_urls();
    let spec = TrafficSpec {
        seed: scenario.seed,
        kv_clients: scenario.members.max(4) as u32,
        prefix: format!("/{}/", scenario.name),
        ..TrafficSpec::default()
    };
    let admin = Client::connect(&urls, ClientOptions::default())
        .await
        .unwrap_or_else(|e| panic!("admin client: {e}"));

    let clock = Clock::start();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let traffic = {
        let urls = urls.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            traffic::run(clock, &urls, &spec, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    let mut rng = Rng::new(scenario.seed);
    let deadline = tokio::time::Instant::now() + scenario.traffic;
    let mut cycles = 0;
    while tokio::time::Instant::now() + scenario.settle + scenario.hold <= deadline {
        tokio::time::sleep(scenario.settle).await;
        let mut injected = Vec::new();
        for fault in &scenario.faults {
            injected.push(inject(&mut cluster, &admin, *fault, &mut rng).await);
        }
        tokio::time::sleep(scenario.hold).await;
        for done in injected.into_iter().rev() {
            recover(&mut cluster, done);
        }
        blocking(|| cluster.wait_all_healthy(RECOVERY))
            .unwrap_or_else(|e| panic!("{}: no recovery after cycle {cycles}: {e}", scenario.name));
        cycles += 1;
    }
    tokio::time::sleep_until(deadline).await;
    let _ = stop.send(());
    let mut history = traffic
        .await
        .expect("the traffic task")
        .unwrap_or_else(|e| panic!("traffic: {e}"));
    blocking(|| cluster.wait_all_healthy(RECOVERY)).unwrap_or_else(|e| panic!("recovery: {e}"));
    traffic::final_state(clock, &urls, &spec, &mut history, RECOVERY)
        .await
        .unwrap_or_else(|e| panic!("final state: {e}"));

    let options = Options {
        final_read_client: Some(spec.final_state_client()),
        // Debian's etcd 3.4 announces progress past events it still owes (etcd-io/etcd#15220), and
        // drops a delete at the compaction revision from a watch opened there (etcd-io/etcd#18089).
        trust_progress_notifications,
        tombstone_at_start_may_be_dropped: !trust_progress_notifications,
        ..Options::default()
    };
    let report = blocking(|| check::check_with(&history, None, options));
    let lease_keys_left = keys_left_after_leases_expire(&admin, &spec).await;
    let outcome = Outcome {
        scenario: scenario.name.clone(),
        server: label,
        members: scenario.members,
        seed: scenario.seed,
        operations: history.operations.len(),
        watch_events: history
            .watches
            .iter()
            .flat_map(|w| &w.responses)
            .map(|r| r.events.len())
            .sum(),
        watch_streams: history.watches.len(),
        rewound_streams: history
            .watches
            .iter()
            .filter(|w| w.ended.as_deref() == Some(traffic::REWOUND))
            .count(),
        cycles,
        report,
        lease_keys_left,
    };
    record_row(&outcome);
    outcome
}

/// The traffic grants leases of at most 5 s and nobody renews them once it stopped: within this
/// bound every one has expired and its keys are gone, however the leader changed before.
const LEASES_EXPIRED_WITHIN: Duration = Duration::from_secs(30);

/// Waits until no lease key of the run exists (linearizable reads); returns those still there after
/// [`LEASES_EXPIRED_WITHIN`]: the check that expired leases leave no keys, which the history alone
/// cannot make (an expiry is no request).
async fn keys_left_after_leases_expire(admin: &Client, spec: &TrafficSpec) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + LEASES_EXPIRED_WITHIN;
    let mut left = spec.lease_keys();
    loop {
        let mut still = Vec::new();
        for key in left {
            // An unanswered read proves nothing either way: ask again next round.
            if !matches!(admin.get(key.as_bytes()).await, Ok(None)) {
                still.push(key);
            }
        }
        left = still;
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Appends the outcome's table row to `$ETCD_RS_SCENARIO_TABLE`, if set, so a run of many scenarios
/// leaves its table behind.
fn record_row(outcome: &Outcome) {
    let Some(path) = std::env::var_os("ETCD_RS_SCENARIO_TABLE") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", outcome.table_row()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot append to the scenario table");
    }
}

fn server_label(server: &ServerBinary) -> String {
    if *server == ServerBinary::real_etcd() {
        "etcd 3.4".into()
    } else {
        "etcd-rs".into()
    }
}

/// What an injection did, so that recovery can undo it.
enum Injected {
    Killed(usize),
    Paused(usize),
    Network,
    /// Replaced members recover by joining, which the injection already started.
    Replaced,
    Nothing,
}

async fn inject(cluster: &mut Cluster, admin: &Client, fault: Fault, rng: &mut Rng) -> Injected {
    let n = cluster.size();
    let leader = blocking(|| cluster.wait_for_leader(RECOVERY))
        .unwrap_or_else(|e| panic!("no leader before injecting {fault:?}: {e}"));
    let follower = (leader + rng.random_range(1..n)) % n;
    let pick = |target: Target| match target {
        Target::Leader => leader,
        Target::Follower => follower,
    };
    let done = |r: crate::Result<()>| r.unwrap_or_else(|e| panic!("inject {fault:?}: {e}"));
    tracing::info!(?fault, leader, follower, "inject");
    match fault {
        Fault::Kill(target) => {
            let i = pick(target);
            done(blocking(|| cluster.kill(i)));
            Injected::Killed(i)
        }
        Fault::Pause(target) => {
            let i = pick(target);
            done(blocking(|| cluster.pause(i)));
            Injected::Paused(i)
        }
        Fault::Isolate(target) => {
            done(cluster.isolate(pick(target)));
            Injected::Network
        }
        Fault::PartitionLeaderInMinority => {
            let minority: Vec<usize> = if n >= 5 {
                vec![leader, follower]
            } else {
                vec![leader]
            };
            let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
            done(cluster.partition(&[&minority, &majority]));
            Injected::Network
        }
        Fault::BlackholeLeaderToFollower => {
            done(cluster.blackhole(Link::Peer {
                from: leader,
                to: follower,
            }));
            Injected::Network
        }
        Fault::DelayPeers { latency, jitter } => {
            for i in 0..n {
                done(cluster.delay(Link::Peers(i), Delay { latency, jitter }));
            }
            Injected::Network
        }
        Fault::DropPeerConnections(share) => {
            for i in 0..n {
                done(cluster.drop_connections(Link::Peers(i), share));
            }
            Injected::Network
        }
        Fault::ReplaceFollower => {
            replace(cluster, admin, follower).await;
            Injected::Replaced
        }
        Fault::CompactAndDefragment => {
            compact_and_defragment(cluster, admin).await;
            Injected::Nothing
        }
    }
}

fn recover(cluster: &mut Cluster, injected: Injected) {
    let done = |r: crate::Result<()>| r.unwrap_or_else(|e| panic!("recover: {e}"));
    match injected {
        Injected::Killed(i) => done(blocking(|| cluster.restart(i))),
        Injected::Paused(i) => done(blocking(|| cluster.resume(i))),
        Injected::Network => done(cluster.heal()),
        Injected::Replaced | Injected::Nothing => {}
    }
}

/// Removes member `i`, wipes its data dir and adds it back fresh (a replaced machine), while the
/// traffic runs. Membership calls are retried: etcd refuses them while the cluster is unsettled.
async fn replace(cluster: &mut Cluster, admin: &Client, i: usize) {
    let name = cluster.name(i).to_string();
    let id = retry(&format!("find {name}"), || async {
        let members = admin.member_list(MemberListRequest::default()).await?;
        Ok(members
            .members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.id))
    })
    .await;
    retry(&format!("remove {name}"), || async {
        admin
            .member_remove(MemberRemoveRequest { id })
            .await
            .map(|_| Some(()))
    })
    .await;
    blocking(|| {
        cluster.retire(i)?;
        cluster.wipe(i)
    })
    .unwrap_or_else(|e| panic!("retire and wipe {name}: {e}"));
    let peer_url = cluster.peer_url(i).to_string();
    retry(&format!("add {name} back"), || async {
        admin
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url.clone()],
                is_learner: false,
            })
            .await
            .map(|_| Some(()))
    })
    .await;
    let everyone: Vec<usize> = (0..cluster.size()).collect();
    blocking(|| cluster.join(i, &everyone)).unwrap_or_else(|e| panic!("{name} joins: {e}"));
}

async fn compact_and_defragment(cluster: &Cluster, admin: &Client) {
    let status = retry("status", || async {
        admin.status(StatusRequest::default()).await.map(Some)
    })
    .await;
    let revision = status.header.map_or(0, |h| h.revision);
    if revision > 20 {
        // An error (e.g. already compacted past it) is fine: the point is compaction under traffic.
        let _ = admin
            .compact(CompactionRequest {
                revision: revision - 10,
                physical: true,
            })
            .await;
    }
    for url in cluster.client_urls() {
        if let Ok(member) = admin.for_endpoint(&url) {
            let _ = member.defragment(DefragmentRequest {}).await;
        }
    }
}

/// Calls `f` until it answers `Some`, at most [`RECOVERY`]; panics naming `what` otherwise.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = client::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let last = match f().await {
            Ok(Some(v)) => return v,
            Ok(None) => "not there yet".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not done within {RECOVERY:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}
