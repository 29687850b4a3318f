//! Recorded traffic on real 3-member clusters, healthy, with a member SIGKILLed and restarted, and with
//! a member SIGSTOPped longer than the request and watch-silence timeouts: the
//! history is complete and bounded in time, every acknowledged write reaches every watcher exactly once
//! at its revision (across resumed streams), and the final state keeps the last acknowledged writes.
//! Runs against etcd 3.4 and our `etcd`; prints a summary of each history. These facts are derived here
//! from the records directly, not through `integration::check`, so that the recorder and the checkers
//! do not vouch for each other.

use crate::common;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use client::api::etcdserverpb::CompactionRequest;
use common::*;
use integration::history::{
    EventKind, History, Nanos, Operation, Outcome, Request, Response, WatchRecord,
};
use integration::traffic::{self, Clock, TrafficSpec};
use integration::{server_tests, ServerBinary};

server_tests! {
    async fn healthy_cluster;
    async fn member_killed_and_restarted;
    async fn member_paused_and_resumed;
    async fn watch_from_compacted_revision;
}

const TRAFFIC: Duration = Duration::from_secs(5);
const FINAL_STATE_WITHIN: Duration = Duration::from_secs(30);

async fn healthy_cluster(server: ServerBinary) {
    let label = server.path().display().to_string();
    let cluster = start(server, 3);
    let urls = cluster.client_urls();
    let spec = TrafficSpec::default();
    let clock = Clock::start();
    let mut history = traffic::run(clock, &urls, &spec, tokio::time::sleep(TRAFFIC))
        .await
        .expect("traffic runs");
    traffic::final_state(clock, &urls, &spec, &mut history, FINAL_STATE_WITHIN)
        .await
        .expect("final state readable");
    println!("{label}, healthy:\n{}", traffic::summary(&history));

    assert!(
        history.operations.len() >= 100,
        "only {} operations in {TRAFFIC:?}",
        history.operations.len()
    );
    for kind in [
        "put",
        "get",
        "serializable-get",
        "delete",
        "cas",
        "lease-grant",
        "put-with-lease",
        "lease-keepalive",
        "lease-revoke",
    ] {
        assert!(
            history
                .operations
                .iter()
                .any(|op| traffic::request_kind(&op.request) == kind),
            "no {kind} in the history"
        );
    }
    check_times(&history, &spec);
    check_failures_are_lease_refusals(&history);
    let unknown = history
        .operations
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Unknown(_)))
        .collect::<Vec<_>>();
    assert!(
        unknown.len() * 100 <= history.operations.len(),
        "{} of {} operations unknown on a healthy cluster, e.g. {:?}",
        unknown.len(),
        history.operations.len(),
        unknown.first()
    );
    for watcher in 0..spec.watchers {
        assert!(
            records_of(&history, watcher)
                .iter()
                .flat_map(|r| &r.responses)
                .any(|r| r.progress_notify),
            "watcher {watcher} got no progress notification"
        );
    }
    // A healthy cluster breaks no stream, but a starved machine may stall one past the silence
    // timeout: then it must have resumed correctly.
    let resumed = check_resumes(&history, &spec);
    println!("watch streams resumed: {resumed}");
    check_watchers(&history, &spec);
    assert_eq!(
        check_final_state(&history, &spec),
        spec.kv_keys().len(),
        "a key had an operation in doubt"
    );
}

async fn member_killed_and_restarted(server: ServerBinary) {
    let label = server.path().display().to_string();
    let mut cluster = start(server, 3);
    let urls = cluster.client_urls();
    let spec = TrafficSpec::default();
    let clock = Clock::start();
    // Member 0 is where KV clients 0 and 3 and watcher 0 start.
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        blocking(|| cluster.kill(0)).expect("kill member 0");
        tokio::time::sleep(Duration::from_secs(2)).await;
        blocking(|| {
            cluster.restart(0)?;
            cluster.wait_healthy(0, WAIT)
        })
        .expect("member 0 restarts");
        clock.now()
    };
    let (history, healthy_at) = run_around_faults(clock, &urls, &spec, faults).await;
    println!(
        "{label}, member 0 killed and restarted:\n{}",
        traffic::summary(&history)
    );
    check_recovered(&history, &spec, healthy_at, 0, "killed");
}

async fn member_paused_and_resumed(server: ServerBinary) {
    let label = server.path().display().to_string();
    let mut cluster = start(server, 3);
    let urls = cluster.client_urls();
    let spec = TrafficSpec::default();
    let clock = Clock::start();
    // Member 1 is where KV client 1 and watcher 1 start. Paused, it keeps its connections open and
    // answers nothing: only the traffic's own timeouts get clients and watchers away from it.
    let paused_for = spec.request_timeout.max(spec.watch_silence_timeout) + Duration::from_secs(1);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        blocking(|| cluster.pause(1)).expect("pause member 1");
        tokio::time::sleep(paused_for).await;
        blocking(|| {
            cluster.resume(1)?;
            cluster.wait_healthy(1, WAIT)
        })
        .expect("member 1 resumes");
        clock.now()
    };
    let (history, healthy_at) = run_around_faults(clock, &urls, &spec, faults).await;
    println!(
        "{label}, member 1 paused {paused_for:?} and resumed:\n{}",
        traffic::summary(&history)
    );
    assert!(
        history
            .operations
            .iter()
            .any(|op| op.client == 1 && matches!(op.outcome, Outcome::Unknown(_))),
        "KV client 1 never timed out on the paused member"
    );
    check_recovered(&history, &spec, healthy_at, 1, "paused");
}

/// Watcher 0 opens at revision 1, below a compaction made before the run: the server cancels the
/// stream with the compacted revision, and the watcher resumes there and misses nothing after it.
async fn watch_from_compacted_revision(server: ServerBinary) {
    let cluster = start(server, 3);
    let urls = cluster.client_urls();
    let spec = TrafficSpec {
        watchers: 1,
        ..TrafficSpec::default()
    };
    let client = connect(&urls).await;
    let mut compacted = 0;
    for n in 0..5 {
        let put = client
            .put_kv(format!("{}kv/{n}", spec.prefix), "before the run")
            .await
            .expect("put");
        compacted = put.header.expect("a header").revision;
    }
    client
        .compact(CompactionRequest {
            revision: compacted,
            physical: true,
        })
        .await
        .expect("compact");
    let clock = Clock::start();
    let history = traffic::run(
        clock,
        &urls,
        &spec,
        tokio::time::sleep(Duration::from_secs(2)),
    )
    .await
    .expect("traffic runs");

    let records = records_of(&history, 0);
    assert!(
        records.len() >= 2,
        "the watcher did not reopen: {records:?}"
    );
    assert_eq!(records[0].start_revision, 1);
    let cancel = records[0]
        .responses
        .last()
        .expect("the first stream got an answer");
    assert!(
        cancel.canceled && cancel.compact_revision == compacted,
        "first stream ended with {cancel:?}, not a cancel at compacted revision {compacted}"
    );
    assert_eq!(
        records[1].start_revision, compacted,
        "first stream: {:?}",
        records[0]
    );
    assert!(
        check_resumes(&history, &spec) > 0,
        "no watch stream was resumed"
    );
    check_watchers(&history, &spec);
}

/// Runs the traffic while `faults` injects and heals faults; `faults` returns when the cluster is
/// healthy again, and the traffic stops five seconds later, so every client gets requests through the
/// healed cluster (two seconds were not always enough for etcd 3.4's paused member on a loaded
/// 2-core machine: a client's request to it was still being retried). Returns the history with the final state appended, and `faults`' result.
async fn run_around_faults(
    clock: Clock,
    urls: &[String],
    spec: &TrafficSpec,
    faults: impl Future<Output = Nanos>,
) -> (History, Nanos) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let traffic = traffic::run(clock, urls, spec, async {
        let _ = stopped.await;
    });
    let faults = async {
        let healthy_at = faults.await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = stop.send(());
        healthy_at
    };
    let (history, healthy_at) = tokio::join!(traffic, faults);
    let mut history = history.expect("traffic runs");
    traffic::final_state(clock, urls, spec, &mut history, FINAL_STATE_WITHIN)
        .await
        .expect("final state readable");
    (history, healthy_at)
}

/// What must hold after `member` was `fault` (killed, paused) and came back healthy at `healthy_at`:
/// every client got a request through afterwards, the stream of the watcher that started on it (watcher
/// `member`) ended and was resumed, and no write was lost to the watchers or the final state.
fn check_recovered(
    history: &History,
    spec: &TrafficSpec,
    healthy_at: Nanos,
    member: u32,
    fault: &str,
) {
    check_times(history, spec);
    check_failures_are_lease_refusals(history);
    for client in 0..spec.final_state_client() {
        assert!(
            history.operations.iter().any(|op| op.client == client
                && op.invoke > healthy_at
                && matches!(op.outcome, Outcome::Ok(_))),
            "client {client} had no successful request after member {member} came back"
        );
    }
    let first_stream = &records_of(history, member)[0];
    assert!(
        first_stream.ended.is_some(),
        "watcher {member}'s stream on the {fault} member did not end: {:?}",
        first_stream.responses.last()
    );
    assert!(
        check_resumes(history, spec) > 0,
        "no watch stream was resumed"
    );
    check_watchers(history, spec);
    let keys = check_final_state(history, spec);
    println!(
        "final state checked on {keys} of {} keys",
        spec.kv_keys().len()
    );
}

/// Every operation returned, and none later than the traffic's own deadline (request timeout + 1 s),
/// with slack for a loaded machine.
fn check_times(history: &History, spec: &TrafficSpec) {
    let bound = (spec.request_timeout + Duration::from_secs(2)).as_nanos() as u64;
    for op in &history.operations {
        assert!(op.complete >= op.invoke, "returned before invoked: {op:?}");
        assert!(
            op.complete - op.invoke <= bound,
            "took {} ms: {op:?}",
            (op.complete - op.invoke) / 1_000_000
        );
    }
}

/// The only refusals the traffic provokes are puts with, and revokes of, leases that are gone.
fn check_failures_are_lease_refusals(history: &History) {
    for op in &history.operations {
        if let Outcome::Failed(reason) = &op.outcome {
            let lease_request = matches!(
                op.request,
                Request::Put { lease, .. } if lease != 0
            ) || matches!(op.request, Request::LeaseRevoke { .. });
            assert!(
                lease_request && reason == "etcdserver: requested lease not found",
                "unexpected refusal: {op:?}"
            );
        }
    }
}

fn records_of(history: &History, watcher: u32) -> Vec<&WatchRecord> {
    history
        .watches
        .iter()
        .filter(|w| w.watcher == watcher)
        .collect()
}

/// Each stream after the first starts where the previous one left off (unless its watcher rewound it
/// on purpose): one past the last event it delivered, never before its own start, and at the
/// compacted revision if it was canceled for that.
/// Every watcher's last stream ran to the end of the run. Returns how many streams were resumed.
fn check_resumes(history: &History, spec: &TrafficSpec) -> usize {
    let mut resumed = 0;
    for watcher in 0..spec.watchers {
        let records = records_of(history, watcher);
        for pair in records.windows(2) {
            let (previous, next) = (pair[0], pair[1]);
            assert!(
                previous.ended.is_some(),
                "watcher {watcher} reopened a stream that had not ended"
            );
            let delivered = previous
                .responses
                .iter()
                .flat_map(|r| r.events.last())
                .map(|event| event.kv.mod_revision + 1)
                .max()
                .unwrap_or(0);
            let compacted = previous
                .responses
                .iter()
                .map(|r| r.compact_revision)
                .max()
                .unwrap_or(0);
            if previous.ended.as_deref() == Some(traffic::REWOUND) {
                // Reopened on purpose at a random revision, which may lie below what it saw.
                assert!(next.start_revision >= 1, "watcher {watcher}: {next:?}");
                continue;
            }
            assert_eq!(
                next.start_revision,
                previous.start_revision.max(delivered).max(compacted),
                "watcher {watcher} resumed at the wrong revision after {:?}",
                previous.ended
            );
            resumed += 1;
        }
        let last = records.last().expect("every watcher opens a stream");
        assert_eq!(
            last.ended, None,
            "watcher {watcher} did not catch up by the end of the run"
        );
    }
    resumed
}

/// Every acknowledged write appears in every watcher's events (all its streams together) that cover its
/// revision, as a put of its value or a delete of its key at the write's revision; no event repeats on
/// one stream, and a rewound stream repeats events exactly.
fn check_watchers(history: &History, spec: &TrafficSpec) {
    let writes: Vec<(i64, &str, Option<&str>)> = history
        .operations
        .iter()
        .filter_map(acknowledged_write)
        .collect();
    assert!(!writes.is_empty(), "no acknowledged write");
    for watcher in 0..spec.watchers {
        let records = records_of(history, watcher);
        assert_eq!(
            records.last().and_then(|r| r.ended.as_ref()),
            None,
            "watcher {watcher} did not catch up by the end of the run"
        );
        let from = records[0].start_revision;
        // Within one stream an event comes once; a stream rewound to an older revision delivers some
        // again, and then exactly as before.
        let mut seen: HashMap<(i64, &str), Vec<(EventKind, &str)>> = HashMap::new();
        for record in &records {
            let mut in_stream = HashMap::new();
            for event in record.responses.iter().flat_map(|r| &r.events) {
                let at = (event.kv.mod_revision, event.kv.key.as_str());
                let what = (event.kind, event.kv.value.as_str());
                assert!(
                    in_stream.insert(at, what).is_none(),
                    "watcher {watcher}: {} at revision {} delivered twice on one stream",
                    at.1,
                    at.0
                );
                seen.entry(at).or_default().push(what);
            }
        }
        for ((revision, key), events) in &seen {
            assert!(
                events.iter().all(|e| *e == events[0]),
                "watcher {watcher}: {key} at revision {revision} delivered differently: {events:?}"
            );
        }
        let mut checked = 0;
        for &(revision, key, value) in writes.iter().filter(|w| w.0 >= from) {
            let kind = match value {
                Some(_) => EventKind::Put,
                None => EventKind::Delete,
            };
            let events = seen.get(&(revision, key));
            let expected = (kind, value.unwrap_or(""));
            assert_eq!(
                events.map(|e| e[0]),
                Some(expected),
                "watcher {watcher} (from revision {from}): acknowledged {kind:?} of {key} at revision {revision}"
            );
            checked += 1;
        }
        assert!(checked > 0, "watcher {watcher} covered no write");
    }
}

/// For every KV key no operation left in doubt, the final linearizable read shows the acknowledged write
/// with the highest revision (absent after a delete, or when nothing was written). Returns how many
/// keys it checked.
fn check_final_state(history: &History, spec: &TrafficSpec) -> usize {
    let final_client = spec.final_state_client();
    let mut checked = 0;
    for key in spec.kv_keys() {
        let ops: Vec<&Operation> = history
            .operations
            .iter()
            .filter(|op| op.request.key() == Some(key.as_str()) && op.client != final_client)
            .collect();
        if ops
            .iter()
            .any(|op| matches!(op.outcome, Outcome::Unknown(_)))
        {
            continue;
        }
        let last_write = ops
            .iter()
            .filter_map(|op| acknowledged_write(op))
            .map(|(revision, _, value)| (revision, value))
            .max_by_key(|(revision, _)| *revision);
        let expected = last_write.and_then(|(_, value)| value);
        let read = history
            .operations
            .iter()
            .find(|op| op.client == final_client && op.request.key() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("no final read of {key}"));
        let Outcome::Ok(Response::Get { kv, .. }) = &read.outcome else {
            panic!("final read of {key} did not succeed: {read:?}");
        };
        assert_eq!(
            kv.as_ref().map(|kv| kv.value.as_str()),
            expected,
            "final value of {key}"
        );
        checked += 1;
    }
    checked
}

/// The change an operation is acknowledged to have made: (revision, key, the value put or None for a
/// delete). Deletes that found nothing changed nothing.
fn acknowledged_write(op: &Operation) -> Option<(i64, &str, Option<&str>)> {
    match (&op.request, &op.outcome) {
        (Request::Put { key, value, .. }, Outcome::Ok(Response::Put { revision })) => {
            Some((*revision, key, Some(value)))
        }
        (
            Request::CompareAndSwap { key, new_value, .. },
            Outcome::Ok(Response::CompareAndSwap {
                revision,
                succeeded: true,
                ..
            }),
        ) => Some((*revision, key, Some(new_value))),
        (Request::Delete { key }, Outcome::Ok(Response::Delete { revision, deleted }))
            if *deleted > 0 =>
        {
            Some((*revision, key, None))
        }
        _ => None,
    }
}
