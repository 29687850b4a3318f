//! The watch benchmark, in two phases as etcd's: first create `--streams` x
//! `--watch-per-stream` watches (latency: until the server confirms each), then put
//! `--put-total` times on the watched keys and measure how long each event takes to reach each
//! of its watchers. Every put carries the instant it was sent in its value, so one put's
//! latency is measured once per watcher that receives it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::api::etcdserverpb::PutRequest;
use client::{Client, WatchStream};
use indicatif::ProgressBar;
use tokio::time::Instant;

use crate::cli::{GlobalOptions, OutputFormat, WatchOptions};
use crate::keys::KeySpace;
use crate::report::{Recorder, Summary};
use crate::runner::{self, print_summary, progress_bar, run_requests, stall_timeout, Worker};
use crate::BenchmarkError;

const DEFAULT_WATCH_KEY_SIZE: usize = 32;
/// Bytes of a put's value that carry its send time (nanoseconds since the phase began).
const TIMESTAMP_LEN: usize = 8;

pub async fn watch(options: &GlobalOptions, watch: &WatchOptions) -> Result<(), BenchmarkError> {
    if watch.streams == 0 || watch.watch_per_stream == 0 || watch.watched_key_total == 0 {
        return Err(BenchmarkError::InvalidFlag(
            "--streams, --watch-per-stream and --watched-key-total must be positive".into(),
        ));
    }
    let keys = KeySpace::new(
        options.key_size.unwrap_or(DEFAULT_WATCH_KEY_SIZE),
        options.key_space_size,
        options.sequential_keys,
    )?;
    // As in etcd, several of these may be the same key when the key space is small.
    let watched: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..watch.watched_key_total as u64)
            .map(|i| keys.key_for_request(i))
            .collect(),
    );
    let clients = runner::connect(options).await?;

    let (creation, watches) = create_watches(options, &clients, &watched, watch).await?;
    if options.output == OutputFormat::Text {
        print!("Watch creation summary:");
        print_summary(options, &creation)?;
    }
    let events = deliver_events(options, &clients, &watched, watches, watch).await?;
    match options.output {
        OutputFormat::Text => {
            print!("Watch events received summary:");
            print_summary(options, &events)
        }
        OutputFormat::Json => {
            let report = serde_json::json!({ "creation": creation, "events": events });
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// A created watch and the index (in the watched list) of its key.
struct CreatedWatch {
    key_index: usize,
    stream: WatchStream,
}

async fn create_watches(
    options: &GlobalOptions,
    clients: &[Client],
    watched: &Arc<Vec<Vec<u8>>>,
    watch: &WatchOptions,
) -> Result<(Summary, Vec<CreatedWatch>), BenchmarkError> {
    let per_stream = watch.watch_per_stream;
    let bar = progress_bar((watch.streams * per_stream) as u64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(watch.streams);
    for stream in 0..watch.streams {
        let watcher = clients[stream % clients.len()].watcher();
        let watched = watched.clone();
        let bar = bar.clone();
        let timeout = options.command_timeout;
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let mut created = Vec::with_capacity(per_stream);
            for i in 0..per_stream {
                let key_index = (stream * per_stream + i) % watched.len();
                let start = Instant::now();
                let key = watched[key_index].clone();
                match tokio::time::timeout(timeout, watcher.watch(key, Default::default())).await {
                    Ok(Ok(stream)) => {
                        recorder.record(start.elapsed());
                        created.push(CreatedWatch { key_index, stream });
                    }
                    Ok(Err(e)) => recorder.record_error(e),
                    Err(_) => recorder.record_error(client::Error::DeadlineExceeded),
                }
                bar.inc(1);
            }
            (recorder, created)
        }));
    }
    let mut recorder = Recorder::new();
    let mut watches = Vec::new();
    for task in tasks {
        let (stream_recorder, created) = task.await?;
        recorder.merge(&stream_recorder);
        watches.extend(created);
    }
    let elapsed = started.elapsed();
    bar.finish();
    Ok((recorder.summarize("watch-creation", elapsed), watches))
}

/// Puts on the watched keys; a successful put adds its key's watcher count to `expected`.
struct TimestampedPutWorker {
    client: Client,
    watched: Arc<Vec<Vec<u8>>>,
    watchers_per_key: Arc<HashMap<Vec<u8>, u64>>,
    epoch: Instant,
    value_size: usize,
    expected: Arc<AtomicU64>,
}

impl Worker for TimestampedPutWorker {
    async fn request(&mut self, index: u64) -> Result<(), client::Error> {
        let key = self.watched[(index % self.watched.len() as u64) as usize].clone();
        let watchers = self.watchers_per_key.get(&key).copied().unwrap_or(0);
        let mut value = vec![0u8; self.value_size.max(TIMESTAMP_LEN)];
        let sent_at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        value[..TIMESTAMP_LEN].copy_from_slice(&sent_at.to_le_bytes());
        self.client
            .put(PutRequest {
                key,
                value,
                ..Default::default()
            })
            .await?;
        self.expected.fetch_add(watchers, Ordering::Relaxed);
        Ok(())
    }
}

fn sent_at(value: &[u8]) -> Option<Duration> {
    let bytes: [u8; TIMESTAMP_LEN] = value.get(..TIMESTAMP_LEN)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(bytes)))
}

/// The number of events the puts produce if they all succeed: put `i` goes to key
/// `i % watched.len()` and reaches every watcher of that key.
fn events_if_all_succeed(
    watched: &[Vec<u8>],
    watchers_per_key: &HashMap<Vec<u8>, u64>,
    puts: u64,
) -> u64 {
    let keys = watched.len() as u64;
    watched
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let puts_on_key = puts / keys + u64::from((i as u64) < puts % keys);
            puts_on_key * watchers_per_key.get(key).copied().unwrap_or(0)
        })
        .sum()
}

async fn deliver_events(
    options: &GlobalOptions,
    clients: &[Client],
    watched: &Arc<Vec<Vec<u8>>>,
    watches: Vec<CreatedWatch>,
    watch: &WatchOptions,
) -> Result<Summary, BenchmarkError> {
    let mut watchers_per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    for created in &watches {
        *watchers_per_key
            .entry(watched[created.key_index].clone())
            .or_default() += 1;
    }
    let bar = progress_bar(events_if_all_succeed(
        watched,
        &watchers_per_key,
        watch.put_total,
    ));
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut receivers = Vec::with_capacity(watches.len());
    for CreatedWatch { mut stream, .. } in watches {
        let received = received.clone();
        let bar = bar.clone();
        let mut stopped = stopped.clone();
        receivers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let mut last_event: Option<Duration> = None;
            loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Some(Ok(response)) => {
                            let now = epoch.elapsed();
                            for event in &response.events {
                                match event.kv.as_ref().and_then(|kv| sent_at(&kv.value)) {
                                    Some(sent) => {
                                        recorder.record(now.saturating_sub(sent));
                                        received.fetch_add(1, Ordering::Relaxed);
                                        bar.inc(1);
                                        last_event = Some(now);
                                    }
                                    None => recorder.record_error("event without a benchmark timestamp"),
                                }
                            }
                        }
                        Some(Err(e)) => {
                            recorder.record_error(e);
                            break;
                        }
                        None => break,
                    },
                    _ = stopped.wait_for(|stop| *stop) => break,
                }
            }
            (recorder, last_event)
        }));
    }

    let expected = Arc::new(AtomicU64::new(0));
    let watchers_per_key = Arc::new(watchers_per_key);
    let workers = clients
        .iter()
        .map(|client| TimestampedPutWorker {
            client: client.clone(),
            watched: watched.clone(),
            watchers_per_key: watchers_per_key.clone(),
            epoch,
            value_size: options.val_size,
            expected: expected.clone(),
        })
        .collect();
    let puts = run_requests(
        "put",
        workers,
        watch.put_total,
        watch.put_rate,
        ProgressBar::hidden(),
    )
    .await?;

    let expected = expected.load(Ordering::Relaxed);
    let stall = stall_timeout(options);
    wait_for_events(&received, expected, stall).await;
    let _ = stop.send(true);

    let mut recorder = Recorder::new();
    let mut last_event = None;
    for receiver in receivers {
        let (watch_recorder, watch_last_event) = receiver.await?;
        recorder.merge(&watch_recorder);
        last_event = last_event.max(watch_last_event);
    }
    bar.finish();
    let missing = expected.saturating_sub(received.load(Ordering::Relaxed));
    recorder.record_errors(
        format!(
            "watch event not received ({} without any event)",
            humanize(stall)
        ),
        missing,
    );
    for (message, count) in &puts.error_distribution {
        recorder.record_errors(format!("put: {message}"), *count);
    }
    let elapsed = last_event.unwrap_or_else(|| epoch.elapsed());
    Ok(recorder.summarize("watch-events", elapsed))
}

/// Returns once `expected` events have arrived, or when none has for `stall`.
async fn wait_for_events(received: &AtomicU64, expected: u64, stall: Duration) {
    let mut seen = received.load(Ordering::Relaxed);
    let mut progressed_at = Instant::now();
    while seen < expected {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now_seen = received.load(Ordering::Relaxed);
        if now_seen != seen {
            seen = now_seen;
            progressed_at = Instant::now();
        } else if progressed_at.elapsed() >= stall {
            return;
        }
    }
}

fn humanize(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_values() {
        let mut value = vec![0u8; 16];
        value[..8].copy_from_slice(&1_234_567u64.to_le_bytes());
        assert_eq!(sent_at(&value), Some(Duration::from_nanos(1_234_567)));
        assert_eq!(sent_at(b"short"), None);
    }

    #[test]
    fn expected_events_count_watchers_of_each_put_key() {
        let watched = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        let watchers: HashMap<Vec<u8>, u64> = [(b"a".to_vec(), 4), (b"b".to_vec(), 1)].into();
        // 7 puts: indexes 0,3,6 -> a; 1,4 -> b; 2,5 -> a.
        assert_eq!(events_if_all_succeed(&watched, &watchers, 7), 5 * 4 + 2);
        assert_eq!(events_if_all_succeed(&watched, &watchers, 0), 0);
    }
}
