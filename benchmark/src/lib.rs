//! Load generator for etcd v3 servers, modelled on etcd's `tools/benchmark`: each subcommand
//! drives one kind of request from `--clients` concurrent workers spread over `--conns` gRPC
//! connections, optionally rate limited, and prints latency statistics laid out like etcd's
//! `pkg/report` (or as JSON).

mod cli;
mod commands;
mod keys;
mod rate;
pub mod report;
mod runner;

pub use cli::{Cli, Command, Consistency, GlobalOptions, OutputFormat, WatchOptions};

#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    #[error("{0}")]
    InvalidFlag(String),
    #[error("cannot create client: {0}")]
    Connect(#[source] client::Error),
    #[error("cannot encode the JSON report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a benchmark worker stopped unexpectedly: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// Runs the benchmark `cli` asks for and prints its report on stdout.
pub async fn run(cli: Cli) -> Result<(), BenchmarkError> {
    let options = &cli.global;
    validate(options)?;
    match &cli.command {
        Command::Put => commands::put(options).await,
        Command::Range {
            key,
            end,
            consistency,
        } => commands::range(options, key, end.as_deref(), *consistency).await,
        Command::TxnPut { txn_ops } => commands::txn_put(options, *txn_ops).await,
        Command::Watch(watch) => commands::watch(options, watch).await,
        Command::LeaseKeepalive => commands::lease_keepalive(options).await,
    }
}

fn validate(options: &GlobalOptions) -> Result<(), BenchmarkError> {
    if options.endpoints.iter().all(|e| e.trim().is_empty()) {
        return Err(BenchmarkError::InvalidFlag(
            "--endpoints must name at least one endpoint".into(),
        ));
    }
    if options.conns == 0 {
        return Err(BenchmarkError::InvalidFlag(
            "--conns must be positive".into(),
        ));
    }
    if options.clients == 0 {
        return Err(BenchmarkError::InvalidFlag(
            "--clients must be positive".into(),
        ));
    }
    if options.command_timeout.is_zero() {
        return Err(BenchmarkError::InvalidFlag(
            "--command-timeout must be positive".into(),
        ));
    }
    Ok(())
}
