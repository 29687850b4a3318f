//! The request-per-operation benchmarks (put, range, txn-put, lease-keepalive); watch, which
//! has two phases, lives in its own module.

mod watch;

use std::sync::Arc;
use std::time::Duration;

use client::api::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, TxnRequest,
};
use client::{txn, Client, LeaseKeepAliveStream};

use crate::cli::{Consistency, GlobalOptions, OutputFormat};
use crate::keys::KeySpace;
use crate::runner::{self, print_summary, progress_bar, run_requests, Worker};
use crate::BenchmarkError;

pub use watch::watch;

const DEFAULT_KEY_SIZE: usize = 8;
/// etcd's lease-keepalive benchmark grants leases of 100 seconds.
const BENCHMARK_LEASE_TTL: i64 = 100;

fn random_value(size: usize) -> Vec<u8> {
    let mut value = vec![0u8; size];
    rand::fill(&mut value[..]);
    value
}

fn key_space(options: &GlobalOptions, default_key_size: usize) -> Result<KeySpace, BenchmarkError> {
    KeySpace::new(
        options.key_size.unwrap_or(default_key_size),
        options.key_space_size,
        options.sequential_keys,
    )
}

struct PutWorker {
    client: Client,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
}

impl Worker for PutWorker {
    async fn request(&mut self, index: u64) -> Result<(), client::Error> {
        let request = PutRequest {
            key: self.keys.key_for_request(index),
            value: self.value.to_vec(),
            ..Default::default()
        };
        self.client.put(request).await.map(drop)
    }
}

pub async fn put(options: &GlobalOptions) -> Result<(), BenchmarkError> {
    let keys = Arc::new(key_space(options, DEFAULT_KEY_SIZE)?);
    let value = Arc::new(random_value(options.val_size));
    let workers = runner::connect(options)
        .await?
        .into_iter()
        .map(|client| PutWorker {
            client,
            keys: keys.clone(),
            value: value.clone(),
        })
        .collect();
    let bar = progress_bar(options.total);
    let summary = run_requests("put", workers, options.total, options.rate, bar).await?;
    print_summary(options, &summary)
}

struct RangeWorker {
    client: Client,
    request: Arc<RangeRequest>,
}

impl Worker for RangeWorker {
    async fn request(&mut self, _index: u64) -> Result<(), client::Error> {
        self.client
            .range(RangeRequest::clone(&self.request))
            .await
            .map(drop)
    }
}

pub async fn range(
    options: &GlobalOptions,
    key: &str,
    end: Option<&str>,
    consistency: Consistency,
) -> Result<(), BenchmarkError> {
    if options.output == OutputFormat::Text {
        match consistency {
            Consistency::Linearizable => println!("bench with linearizable range"),
            Consistency::Serializable => println!("bench with serializable range"),
        }
    }
    let request = Arc::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
        serializable: consistency == Consistency::Serializable,
        ..Default::default()
    });
    let workers = runner::connect(options)
        .await?
        .into_iter()
        .map(|client| RangeWorker {
            client,
            request: request.clone(),
        })
        .collect();
    let bar = progress_bar(options.total);
    let summary = run_requests("range", workers, options.total, options.rate, bar).await?;
    print_summary(options, &summary)
}

struct TxnPutWorker {
    client: Client,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
    ops_per_txn: u64,
}

impl Worker for TxnPutWorker {
    async fn request(&mut self, index: u64) -> Result<(), client::Error> {
        // Consecutive txns cover consecutive keys, as etcd's txn-put does.
        let first = index.wrapping_mul(self.ops_per_txn);
        let success = (0..self.ops_per_txn)
            .map(|j| {
                txn::put(PutRequest {
                    key: self.keys.key(first.wrapping_add(j)),
                    value: self.value.to_vec(),
                    ..Default::default()
                })
            })
            .collect();
        let request = TxnRequest {
            success,
            ..Default::default()
        };
        self.client.txn(request).await.map(drop)
    }
}

pub async fn txn_put(options: &GlobalOptions, ops_per_txn: u64) -> Result<(), BenchmarkError> {
    let keys = Arc::new(key_space(options, DEFAULT_KEY_SIZE)?);
    if ops_per_txn == 0 {
        return Err(BenchmarkError::InvalidFlag(
            "expected positive --txn-ops, got (0)".into(),
        ));
    }
    if ops_per_txn > keys.size() {
        return Err(BenchmarkError::InvalidFlag(format!(
            "expected --txn-ops no larger than --key-space-size, got txn-ops({ops_per_txn}) key-space-size({})",
            keys.size()
        )));
    }
    let value = Arc::new(random_value(options.val_size));
    let workers = runner::connect(options)
        .await?
        .into_iter()
        .map(|client| TxnPutWorker {
            client,
            keys: keys.clone(),
            value: value.clone(),
            ops_per_txn,
        })
        .collect();
    let bar = progress_bar(options.total);
    let summary = run_requests("txn-put", workers, options.total, options.rate, bar).await?;
    print_summary(options, &summary)
}

/// Renews its own lease on a keep-alive stream it keeps open; a new lease or stream is set up
/// (untimed) when the previous one failed.
struct LeaseWorker {
    client: Client,
    lease: Option<i64>,
    stream: Option<LeaseKeepAliveStream>,
    granted: Vec<i64>,
    timeout: Duration,
}

impl Worker for LeaseWorker {
    async fn prepare(&mut self) -> Result<(), client::Error> {
        if self.lease.is_none() {
            let response = self
                .client
                .lease_grant(LeaseGrantRequest {
                    ttl: BENCHMARK_LEASE_TTL,
                    id: 0,
                })
                .await?;
            if !response.error.is_empty() {
                return Err(client::Error::InvalidArgument(response.error));
            }
            self.lease = Some(response.id);
            self.granted.push(response.id);
        }
        if let (Some(id), None) = (self.lease, &self.stream) {
            // Opening a stream renews the lease once (etcd answers the stream only then); that
            // renewal is set-up, not one of the measured requests.
            let (stream, first) = self.client.lease_keep_alive_stream(id).await?;
            if first.ttl <= 0 {
                self.lease = None;
                return Err(client::Error::LeaseExpired(id));
            }
            self.stream = Some(stream);
        }
        Ok(())
    }

    async fn request(&mut self, _index: u64) -> Result<(), client::Error> {
        let (Some(id), Some(stream)) = (self.lease, self.stream.as_mut()) else {
            return Err(client::Error::Closed);
        };
        let result = match tokio::time::timeout(self.timeout, stream.keep_alive(id)).await {
            Ok(result) => result,
            Err(_) => Err(client::Error::DeadlineExceeded),
        };
        match result {
            Ok(response) if response.ttl > 0 => Ok(()),
            Ok(_) => {
                self.lease = None;
                Err(client::Error::LeaseExpired(id))
            }
            Err(e) => {
                // The stream may be broken or hold an unanswered request: start a new one.
                self.stream = None;
                Err(e)
            }
        }
    }

    async fn finish(self) {
        for id in self.granted {
            if let Err(e) = self.client.lease_revoke(LeaseRevokeRequest { id }).await {
                tracing::debug!(lease = id, error = %e, "cannot revoke benchmark lease");
            }
        }
    }
}

pub async fn lease_keepalive(options: &GlobalOptions) -> Result<(), BenchmarkError> {
    let workers = runner::connect(options)
        .await?
        .into_iter()
        .map(|client| LeaseWorker {
            client,
            lease: None,
            stream: None,
            granted: Vec::new(),
            timeout: options.command_timeout,
        })
        .collect();
    let bar = progress_bar(options.total);
    let summary =
        run_requests("lease-keepalive", workers, options.total, options.rate, bar).await?;
    print_summary(options, &summary)
}
