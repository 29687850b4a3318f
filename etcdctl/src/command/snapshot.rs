//! `snapshot save|status|restore` as etcdctl 3.4 has them; status and restore are etcdutl's
//! library, as etcd 3.5's etcdctl calls etcdutl's.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::maintenance::{self, NoArgs};
use crate::error::{CommandError, ExitCode, Result};
use crate::global::GlobalArgs;
use crate::printer::Format;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save(NoArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
    /// Gets backend snapshot status of a given file
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    args: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    args: Vec<PathBuf>,
    /// Path to the data directory
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    flags: etcdutl::RestoreFlags,
    /// How much to increase the latest revision after restore (etcd 3.5)
    #[arg(long = "bump-revision", default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (etcd 3.5; required if --bump-revision > 0, disallowed otherwise)
    #[arg(long = "mark-compacted")]
    mark_compacted: bool,
}

impl SnapshotCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        match self {
            SnapshotCommand::Save(args) => maintenance::snapshot_save(args, global).await,
            SnapshotCommand::Status(args) => status(args, global),
            SnapshotCommand::Restore(args) => tokio::task::spawn_blocking(move || restore(args))
                .await
                .map_err(|e| CommandError::error(e.to_string()))?,
        }
    }
}

fn status(args: StatusArgs, global: &GlobalArgs) -> Result<()> {
    let [path] = args.args.as_slice() else {
        return Err(CommandError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    };
    let status = etcdutl::snapshot::status(path).map_err(|e| CommandError::error(e.to_string()))?;
    let format = match global.write_out {
        Format::Simple => etcdutl::printer::OutputFormat::Simple,
        Format::Json => etcdutl::printer::OutputFormat::Json,
        Format::Fields => etcdutl::printer::OutputFormat::Fields,
        Format::Table => etcdutl::printer::OutputFormat::Table,
        Format::Protobuf => return Err(CommandError::unsupported_format("protobuf")),
    };
    let out = etcdutl::printer::format_status(&status, format)
        .map_err(|e| CommandError::new(ExitCode::BadFeature, e.to_string()))?;
    print!("{out}");
    Ok(())
}

fn restore(args: RestoreArgs) -> Result<()> {
    let [path] = args.args.as_slice() else {
        return Err(CommandError::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    };
    if (args.bump_revision == 0) == args.mark_compacted {
        return Err(CommandError::bad_args(
            "--mark-compacted required if --revision-bump > 0",
        ));
    }
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.flags.name)));
    // etcdctl 3.4 refuses any existing data dir, even an empty one (etcdutl 3.5 takes that).
    if data_dir.exists() {
        return Err(CommandError::error(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    // etcdctl 3.4 logs the restore's steps on stderr.
    etcdutl::init_logging();
    let mut cfg = args.flags.config(path.clone(), Some(data_dir));
    cfg.bump_revision = args.bump_revision;
    cfg.mark_compacted = args.mark_compacted;
    etcdutl::snapshot::restore(&cfg).map_err(|e| CommandError::error(e.to_string()))
}
