//! The etcdutl command line (etcd 3.5's `etcdutl`): clap commands over the library, errors
//! printed as `Error: <message>` with cobrautl's exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::printer::{format_status, OutputFormat};
use crate::snapshot::{self, RestoreConfig};

/// cobrautl's exit codes.
const EXIT_ERROR: i32 = 1;
const EXIT_BAD_FEATURE: i32 = 4;
const EXIT_BAD_ARGS: i32 = 128;

#[derive(Debug, Parser)]
#[command(
    name = "etcdutl",
    about = "An administrative command line tool for etcd3."
)]
struct Cli {
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        value_enum,
        default_value = "simple",
        global = true
    )]
    write_out: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Defragments the storage of the etcd
    Defrag(DefragArgs),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Prints the version of etcdutl
    Version,
}

#[derive(Debug, Args)]
struct DefragArgs {
    /// Required. Defragments a data directory not in use by etcd.
    #[arg(long = "data-dir")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Gets backend snapshot status of a given file
    Status(StatusArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    args: Vec<PathBuf>,
}

/// etcd's `snapshot restore` flags and defaults (shared with etcdctl's).
#[derive(Debug, Clone, Args)]
pub struct RestoreFlags {
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir")]
    pub wal_dir: Option<PathBuf>,
    /// Initial cluster configuration for restore bootstrap
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long = "name", default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check")]
    pub skip_hash_check: bool,
}

impl RestoreFlags {
    pub fn config(&self, snapshot: PathBuf, data_dir: Option<PathBuf>) -> RestoreConfig {
        RestoreConfig {
            snapshot,
            name: self.name.clone(),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self
                .initial_advertise_peer_urls
                .split(',')
                .map(str::to_owned)
                .collect(),
            data_dir,
            wal_dir: self.wal_dir.clone(),
            skip_hash_check: self.skip_hash_check,
            bump_revision: 0,
            mark_compacted: false,
        }
    }
}

#[derive(Debug, Args)]
struct RestoreArgs {
    args: Vec<PathBuf>,
    /// Path to the output data directory
    #[arg(long = "data-dir", required = true)]
    data_dir: PathBuf,
    #[command(flatten)]
    flags: RestoreFlags,
    /// How much to increase the latest revision after restore
    #[arg(long = "bump-revision", default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)
    #[arg(long = "mark-compacted")]
    mark_compacted: bool,
}

/// An error and the exit code it ends etcdutl with.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn error(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_ERROR,
            message: e.to_string(),
        }
    }

    fn bad_args(message: &str) -> Failure {
        Failure {
            code: EXIT_BAD_ARGS,
            message: message.to_owned(),
        }
    }
}

pub(crate) fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match execute(cli) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("Error: {}", f.message);
            f.code
        }
    }
}

fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Version => {
            println!("etcdutl version: {}", etcdserver::SERVER_VERSION);
            let api: Vec<&str> = etcdserver::SERVER_VERSION.splitn(3, '.').collect();
            println!("API version: {}", api[..2].join("."));
            Ok(())
        }
        Command::Defrag(a) => crate::defrag::defrag(&a.data_dir).map_err(|e| {
            Failure::error(format!(
                "Failed to defragment etcd data[{}] ({e})",
                a.data_dir.display()
            ))
        }),
        Command::Snapshot(SnapshotCommand::Status(a)) => {
            let [path] = a.args.as_slice() else {
                return Err(Failure::bad_args(
                    "snapshot status requires exactly one argument",
                ));
            };
            let status = snapshot::status(path).map_err(Failure::error)?;
            let out = format_status(&status, cli.write_out).map_err(|e| Failure {
                code: EXIT_BAD_FEATURE,
                message: e.to_string(),
            })?;
            print!("{out}");
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Restore(a)) => {
            let [path] = a.args.as_slice() else {
                return Err(Failure::bad_args(
                    "snapshot restore requires exactly one argument",
                ));
            };
            if (a.bump_revision == 0) == a.mark_compacted {
                return Err(Failure::bad_args(
                    "--mark-compacted required if --revision-bump > 0",
                ));
            }
            let mut cfg = a.flags.config(path.clone(), Some(a.data_dir));
            cfg.bump_revision = a.bump_revision;
            cfg.mark_compacted = a.mark_compacted;
            snapshot::restore(&cfg).map_err(Failure::error)
        }
    }
}
