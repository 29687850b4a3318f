//! Command-line flags. Names and defaults follow etcd's `tools/benchmark`; the flags every
//! command shares are global, so they may stand before or after the subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use client::TlsOptions;

use pkg::flags::parse_go_duration;

#[derive(Debug, Parser)]
#[command(
    name = "benchmark",
    about = "A low-level benchmark tool for etcd3",
    long_about = "A low-level benchmark tool for etcd3: drives one kind of request from \
                  --clients concurrent workers over --conns gRPC connections and reports \
                  the latency distribution."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// gRPC endpoints, comma separated.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of concurrent clients (workers), spread over the connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Total number of requests (put, range, txn-put, lease-keepalive).
    #[arg(long, global = true, default_value_t = 10000)]
    pub total: u64,
    /// Key size in bytes [default: 8, or 32 for watch].
    #[arg(long, global = true)]
    pub key_size: Option<usize>,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys requests are spread over.
    #[arg(long, global = true, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use keys in order instead of at random (txn-put always does).
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Maximum requests per second (0 is no limit); watch uses --put-rate instead.
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Format of the report on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Print full floating point precision in the text report.
    #[arg(long, global = true)]
    pub precise: bool,
    /// Dial timeout for client connections (e.g. 2s, 500ms).
    #[arg(long, global = true, default_value = "2s", value_parser = parse_go_duration)]
    pub dial_timeout: Duration,
    /// Timeout of one request, including the client's retries.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_go_duration)]
    pub command_timeout: Duration,
    /// username:password for authentication.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Verify certificates of HTTPS-enabled servers using this CA bundle.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Identify HTTPS client using this SSL certificate file.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Identify HTTPS client using this SSL key file.
    // Its own id: `range` has a positional `key`.
    #[arg(long = "key", id = "key_file", global = true)]
    pub key_file: Option<PathBuf>,
    /// Skip server certificate verification.
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
}

impl GlobalOptions {
    /// TLS for https endpoints from `--cacert`, `--cert`, `--key` and `--insecure-skip-tls-verify`.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key_file.clone(),
            insecure_skip_verify: self.insecure_skip_tls_verify,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// etcd's report layout.
    Text,
    /// One JSON object: the summary, or for watch {"creation": ..., "events": ...}.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    #[value(name = "l")]
    Linearizable,
    /// Serializable.
    #[value(name = "s")]
    Serializable,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark put.
    Put,
    /// Benchmark range.
    Range {
        key: String,
        /// Exclusive end of the range; only `key` when absent.
        end: Option<String>,
        /// Linearizable (l) or Serializable (s).
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
    },
    /// Benchmark txn-put: transactions of --txn-ops puts each.
    TxnPut {
        /// Number of puts per txn.
        #[arg(long, default_value_t = 1)]
        txn_ops: u64,
    },
    /// Benchmark watch: watch creation, then event delivery for puts on the watched keys.
    ///
    /// Each of --streams watch streams creates --watch-per-stream watches, spread round-robin
    /// over --watched-key-total keys; then --put-total puts on those keys, and every watcher of
    /// a key must receive each put's event. Event latency runs from just before the put is sent
    /// to the event's arrival.
    Watch(WatchOptions),
    /// Benchmark lease keepalive: each client grants a lease, then renews it --total times in all.
    LeaseKeepalive,
}

#[derive(Debug, Clone, Args)]
pub struct WatchOptions {
    /// Total watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total watchers per stream.
    #[arg(
        long = "watch-per-stream",
        visible_alias = "watchers-per-stream",
        default_value_t = 100
    )]
    pub watch_per_stream: usize,
    /// Total number of keys to be watched.
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: usize,
    /// Number of puts on the watched keys.
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Maximum puts per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub put_rate: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "benchmark",
            "--endpoints",
            "a:1,b:2",
            "--conns=3",
            "range",
            "foo",
            "fop",
            "--consistency",
            "s",
            "--clients",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(cli.global.conns, 3);
        assert_eq!(cli.global.clients, 7);
        match cli.command {
            Command::Range {
                key,
                end,
                consistency,
            } => {
                assert_eq!(key, "foo");
                assert_eq!(end.as_deref(), Some("fop"));
                assert_eq!(consistency, Consistency::Serializable);
            }
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn watch_defaults_follow_etcd() {
        let cli =
            Cli::try_parse_from(["benchmark", "watch", "--watchers-per-stream", "7"]).unwrap();
        let Command::Watch(watch) = cli.command else {
            panic!("not watch");
        };
        assert_eq!(watch.streams, 10);
        assert_eq!(watch.watch_per_stream, 7);
        assert_eq!(watch.watched_key_total, 1);
        assert_eq!(watch.put_total, 1000);
        assert!(Cli::try_parse_from(["benchmark", "range", "k", "--consistency", "x"]).is_err());
    }

    #[test]
    fn tls_flags_and_the_range_key_do_not_collide() {
        let cli = Cli::try_parse_from([
            "benchmark",
            "--cacert=ca.pem",
            "range",
            "foo",
            "--key",
            "client-key.pem",
            "--cert=client.pem",
            "--insecure-skip-tls-verify",
        ])
        .unwrap();
        let tls = cli.global.tls();
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.cert_file, Some(PathBuf::from("client.pem")));
        assert_eq!(tls.key_file, Some(PathBuf::from("client-key.pem")));
        assert!(tls.insecure_skip_verify);
        assert!(matches!(cli.command, Command::Range { key, .. } if key == "foo"));
    }
}
