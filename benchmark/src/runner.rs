//! What every benchmark shares: the connections, the workers pulling request numbers from a
//! common counter, the rate limiter, the progress bar and the report on stdout.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::cli::{GlobalOptions, OutputFormat};
use crate::rate::TokenBucket;
use crate::report::{Recorder, Summary};
use crate::BenchmarkError;

/// One client per `--conns`, then `--clients` handles spread over them round-robin.
///
/// Connection `i` lists the endpoints starting at the `i`-th, so that connections spread over
/// the members (our client sends to its first endpoint until it fails over) while each can
/// still fail over to the others.
pub async fn connect(options: &GlobalOptions) -> Result<Vec<Client>, BenchmarkError> {
    let endpoints: Vec<&str> = options
        .endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect();
    let credentials = match &options.user {
        None => None,
        Some(user) => match user.split_once(':') {
            Some((name, password)) => Some((name.to_string(), password.to_string())),
            None => {
                return Err(BenchmarkError::InvalidFlag(
                    "--user must be username:password (no password prompt)".into(),
                ))
            }
        },
    };
    let client_options = ClientOptions {
        dial_timeout: options.dial_timeout,
        request_timeout: options.command_timeout,
        credentials,
        tls: options.tls(),
        ..ClientOptions::default()
    };
    let mut connections = Vec::with_capacity(options.conns);
    for i in 0..options.conns {
        let mut rotated = endpoints.clone();
        rotated.rotate_left(i % endpoints.len());
        let connection = Client::connect(&rotated, client_options.clone())
            .await
            .map_err(BenchmarkError::Connect)?;
        connections.push(connection);
    }
    Ok((0..options.clients)
        .map(|i| connections[i % connections.len()].clone())
        .collect())
}

/// A bar on stderr while the benchmark runs; hidden when stderr is not a terminal.
pub fn progress_bar(length: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:50} {pos}/{len} [{elapsed_precise}] {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// One worker's request loop body. `prepare` runs untimed (e.g. granting a lease), `request`
/// is the timed part.
pub trait Worker: Send + 'static {
    fn prepare(&mut self) -> impl Future<Output = Result<(), client::Error>> + Send {
        async { Ok(()) }
    }

    fn request(&mut self, index: u64) -> impl Future<Output = Result<(), client::Error>> + Send;

    /// Cleans up after the last request (best effort).
    fn finish(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Requests `0..total` spread over `workers`, each request counted once, as a success with
/// its latency or as an error; `bar` advances by one per request.
pub async fn run_requests<W: Worker>(
    name: &str,
    workers: Vec<W>,
    total: u64,
    rate: u64,
    bar: ProgressBar,
) -> Result<Summary, BenchmarkError> {
    let next = Arc::new(AtomicU64::new(0));
    let limiter = TokenBucket::per_second(rate, 1).map(Arc::new);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        let next = next.clone();
        let limiter = limiter.clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                if let Some(limiter) = &limiter {
                    limiter.acquire().await;
                }
                match worker.prepare().await {
                    Ok(()) => {
                        let start = Instant::now();
                        match worker.request(index).await {
                            Ok(()) => recorder.record(start.elapsed()),
                            Err(e) => recorder.record_error(e),
                        }
                    }
                    Err(e) => recorder.record_error(e),
                }
                bar.inc(1);
            }
            worker.finish().await;
            recorder
        }));
    }
    let mut recorder = Recorder::new();
    for task in tasks {
        recorder.merge(&task.await?);
    }
    let elapsed = started.elapsed();
    bar.finish();
    Ok(recorder.summarize(name, elapsed))
}

/// Prints one phase's report as etcd does, or as one JSON object.
pub fn print_summary(options: &GlobalOptions, summary: &Summary) -> Result<(), BenchmarkError> {
    match options.output {
        OutputFormat::Text => println!("{}", summary.to_text(options.precise)),
        OutputFormat::Json => println!("{}", serde_json::to_string(summary)?),
    }
    Ok(())
}

/// How long event delivery may stall before the missing events count as lost.
pub fn stall_timeout(options: &GlobalOptions) -> Duration {
    options.command_timeout.max(Duration::from_secs(1))
}
