//! Watchers: each watches the run's whole prefix on a raw Watch stream of its own, records every
//! response, and when the stream breaks opens a new one on the next member from one past the last
//! event it saw (or from the compacted revision, when its start was compacted away). The client's
//! `Watcher` would resume by itself, hiding the break (and the `created` responses) that the checkers
//! must see.
//!
//! Odd watchers also close their stream every few seconds while the traffic runs and reopen it at a
//! random recent revision, often below what they already saw: etcd promises a watch can start from
//! any revision that is not compacted, and the checkers compare what each stream delivers with the
//! others.
//!
//! Progress notifications do not move the resume point: etcd 3.4 may answer a progress request with the
//! current revision before it has sent older events on the same stream (etcd-io/etcd#15220; seen here on
//! a watch opened below a compaction), and resuming past them would lose events the server still owed.
//! They only end a watcher whose stream has gone quiet (see `finished`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use client::api::etcdserverpb::watch_client::WatchClient;
use client::api::etcdserverpb::watch_request::RequestUnion;
use client::api::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse as WireResponse,
};
use client::api::mvccpb::event::EventType;
use rand::Rng as _;
use testkit::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::AsciiMetadataValue;

use super::{key_value, Phase, Shared};
use crate::history::{EventKind, KeyValue, Nanos, WatchEvent, WatchRecord, WatchResponse};

/// Mixed into the seed so that watcher `k` does not draw what client `k` draws.
const WATCHER_SEED: u64 = 0x5741_5443_4845_5200;

/// Pause before reopening a broken stream, doubled for each stream in a row that broke without
/// delivering anything (up to `MAX_REOPEN_PAUSE`), so members that refuse streams are not hammered.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// How long an odd watcher keeps a stream before reopening it at a random revision.
const REWIND_AFTER: std::ops::Range<u64> = 2000..5000;
/// How far back from the latest revision seen a rewound stream may start.
const REWIND_WINDOW: i64 = 100;

/// How a stream ended.
enum End {
    /// The watcher closed it to reopen at a random revision.
    Rewind,
    /// It delivered everything up to the run's last revision.
    Reached,
    /// The run's drain deadline passed first.
    OutOfTime(String),
    /// The server canceled it because its start revision was compacted away.
    Compacted(i64),
    /// It failed, was canceled, or went silent.
    Broken(String),
}

pub(super) async fn watcher(
    shared: Arc<Shared>,
    id: u32,
    mut phase: watch::Receiver<Phase>,
) -> Vec<WatchRecord> {
    let mut rng = Rng::new(shared.spec.seed ^ WATCHER_SEED ^ u64::from(id));
    let members = shared.endpoints.len();
    let mut member = id as usize % members;
    let mut next_revision = 1;
    if id % 2 == 1 {
        // Odd watchers open a little later, from a recent revision, so streams start mid-history.
        let delay = Duration::from_millis(rng.random_range(200..1500));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => {}
        }
        let latest = shared.latest_revision.load(Ordering::Relaxed);
        if latest > 1 {
            next_revision = rng.random_range((latest - 50).max(1)..=latest);
        }
    }
    let (key, range_end) = watched_range(&shared.spec.prefix);
    let mut records = Vec::new();
    let mut fruitless = 0u32;
    loop {
        let mut record = WatchRecord {
            watcher: id,
            key: key.clone(),
            range_end: range_end.clone(),
            start_revision: next_revision,
            progress_notify: true,
            opened: shared.clock.now(),
            responses: Vec::new(),
            ended: None,
        };
        let rewind_at = (id % 2 == 1)
            .then(|| Instant::now() + Duration::from_millis(rng.random_range(REWIND_AFTER)));
        let end = stream(
            &shared,
            member,
            &mut record,
            &mut next_revision,
            &mut phase,
            rewind_at,
        )
        .await;
        let done = match end {
            End::Rewind => {
                record.ended = Some(super::REWOUND.into());
                let latest = shared.latest_revision.load(Ordering::Relaxed);
                if latest > 1 {
                    next_revision = rng.random_range((latest - REWIND_WINDOW).max(1)..=latest);
                }
                member = (member + 1) % members;
                false
            }
            End::Reached => true,
            End::OutOfTime(reason) => {
                record.ended = Some(reason);
                true
            }
            End::Compacted(revision) => {
                // The server cancels a watch as compacted only while it still owes events below
                // `revision`, so the events seen so far end below it.
                record.ended = Some(format!("compacted: resume from revision {revision}"));
                next_revision = next_revision.max(revision);
                false
            }
            End::Broken(reason) => {
                tracing::info!(watcher = id, member, %reason, "watch stream broke; reopening on the next member");
                record.ended = Some(reason);
                member = (member + 1) % members;
                false
            }
        };
        fruitless = if record.responses.is_empty() {
            fruitless + 1
        } else {
            0
        };
        records.push(record);
        if done || past_drain_deadline(&phase) {
            return records;
        }
        let pause = REOPEN_PAUSE * 2u32.pow(fruitless.min(4));
        tokio::time::sleep(pause.min(MAX_REOPEN_PAUSE)).await;
    }
}

fn watched_range(prefix: &str) -> (String, String) {
    let end = client::prefix_range_end(prefix.as_bytes());
    // Lossy only for a prefix ending in a non-ASCII character, whose range end is not UTF-8.
    (
        prefix.to_string(),
        String::from_utf8_lossy(&end).into_owned(),
    )
}

fn past_drain_deadline(phase: &watch::Receiver<Phase>) -> bool {
    matches!(*phase.borrow(), Phase::Draining { deadline, .. } if Instant::now() >= deadline)
}

/// What one stream has shown of the watcher's progress.
struct Progress {
    /// The highest revision a progress notification on this stream claimed.
    notified: i64,
    /// When this stream last delivered an event (or opened).
    last_event: Instant,
}

/// Whether the watcher is done: it has delivered the run's last revision, or run out of time to. A
/// progress notification at or past that revision counts only once the stream has been quiet for
/// `quiet` after it, since etcd 3.4 may send it ahead of events it still owes; it matters only when
/// someone else writes outside the watched prefix.
fn finished(phase: Phase, next_revision: i64, progress: &Progress, quiet: Duration) -> Option<End> {
    match phase {
        Phase::Draining { revision, .. } if next_revision > revision => Some(End::Reached),
        Phase::Draining { revision, .. }
            if progress.notified >= revision && progress.last_event.elapsed() >= quiet =>
        {
            Some(End::Reached)
        }
        Phase::Draining { revision, deadline } if Instant::now() >= deadline => {
            Some(End::OutOfTime(format!(
                "the run ended before the watch reached revision {revision} (it saw up to {})",
                next_revision - 1
            )))
        }
        _ => None,
    }
}

/// One Watch stream on `member`, recorded into `record`, from `record.start_revision`; closed at
/// `rewind_at` if the traffic still runs then.
async fn stream(
    shared: &Shared,
    member: usize,
    record: &mut WatchRecord,
    next_revision: &mut i64,
    phase: &mut watch::Receiver<Phase>,
    rewind_at: Option<Instant>,
) -> End {
    let url = &shared.endpoints[member];
    let silence = shared.spec.watch_silence_timeout;
    let (outbound, requests) = mpsc::unbounded_channel();
    let create = WatchCreateRequest {
        key: record.key.clone().into_bytes(),
        range_end: client::prefix_range_end(record.key.as_bytes()),
        start_revision: record.start_revision,
        progress_notify: true,
        ..Default::default()
    };
    let _ = outbound.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    });
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(requests));
    // As etcdctl does: a member without a leader refuses the stream, and cancels an open one after a
    // few election timeouts, instead of serving it from a state that may be left behind.
    request
        .metadata_mut()
        .insert("hasleader", AsciiMetadataValue::from_static("true"));
    let mut watch_client = WatchClient::new(shared.channels[member].clone());
    let mut inbound = match tokio::time::timeout(silence, watch_client.watch(request)).await {
        Err(_) => return End::Broken(format!("{url}: no answer to the watch within {silence:?}")),
        Ok(Err(status)) => return End::Broken(format!("{url}: {}", client::Error::from(status))),
        Ok(Ok(response)) => response.into_inner(),
    };
    // etcd's own progress notifications come every 10 minutes by default: ask for them instead (at
    // least every millisecond apart, since a zero period panics).
    let mut ask_progress = tokio::time::interval((silence / 4).max(Duration::from_millis(1)));
    ask_progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut progress = Progress {
        notified: 0,
        last_event: Instant::now(),
    };
    loop {
        let current = *phase.borrow_and_update();
        if let Some(end) = finished(current, *next_revision, &progress, silence) {
            return end;
        }
        let drain_deadline = match current {
            Phase::Draining { deadline, .. } => deadline,
            _ => Instant::now() + silence,
        };
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(response)) => {
                    last_heard = Instant::now();
                    let converted = convert(&response, shared.clock.now());
                    if let Some(last) = converted.events.last() {
                        // Saturating: a server answering revision i64::MAX must not overflow the
                        // resume point.
                        *next_revision = (*next_revision).max(last.kv.mod_revision.saturating_add(1));
                        progress.last_event = last_heard;
                    } else if converted.progress_notify {
                        progress.notified = progress.notified.max(converted.header_revision);
                    }
                    shared.saw_revision(converted.header_revision);
                    record.responses.push(converted);
                    if response.canceled {
                        return if response.compact_revision > 0 {
                            End::Compacted(response.compact_revision)
                        } else {
                            End::Broken(format!("{url}: canceled by the server: {:?}", response.cancel_reason))
                        };
                    }
                }
                Ok(None) => return End::Broken(format!("{url}: the server closed the stream")),
                Err(status) => return End::Broken(format!("{url}: {}", client::Error::from(status))),
            },
            _ = ask_progress.tick() => {
                if last_heard.elapsed() >= silence {
                    return End::Broken(format!("{url}: nothing received for {silence:?}, progress requests included"));
                }
                let _ = outbound.send(WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                });
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return End::OutOfTime("the run was dropped".into());
                }
            }
            _ = tokio::time::sleep_until(drain_deadline) => {}
            _ = sleep_until_some(rewind_at), if current == Phase::Running => return End::Rewind,
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn convert(response: &WireResponse, received: Nanos) -> WatchResponse {
    let header_revision = response.header.as_ref().map_or(0, |h| h.revision);
    let events = response
        .events
        .iter()
        .map(|event| WatchEvent {
            kind: if event.r#type == EventType::Delete as i32 {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            // An event without its key-value is malformed: recorded with an empty key at revision 0,
            // outside every watched range, so the watch checker reports it.
            kv: event.kv.as_ref().map(key_value).unwrap_or(KeyValue {
                key: String::new(),
                value: String::new(),
                create_revision: 0,
                mod_revision: 0,
                version: 0,
                lease: 0,
            }),
        })
        .collect::<Vec<_>>();
    // clientv3's IsProgressNotify.
    let progress_notify = events.is_empty()
        && !response.canceled
        && !response.created
        && response.compact_revision == 0
        && header_revision != 0;
    WatchResponse {
        received,
        header_revision,
        events,
        created: response.created,
        canceled: response.canceled,
        compact_revision: response.compact_revision,
        progress_notify,
    }
}
