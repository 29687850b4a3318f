//! check perf: a minute of rate-limited puts from many clients, judged against etcdctl's
//! thresholds (throughput > 90% of the target, slowest request <= 0.5 s, stddev <= 0.1 s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use clap::{Args, Subcommand};
use rand::Rng as _;
use std::sync::Mutex as ResultsMutex;
use tokio::time::Instant;

use crate::error::{CommandError, ExitCode, Result};
use crate::format::go_quote;
use crate::global::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
}

#[derive(Debug, Args)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long)]
    auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long)]
    auto_defrag: bool,
}

/// A workload: puts per second, concurrent clients, seconds.
struct Load {
    limit: u32,
    clients: usize,
    duration: Duration,
}

fn load(name: &str) -> Option<Load> {
    let (limit, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        _ => return None,
    };
    Some(Load {
        limit,
        clients,
        duration: Duration::from_secs(60),
    })
}

/// Latencies of the successful puts and the count of each error.
#[derive(Default)]
struct Results {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

impl CheckCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let CheckCommand::Perf(args) = self;
        let load = load(&args.load).ok_or_else(|| {
            CommandError::new(
                ExitCode::BadFeature,
                format!("unknown load option {}", args.load),
            )
        })?;
        let mut clients = Vec::with_capacity(load.clients);
        for _ in 0..load.clients {
            clients.push(global.client().await?);
        }
        let prefix = args.prefix.as_bytes().to_vec();
        let existing = clients[0]
            .range(RangeRequest {
                key: prefix.clone(),
                range_end: client::prefix_range_end(&prefix),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if !existing.kvs.is_empty() {
            return Err(CommandError::new(
                ExitCode::InvalidInput,
                format!(
                    "prefix {} has keys. Delete with etcdctl del --prefix {} first",
                    go_quote(&prefix),
                    args.prefix
                ),
            ));
        }

        let started = Instant::now();
        let deadline = started + load.duration;
        let period = Duration::from_secs(1) / load.limit;
        let next_slot = Arc::new(tokio::sync::Mutex::new(started));
        let results = Arc::new(ResultsMutex::<Results>::default());
        let mut workers = Vec::new();
        for client in &clients {
            let (client, next_slot, results, prefix) = (
                client.clone(),
                next_slot.clone(),
                results.clone(),
                prefix.clone(),
            );
            workers.push(tokio::spawn(async move {
                loop {
                    // A token bucket of size one, shared by every worker (Go's rate.Limiter).
                    let slot = {
                        let mut next = next_slot.lock().await;
                        let slot = (*next).max(Instant::now());
                        *next = slot + period;
                        slot
                    };
                    if slot >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(slot).await;
                    let request = PutRequest {
                        key: random_key(&prefix),
                        value: vec![0; 1024],
                        ..Default::default()
                    };
                    let start = Instant::now();
                    let outcome = client.put(request).await;
                    let took = start.elapsed().as_secs_f64();
                    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                    match outcome {
                        Ok(_) => results.latencies.push(took),
                        Err(e) => *results.errors.entry(e.to_string()).or_insert(0) += 1,
                    }
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
        let total = started.elapsed().as_secs_f64();
        let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));

        clean_up(&clients[0], &prefix, args.auto_compact).await?;
        if args.auto_defrag {
            for endpoint in clients[0].endpoints() {
                clients[0]
                    .for_endpoint(endpoint)?
                    .defragment(DefragmentRequest {})
                    .await?;
                println!("Defragmented {}", go_quote(endpoint.as_bytes()));
            }
        }
        report(&results, total, load.limit)
    }
}

/// `prefix` + 256 bytes starting with the varint of a random number, as etcdctl writes.
fn random_key(prefix: &[u8]) -> Vec<u8> {
    let mut suffix = [0u8; 256];
    let value: i64 = rand::rng().random_range(0..i64::MAX);
    // Go's binary.PutVarint: zig-zag, then base-128.
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut i = 0;
    while zigzag >= 0x80 {
        suffix[i] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        i += 1;
    }
    suffix[i] = zigzag as u8;
    let mut key = prefix.to_vec();
    key.extend_from_slice(&suffix);
    key
}

async fn clean_up(client: &client::Client, prefix: &[u8], compact: bool) -> Result<()> {
    let deleted = client
        .delete_range(DeleteRangeRequest {
            key: prefix.to_vec(),
            range_end: client::prefix_range_end(prefix),
            prev_kv: false,
        })
        .await;
    let deleted = match deleted {
        Ok(deleted) => deleted,
        Err(e) => {
            println!("FAIL: Cleanup failed during key deletion: ERROR({e})");
            return Ok(());
        }
    };
    if compact {
        let revision = deleted.header.map_or(0, |h| h.revision);
        client
            .compact(CompactionRequest {
                revision,
                physical: true,
            })
            .await?;
        println!("Compacted with revision {revision}");
    }
    Ok(())
}

fn report(results: &Results, total_seconds: f64, limit: u32) -> Result<()> {
    let mut ok = true;
    if !results.errors.is_empty() {
        println!("FAIL: too many errors");
        for (error, count) in &results.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
        ok = false;
    }
    let count = results.latencies.len() as f64;
    let rps = if total_seconds > 0.0 {
        count / total_seconds
    } else {
        0.0
    };
    if rps / f64::from(limit) <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    let slowest = results.latencies.iter().copied().fold(0.0, f64::max);
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    let mean = if count > 0.0 {
        results.latencies.iter().sum::<f64>() / count
    } else {
        0.0
    };
    let variance = if count > 0.0 {
        results
            .latencies
            .iter()
            .map(|l| (l - mean).powi(2))
            .sum::<f64>()
            / count
    } else {
        0.0
    };
    let stddev = variance.sqrt();
    if stddev > 0.1 {
        println!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        println!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(CommandError::reported(ExitCode::Error))
    }
}
