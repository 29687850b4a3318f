//! etcd's command line, as etcdmain's flag set: each flag with etcd's default, Go's `-flag`
//! form, and the `ETCD_*` variables applied under it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use super::auth::{DEFAULT_AUTH_TOKEN, DEFAULT_AUTH_TOKEN_TTL_SECS, DEFAULT_BCRYPT_COST};
use super::defaults::*;
use super::env::flags_from_env;
use super::error::{ConfigError, InvalidFlag};
use super::raw::RawConfig;
use super::tls::TlsFlags;
use super::version::{LONG_VERSION, SERVER_VERSION};

/// Where the values come from: the flags (with the environment), or a config file that
/// replaces them entirely.
pub(super) enum CommandLine {
    Flags(Box<RawConfig>),
    ConfigFile(PathBuf),
}

/// Parses a command line (`args[0]` is the program name) with the environment given by `env`
/// (name → value).
pub(super) fn parse_command_line<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<String>,
) -> Result<CommandLine, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args = args.into_iter().map(Into::into);
    let program = args.next().unwrap_or_else(|| OsString::from("etcd"));

    // An environment variable acts as its flag written before the command line, where a flag
    // given again overrides it; so a flag on the command line shadows its variable.
    let mut full = vec![program];
    full.extend(flags_from_env(&Flags::command(), env));
    full.extend(args.map(go_flag_form));

    let matches = Flags::command().try_get_matches_from(full)?;
    let mut flags = Flags::from_arg_matches(&matches)?;
    if let Some(stray) = flags.stray.first() {
        return Err(InvalidFlag::NotAFlag(stray.clone()).into());
    }
    if let Some(path) = flags.config_file.take() {
        return Ok(CommandLine::ConfigFile(path));
    }

    let explicit = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    if explicit("listen_client_urls") && !explicit("advertise_client_urls") {
        return Err(InvalidFlag::AdvertiseClientUrlsRequired.into());
    }
    Ok(CommandLine::Flags(Box::new(RawConfig::from(flags))))
}

/// Go's flag package takes `-name` as `--name`; so do we (a negative number stays a value).
fn go_flag_form(arg: OsString) -> OsString {
    match arg.to_str() {
        Some(s) if s.len() > 2 && s.starts_with('-') && s.as_bytes()[1].is_ascii_alphabetic() => {
            OsString::from(format!("-{s}"))
        }
        _ => arg,
    }
}

/// etcd's command line. Values stay as text here and are checked where a config file's are.
#[derive(Debug, Parser)]
#[command(
    name = "etcd",
    about = "etcd-rs: a distributed, reliable key-value store (etcd's v3 API)",
    version = SERVER_VERSION,
    long_version = LONG_VERSION.as_str(),
    disable_version_flag = true,
    args_override_self = true
)]
struct Flags {
    /// Human-readable name for this member.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NAME)]
    name: String,
    /// Path to the data directory [default: ${name}.etcd].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, value_name = "URLS", default_value = DEFAULT_CLIENT_URL)]
    listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, value_name = "URLS", default_value = DEFAULT_CLIENT_URL)]
    advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, value_name = "URLS", default_value = DEFAULT_PEER_URL)]
    listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, value_name = "URLS", default_value = DEFAULT_PEER_URL)]
    initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping [default:
    /// ${name}=${initial-advertise-peer-urls}].
    #[arg(long, value_name = "NAME=URL,...")]
    initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_name = "STATE", default_value = DEFAULT_CLUSTER_STATE)]
    initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, value_name = "TOKEN", default_value = DEFAULT_CLUSTER_TOKEN)]
    initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_ELECTION_MS)]
    election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SNAPSHOT_COUNT)]
    snapshot_count: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TXN_OPS)]
    max_txn_ops: u64,
    /// Interpret 'auto-compaction-retention' as hours ('periodic') or revisions ('revision').
    #[arg(long, value_name = "MODE", default_value = DEFAULT_COMPACTION_MODE)]
    auto_compaction_mode: String,
    /// Auto compaction retention (0 = off): a duration or hours ('periodic'), revisions
    /// ('revision').
    #[arg(
        long,
        value_name = "RETENTION",
        default_value = DEFAULT_COMPACTION_RETENTION,
        allow_hyphen_values = true
    )]
    auto_compaction_retention: String,
    /// Enable the leader to send regular checkpoints to other members, so a leader change does not
    /// reset leases' remaining TTLs.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    experimental_enable_lease_checkpoint: bool,
    /// How often the leader checkpoints leases (a Go duration; 0 means the default).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_LEASE_CHECKPOINT_INTERVAL)]
    experimental_lease_checkpoint_interval: String,
    /// Log level: debug, info, warn, error, dpanic, panic or fatal.
    #[arg(long, value_name = "LEVEL", default_value = DEFAULT_LOG_LEVEL)]
    log_level: String,
    /// 'zap' or 'capnslog' (accepted for compatibility; logs go to stderr either way).
    #[arg(long, value_name = "LOGGER", default_value = DEFAULT_LOGGER)]
    logger: String,
    /// Accept etcd v2 API requests (only 'false': the v2 API is not served).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    enable_v2: bool,
    /// Path to a YAML config file; other flags and environment variables are then ignored.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(long, action = ArgAction::Version)]
    version: Option<bool>,
    /// etcd takes no positional arguments; caught to give its message.
    #[arg(hide = true)]
    stray: Vec<String>,
    // auth
    /// Specify auth token specific options: 'simple' or
    /// 'jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]'.
    #[arg(long, value_name = "TOKEN", default_value = DEFAULT_AUTH_TOKEN)]
    auth_token: String,
    /// The lifetime in seconds of an unused simple auth token.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_AUTH_TOKEN_TTL_SECS)]
    auth_token_ttl: u64,
    /// Specify bcrypt algorithm cost factor for auth password hashing (4..31).
    #[arg(long, value_name = "COST", default_value_t = DEFAULT_BCRYPT_COST)]
    bcrypt_cost: u64,
    // tls
    #[command(flatten)]
    tls: TlsFlags,
    // corrupt
    #[command(flatten)]
    corrupt: super::corrupt::CorruptFlags,
    // downgrade
    /// Duration of time between two downgrade status checks.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_DOWNGRADE_CHECK_TIME)]
    experimental_downgrade_check_time: String,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    max_concurrent_streams: u32,
    /// Tests only, not an etcd flag (hidden from --help): the apply thread sleeps this long
    /// before each request it applies, so that a test can build etcd's 5000-entry apply backlog.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "0s")]
    test_only_apply_delay: String,
}

impl From<Flags> for RawConfig {
    fn from(f: Flags) -> Self {
        RawConfig {
            name: f.name,
            data_dir: f.data_dir,
            listen_client_urls: f.listen_client_urls,
            advertise_client_urls: f.advertise_client_urls,
            listen_peer_urls: f.listen_peer_urls,
            initial_advertise_peer_urls: f.initial_advertise_peer_urls,
            initial_cluster: f.initial_cluster,
            initial_cluster_state: f.initial_cluster_state,
            initial_cluster_token: f.initial_cluster_token,
            heartbeat_interval: f.heartbeat_interval,
            election_timeout: f.election_timeout,
            snapshot_count: f.snapshot_count,
            quota_backend_bytes: f.quota_backend_bytes,
            max_request_bytes: f.max_request_bytes,
            max_txn_ops: f.max_txn_ops,
            auto_compaction_mode: f.auto_compaction_mode,
            auto_compaction_retention: f.auto_compaction_retention,
            lease_checkpoint: f.experimental_enable_lease_checkpoint,
            lease_checkpoint_interval: f.experimental_lease_checkpoint_interval,
            log_level: f.log_level,
            logger: f.logger,
            enable_v2: f.enable_v2,
            config_file: None,
            warnings: Vec::new(),
            auth_token: f.auth_token,
            auth_token_ttl: f.auth_token_ttl,
            bcrypt_cost: f.bcrypt_cost,
            // tls
            tls: f.tls.into(),
            // corrupt
            corrupt: f.corrupt.into(),
            // downgrade
            downgrade_check_time: f.experimental_downgrade_check_time,
            max_concurrent_streams: f.max_concurrent_streams,
            test_only_apply_delay: f.test_only_apply_delay,
        }
    }
}
