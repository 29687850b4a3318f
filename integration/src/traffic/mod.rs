//! Traffic against a real cluster, recorded for the checkers: concurrent clients issuing one request at a
//! time (puts, linearizable and serializable gets, deletes, compare-and-swap txns, and lease grant,
//! keep-alive, revoke with keys attached), and watchers streaming every change under the run's prefix,
//! reopening on another member whenever a stream breaks.
//!
//! ```no_run
//! # async fn example(urls: Vec<String>) -> Result<(), integration::traffic::TrafficError> {
//! use std::time::Duration;
//! use integration::traffic::{self, Clock, TrafficSpec};
//!
//! let spec = TrafficSpec::default();
//! let clock = Clock::start();
//! let mut history = traffic::run(clock, &urls, &spec, tokio::time::sleep(Duration::from_secs(5))).await?;
//! // ... heal the faults ...
//! traffic::final_state(clock, &urls, &spec, &mut history, Duration::from_secs(30)).await?;
//! println!("{}", traffic::summary(&history));
//! # Ok(()) }
//! ```
//!
//! How an error becomes an [`Outcome`] (see `outcome_of_error`): `Failed` only for answers that prove the
//! request had no effect, `Unknown` for everything else. Every request is bounded by
//! [`TrafficSpec::request_timeout`] plus a margin, so a paused or partitioned member cannot hold a client.

mod clients;
mod watchers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::api::etcdserverpb::{RangeRequest, RangeResponse};
use client::{Client, ClientOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::history::{History, KeyValue, Nanos, Operation, Outcome, Request, Response};

/// How often each kind of KV request is chosen, relative to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub put: u32,
    pub get: u32,
    pub serializable_get: u32,
    pub delete: u32,
    pub compare_and_swap: u32,
}

/// The kinds of KV request a [`Mix`] weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KvKind {
    Put,
    Get,
    SerializableGet,
    Delete,
    CompareAndSwap,
}

impl Mix {
    fn weights(&self) -> [(KvKind, u32); 5] {
        [
            (KvKind::Put, self.put),
            (KvKind::Get, self.get),
            (KvKind::SerializableGet, self.serializable_get),
            (KvKind::Delete, self.delete),
            (KvKind::CompareAndSwap, self.compare_and_swap),
        ]
    }
}

impl Default for Mix {
    /// Close to etcd's robustness `EtcdPutDeleteLease` traffic, without lists and multi-op txns.
    fn default() -> Self {
        Mix {
            put: 35,
            get: 25,
            serializable_get: 15,
            delete: 10,
            compare_and_swap: 15,
        }
    }
}

/// What a run does. Client ids are `0..kv_clients` for KV clients, then `lease_clients` lease clients,
/// then [`TrafficSpec::final_state_client`] for the reads of [`final_state`]; watcher ids are separate.
#[derive(Debug, Clone)]
pub struct TrafficSpec {
    /// Every choice a client or watcher makes comes from an RNG seeded with this and its id.
    pub seed: u64,
    pub kv_clients: u32,
    pub lease_clients: u32,
    pub watchers: u32,
    /// KV clients pick among `<prefix>kv/0 .. <prefix>kv/<key_count - 1>`.
    pub key_count: u32,
    /// Every key the run writes is under this prefix (lease clients write `<prefix>lease/<client>/<n>`),
    /// and watchers watch all of it. Written values (`<client>-<n>`) are unique within a run: a second
    /// run on the same cluster needs another prefix.
    pub prefix: String,
    pub mix: Mix,
    /// The client's budget for one request, its retries on other members included; a request still
    /// unanswered a second later is given up as `Unknown`.
    pub request_timeout: Duration,
    /// Each client sleeps a random time up to this between requests, which keeps histories small enough to
    /// check.
    pub max_pause: Duration,
    /// A watch stream silent for this long is taken as broken and reopened on the next member. Progress
    /// is requested four times per period, so a healthy stream is never silent that long.
    pub watch_silence_timeout: Duration,
    /// After the stop signal, how long watchers may take to reach the cluster's last revision.
    pub drain_timeout: Duration,
    /// TLS for https endpoints: `cluster.client_options().tls` for a cluster with client TLS.
    pub tls: client::TlsOptions,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            seed: 1,
            kv_clients: 4,
            lease_clients: 1,
            watchers: 2,
            key_count: 8,
            prefix: "/traffic/".to_string(),
            mix: Mix::default(),
            request_timeout: Duration::from_secs(3),
            max_pause: Duration::from_millis(40),
            watch_silence_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(15),
            tls: client::TlsOptions::default(),
        }
    }
}

/// Keys each lease client writes (with its current lease).
const LEASE_KEYS_PER_CLIENT: u32 = 3;

/// How long past `request_timeout` a request may run before the traffic gives up on it itself.
const GIVE_UP_MARGIN: Duration = Duration::from_secs(1);

impl TrafficSpec {
    /// The id [`final_state`] records its reads under.
    pub fn final_state_client(&self) -> u32 {
        self.kv_clients + self.lease_clients
    }

    /// The keys KV clients use.
    pub fn kv_keys(&self) -> Vec<String> {
        (0..self.key_count).map(|k| self.kv_key(k)).collect()
    }

    /// The keys lease clients put with their leases.
    pub fn lease_keys(&self) -> Vec<String> {
        (self.kv_clients..self.final_state_client())
            .flat_map(|client| (0..LEASE_KEYS_PER_CLIENT).map(move |k| (client, k)))
            .map(|(client, k)| self.lease_key(client, k))
            .collect()
    }

    fn kv_key(&self, k: u32) -> String {
        format!("{}kv/{k}", self.prefix)
    }

    fn lease_key(&self, client: u32, k: u32) -> String {
        format!("{}lease/{client}/{k}", self.prefix)
    }

    fn validate(&self) -> Result<(), TrafficError> {
        let invalid = |reason: &str| Err(TrafficError::InvalidSpec(reason.to_string()));
        let weights = self.mix.weights().map(|(_, weight)| weight);
        if self.kv_clients > 0 && weights.iter().all(|&w| w == 0) {
            return invalid("every mix weight is 0");
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() > u64::from(u32::MAX) {
            return invalid("mix weights add up to more than u32::MAX");
        }
        if self.key_count == 0 {
            return invalid("key_count is 0");
        }
        if self.prefix.is_empty() {
            return invalid("empty prefix (the run would watch and read every key)");
        }
        if self.request_timeout.is_zero() || self.watch_silence_timeout.is_zero() {
            return invalid("zero request_timeout or watch_silence_timeout");
        }
        Ok(())
    }
}

/// The run's clock: every time in a [`History`] is nanoseconds since [`Clock::start`]. Give the same clock
/// to [`run`] and [`final_state`] (and use it to timestamp faults).
#[derive(Debug, Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    pub fn now(&self) -> Nanos {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("invalid traffic spec: {0}")]
    InvalidSpec(String),
    #[error("client endpoints {endpoints:?}: {source}")]
    Endpoints {
        endpoints: Vec<String>,
        #[source]
        source: client::Error,
    },
    #[error("a traffic task failed: {0}")]
    Task(String),
    #[error("final state: {key} not readable within {timeout:?}; last error: {last_error}")]
    FinalStateUnreadable {
        key: String,
        timeout: Duration,
        last_error: String,
    },
}

/// `WatchRecord::ended` of a stream its watcher closed to reopen at a random revision.
pub const REWOUND: &str = "closed to reopen at a random revision";

/// Where the run is: clients stop when it leaves `Running`; watchers keep going until `Draining` says
/// which revision they must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Draining { revision: i64, deadline: Instant },
}

/// What every task of a run shares.
struct Shared {
    spec: TrafficSpec,
    endpoints: Vec<String>,
    /// One lazily connected channel per member, for watch streams and single-attempt calls.
    channels: Vec<Channel>,
    clock: Clock,
    /// The highest header revision any answer carried; watchers opened late start near it.
    latest_revision: AtomicI64,
}

impl Shared {
    fn new(clock: Clock, endpoints: &[String], spec: &TrafficSpec) -> Result<Shared, TrafficError> {
        let bad_endpoints = |source| TrafficError::Endpoints {
            endpoints: endpoints.to_vec(),
            source,
        };
        if endpoints.is_empty() {
            return Err(bad_endpoints(client::Error::InvalidArgument(
                "no endpoints given".into(),
            )));
        }
        let mut urls = Vec::new();
        let mut channels = Vec::new();
        for endpoint in endpoints {
            let url = client::normalize_endpoint(endpoint).map_err(bad_endpoints)?;
            let channel = Endpoint::from_shared(url.clone())
                .map_err(|e| {
                    bad_endpoints(client::Error::InvalidEndpoint {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    })
                })?
                .connect_timeout(dial_timeout(spec))
                .tcp_nodelay(true)
                .connect_lazy();
            urls.push(url);
            channels.push(channel);
        }
        Ok(Shared {
            spec: spec.clone(),
            endpoints: urls,
            channels,
            clock,
            latest_revision: AtomicI64::new(0),
        })
    }

    fn saw_revision(&self, revision: i64) {
        self.latest_revision.fetch_max(revision, Ordering::Relaxed);
    }

    /// The cluster's current revision by a linearizable read, retried until `deadline`; `fallback` (the
    /// highest revision seen) if no member answers.
    async fn cluster_revision(&self, deadline: Instant) -> i64 {
        let fallback = self.latest_revision.load(Ordering::Relaxed);
        let Ok(mut reader) = Reader::new(&self.endpoints, &self.spec).await else {
            return fallback;
        };
        while Instant::now() < deadline {
            if let Ok(response) = reader.range(&self.spec.prefix, true, deadline).await {
                if let Some(header) = response.header {
                    return header.revision.max(fallback);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fallback
    }
}

/// Linearizable reads for the end of a run, one member at a time: a read that fails or times out is
/// tried again on the next member (the multi-endpoint client stays with a member that times out).
struct Reader {
    clients: Vec<Client>,
    current: usize,
}

impl Reader {
    async fn new(endpoints: &[String], spec: &TrafficSpec) -> Result<Reader, client::Error> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            clients.push(Client::connect(&[endpoint], client_options(spec)).await?);
        }
        if clients.is_empty() {
            return Err(client::Error::InvalidArgument("no endpoints given".into()));
        }
        Ok(Reader {
            clients,
            current: 0,
        })
    }

    /// One attempt at reading `key` (with `count_only`, just the revision) before `deadline`.
    async fn range(
        &mut self,
        key: &str,
        count_only: bool,
        deadline: Instant,
    ) -> Result<RangeResponse, String> {
        let read = self.clients[self.current].range(RangeRequest {
            key: key.as_bytes().to_vec(),
            count_only,
            ..Default::default()
        });
        let result = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(response)) if response.header.is_some() => Ok(response),
            Ok(Ok(_)) => Err("an answer without a response header".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer before the deadline".to_string()),
        };
        if result.is_err() {
            self.current = (self.current + 1) % self.clients.len();
        }
        result
    }
}

fn dial_timeout(spec: &TrafficSpec) -> Duration {
    (spec.request_timeout / 2).min(Duration::from_secs(2))
}

fn client_options(spec: &TrafficSpec) -> ClientOptions {
    ClientOptions {
        dial_timeout: dial_timeout(spec),
        request_timeout: spec.request_timeout,
        tls: spec.tls.clone(),
        ..ClientOptions::default()
    }
}

/// Runs the traffic described by `spec` against the members at `endpoints` until `stop` completes, then
/// lets every watcher catch up with the cluster's last revision (within `spec.drain_timeout`) and returns
/// what was recorded, operations ordered by invoke time and watch streams by watcher and opening time.
///
/// KV client `k` (and watcher `k`) starts on member `k % n` and moves to the next member after a
/// request whose fate is unknown (or a broken stream). Dropping the returned future stops every task.
pub async fn run(
    clock: Clock,
    endpoints: &[String],
    spec: &TrafficSpec,
    stop: impl Future<Output = ()>,
) -> Result<History, TrafficError> {
    spec.validate()?;
    let shared = Arc::new(Shared::new(clock, endpoints, spec)?);
    let (phase_tx, phase) = watch::channel(Phase::Running);
    let mut clients = JoinSet::new();
    for id in 0..spec.kv_clients {
        clients.spawn(clients::kv_client(Arc::clone(&shared), id, phase.clone()));
    }
    for id in spec.kv_clients..spec.final_state_client() {
        clients.spawn(clients::lease_client(
            Arc::clone(&shared),
            id,
            phase.clone(),
        ));
    }
    let mut watchers = JoinSet::new();
    for id in 0..spec.watchers {
        watchers.spawn(watchers::watcher(Arc::clone(&shared), id, phase.clone()));
    }
    tracing::info!(
        kv_clients = spec.kv_clients,
        lease_clients = spec.lease_clients,
        watchers = spec.watchers,
        seed = spec.seed,
        "traffic started"
    );
    stop.await;
    phase_tx.send_replace(Phase::Stopping);
    let mut operations = Vec::new();
    while let Some(joined) = clients.join_next().await {
        operations.extend(joined.map_err(|e| TrafficError::Task(e.to_string()))??);
    }
    let deadline = Instant::now() + spec.drain_timeout;
    let revision = shared.cluster_revision(deadline).await;
    tracing::info!(revision, "traffic stopped; watchers catch up");
    phase_tx.send_replace(Phase::Draining { revision, deadline });
    let mut watches = Vec::new();
    while let Some(joined) = watchers.join_next().await {
        watches.extend(joined.map_err(|e| TrafficError::Task(e.to_string()))?);
    }
    operations.sort_by_key(|op: &Operation| (op.invoke, op.client));
    watches.sort_by_key(|w| (w.watcher, w.opened));
    Ok(History {
        operations,
        watches,
    })
}

/// Reads every key of the run ([`TrafficSpec::kv_keys`] and [`TrafficSpec::lease_keys`]) with a
/// linearizable get and appends each answer to `history` as an operation of
/// [`TrafficSpec::final_state_client`], so the checkers can tell whether any acknowledged write was lost.
/// Call it after the faults have healed; each key is retried until `timeout` (for all keys together)
/// runs out. Only answered reads are recorded.
pub async fn final_state(
    clock: Clock,
    endpoints: &[String],
    spec: &TrafficSpec,
    history: &mut History,
    timeout: Duration,
) -> Result<(), TrafficError> {
    spec.validate()?;
    let mut reader =
        Reader::new(endpoints, spec)
            .await
            .map_err(|source| TrafficError::Endpoints {
                endpoints: endpoints.to_vec(),
                source,
            })?;
    let deadline = Instant::now() + timeout;
    let id = spec.final_state_client();
    for key in spec.kv_keys().into_iter().chain(spec.lease_keys()) {
        loop {
            let invoke = clock.now();
            let error = match reader.range(&key, false, deadline).await {
                Ok(response) => {
                    let revision = response.header.map_or(0, |h| h.revision);
                    history.operations.push(Operation {
                        client: id,
                        request: Request::Get {
                            key: key.clone(),
                            serializable: false,
                        },
                        invoke,
                        complete: clock.now(),
                        outcome: Outcome::Ok(Response::Get {
                            revision,
                            kv: response.kvs.first().map(key_value),
                        }),
                    });
                    break;
                }
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                return Err(TrafficError::FinalStateUnreadable {
                    key,
                    timeout,
                    last_error: error,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Counts of operations by kind and outcome, and of watch streams, responses and events, one line each.
pub fn summary(history: &History) -> String {
    let mut counts: BTreeMap<&'static str, [usize; 3]> = BTreeMap::new();
    for op in &history.operations {
        let column = match op.outcome {
            Outcome::Ok(_) => 0,
            Outcome::Failed(_) => 1,
            Outcome::Unknown(_) => 2,
        };
        let kind = match op.outcome {
            Outcome::Ok(Response::CompareAndSwap {
                succeeded: false, ..
            }) => "cas (not swapped)",
            _ => request_kind(&op.request),
        };
        counts.entry(kind).or_default()[column] += 1;
    }
    let mut out = format!("operations: {}\n", history.operations.len());
    for (kind, [ok, failed, unknown]) in &counts {
        let _ = writeln!(
            out,
            "  {kind:<17} ok {ok:>5}  failed {failed:>4}  unknown {unknown:>4}"
        );
    }
    let responses: usize = history.watches.iter().map(|w| w.responses.len()).sum();
    let events: usize = history
        .watches
        .iter()
        .flat_map(|w| &w.responses)
        .map(|r| r.events.len())
        .sum();
    let progress = history
        .watches
        .iter()
        .flat_map(|w| &w.responses)
        .filter(|r| r.progress_notify)
        .count();
    let broken = history.watches.iter().filter(|w| w.ended.is_some()).count();
    let _ = writeln!(
        out,
        "watch streams: {} ({broken} ended early), responses {responses} ({progress} progress), events {events}",
        history.watches.len()
    );
    out
}

/// The name [`summary`] counts a request under: `put`, `put-with-lease`, `get`, `serializable-get`,
/// `delete`, `cas`, `lease-grant`, `lease-revoke` or `lease-keepalive`.
pub fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Put { lease: 0, .. } => "put",
        Request::Put { .. } => "put-with-lease",
        Request::Get {
            serializable: false,
            ..
        } => "get",
        Request::Get { .. } => "serializable-get",
        Request::Delete { .. } => "delete",
        Request::CompareAndSwap { .. } => "cas",
        Request::LeaseGrant { .. } => "lease-grant",
        Request::LeaseRevoke { .. } => "lease-revoke",
        Request::LeaseKeepAliveOnce { .. } => "lease-keepalive",
    }
}

fn key_value(kv: &client::api::mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// The server's messages for refusals that prove a request had no effect.
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// How a request that got `error` ended, given how `clients` sends each kind of request.
///
/// `Failed`, because the request certainly changed nothing:
/// - `requested lease not found` on a put or a revoke: the applier checks the lease and changes nothing
///   when it is missing. It proves nothing about an earlier attempt, so it counts only for requests sent
///   once: puts (the client re-sends a write only when it never reached a server) and revokes (sent
///   without the client's retries, see `clients`).
/// - `too many requests`: refused before the request is proposed to raft.
/// - `InvalidArgument` and `OutOfRange`: validation (request too large, a compacted or future revision)
///   fails before anything is proposed, and re-sending the same request fails the same way.
///
/// `Unknown`, because it may have taken effect, even later: timeouts, lost connections, every
/// `Unavailable` (`leader changed`, `request timed out`, `no leader`, `server stopped`), and anything not
/// listed above.
fn outcome_of_error(request: &Request, error: &client::Error) -> Outcome {
    let message = error.to_string();
    let definite = match error {
        client::Error::Status { code, message } => {
            let sent_once = matches!(request, Request::Put { .. } | Request::LeaseRevoke { .. });
            (message == LEASE_NOT_FOUND && sent_once)
                || message == TOO_MANY_REQUESTS
                || matches!(code, tonic::Code::InvalidArgument | tonic::Code::OutOfRange)
        }
        // Refused by the client before anything was sent.
        client::Error::InvalidArgument(_) => true,
        _ => false,
    };
    if definite {
        Outcome::Failed(message)
    } else {
        Outcome::Unknown(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> client::Error {
        client::Error::from(tonic::Status::new(code, message))
    }

    #[test]
    fn lease_not_found_is_definite_only_for_requests_sent_once() {
        let not_found = status(tonic::Code::NotFound, LEASE_NOT_FOUND);
        let put = Request::Put {
            key: "k".into(),
            value: "v".into(),
            lease: 7,
        };
        assert_eq!(
            outcome_of_error(&put, &not_found),
            Outcome::Failed(LEASE_NOT_FOUND.into())
        );
        let revoke = Request::LeaseRevoke { id: 7 };
        assert!(matches!(
            outcome_of_error(&revoke, &not_found),
            Outcome::Failed(_)
        ));
        // Keep-alive goes through the client's retries: an earlier attempt may have renewed it.
        let keep_alive = Request::LeaseKeepAliveOnce { id: 7 };
        assert!(matches!(
            outcome_of_error(&keep_alive, &not_found),
            Outcome::Unknown(_)
        ));
    }

    #[test]
    fn unavailable_and_timeouts_are_unknown() {
        let put = Request::Put {
            key: "k".into(),
            value: "v".into(),
            lease: 0,
        };
        for error in [
            status(tonic::Code::Unavailable, "etcdserver: leader changed"),
            status(tonic::Code::Unavailable, "etcdserver: request timed out"),
            status(tonic::Code::Unknown, "etcdserver: some new error"),
            client::Error::DeadlineExceeded,
            client::Error::Transport {
                message: "connection reset".into(),
                never_sent: false,
            },
        ] {
            assert!(
                matches!(outcome_of_error(&put, &error), Outcome::Unknown(_)),
                "{error}"
            );
        }
        let too_large = status(
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large",
        );
        assert!(matches!(
            outcome_of_error(&put, &too_large),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn specs_that_cannot_run_are_refused() {
        let spec = TrafficSpec {
            mix: Mix {
                put: 0,
                get: 0,
                serializable_get: 0,
                delete: 0,
                compare_and_swap: 0,
            },
            ..TrafficSpec::default()
        };
        assert!(matches!(spec.validate(), Err(TrafficError::InvalidSpec(_))));
        let spec = TrafficSpec {
            prefix: String::new(),
            ..TrafficSpec::default()
        };
        assert!(spec.validate().is_err());
        assert!(TrafficSpec::default().validate().is_ok());
    }

    #[test]
    fn keys_are_under_the_prefix_and_lease_keys_per_lease_client() {
        let spec = TrafficSpec::default();
        assert_eq!(spec.kv_keys().len(), 8);
        assert_eq!(spec.kv_keys()[3], "/traffic/kv/3");
        assert_eq!(
            spec.lease_keys(),
            [
                "/traffic/lease/4/0",
                "/traffic/lease/4/1",
                "/traffic/lease/4/2"
            ]
        );
        assert_eq!(spec.final_state_client(), 5);
    }
}
