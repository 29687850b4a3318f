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

use std::time::Duration;

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

/// Parses Go-style durations as etcd's flags take them: `500ms`, `2s`, `1m`, `1h`, `1.5s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("missing unit in duration {text:?} (e.g. 500ms, 2s, 1m)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let unit_secs = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
    };
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| format!("invalid duration {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
