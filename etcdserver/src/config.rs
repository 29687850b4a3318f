//! The `etcd` binary's configuration: etcd's flags with their defaults, their `ETCD_*`
//! environment variables and `--config-file` (a YAML file with etcd's keys), checked as etcd
//! checks them and with etcd's messages.
//!
//! As in etcd: an environment variable applies only where its flag is not on the command line,
//! a config file (`--config-file` or `ETCD_CONFIG_FILE`) replaces flags and environment
//! entirely, and URL lists are sorted and deduplicated (member ids are derived from the sorted
//! peer URLs).
//!
//! Where we differ, on purpose: listen and advertise defaults are `127.0.0.1`, not `localhost`;
//! a missing `--initial-cluster` is `<name>=<--initial-advertise-peer-urls>` whatever the name;
//! the initial cluster is checked here, on every start, where etcd checks it only when it
//! bootstraps a new data dir; only `http` URLs are accepted (no TLS, no unix sockets).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::core::Limits;

/// The etcd version this server reports (`/version`, Maintenance.Status, `--version`): clients
/// and tools gate features on it, so it is etcd's, not this crate's.
pub const SERVER_VERSION: &str = "3.5.17";
/// The cluster version reported beside [`SERVER_VERSION`].
pub const CLUSTER_VERSION: &str = "3.5.0";

/// `--version`'s text after `etcd `: etcd's block, with Go's names for the platform since tools
/// parse it.
static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "Version: {SERVER_VERSION}\n\
         Git SHA: Not provided (etcd-rs {})\n\
         Go Version: none (etcd-rs is written in Rust)\n\
         Go OS/Arch: {}/{arch}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
});

const DEFAULT_NAME: &str = "default";
const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
const DEFAULT_PEER_URL: &str = "http://127.0.0.1:2380";
const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";
const DEFAULT_HEARTBEAT_MS: u64 = 100;
const DEFAULT_ELECTION_MS: u64 = 1000;
const MAX_ELECTION_MS: u64 = 50_000;
const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// `--quota-backend-bytes 0` means this (etcd: 2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this etcd only warns.
const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
const DEFAULT_MAX_TXN_OPS: u64 = 128;

/// Why the configuration was refused. `Display` is the text etcd prints after `etcdmain: `.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag parse error, or a request for `--help`/`--version`: `clap::Error::exit` prints it
    /// and exits as etcd's flag package does (2 on error, 0 for help and version).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// A value etcd's flag verification refuses.
    #[error("error verifying flags, {0}. See 'etcd --help'.")]
    Invalid(String),
    /// What etcd refuses once its flags parsed, when it sets the member up.
    #[error("{0}")]
    Setup(String),
}

impl ConfigError {
    /// The status the `etcd` binary exits with, as etcd's.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Usage(e) => e.exit_code(),
            ConfigError::Invalid(_) | ConfigError::Setup(_) => 1,
        }
    }
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster (after `member add`).
    Existing,
}

/// `--auto-compaction-mode` with its `--auto-compaction-retention`; absent when the retention
/// is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// `--log-level`, folded onto `tracing`'s levels (etcd's `dpanic`, `panic` and `fatal` log
/// errors only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A `--listen-*-urls` entry: the URL as given and the address to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub url: String,
    pub addr: SocketAddr,
}

/// The server's configuration, every value checked and defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `--name`.
    pub name: String,
    /// `--data-dir` (`<name>.etcd` by default).
    pub data_dir: PathBuf,
    /// `--listen-client-urls`, sorted, without duplicates.
    pub listen_client_urls: Vec<ListenUrl>,
    /// `--advertise-client-urls`, sorted, without duplicates.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`, sorted, without duplicates.
    pub listen_peer_urls: Vec<ListenUrl>,
    /// `--initial-advertise-peer-urls`, sorted, without duplicates.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster`: member names in the order given, each with its sorted peer URLs.
    /// Contains this member, with exactly `initial_advertise_peer_urls`.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state`.
    pub cluster_state: ClusterState,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--heartbeat-interval`: one raft tick.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`: at least 5 heartbeats, at most 50 s.
    pub election_timeout: Duration,
    /// `--snapshot-count`: applied entries between two snapshots (0 given means etcd's 100 000).
    pub snapshot_count: u64,
    /// `--quota-backend-bytes`: 0 given means 2 GiB, a negative value disables the quota
    /// (`u64::MAX`).
    pub quota_backend_bytes: u64,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--auto-compaction-mode` and `--auto-compaction-retention`.
    pub auto_compaction: Option<AutoCompaction>,
    /// `--experimental-lease-checkpoint-interval` when `--experimental-enable-lease-checkpoint`
    /// is on; None when off (etcd's default: a new leader gives every lease its full TTL again).
    pub lease_checkpoint_interval: Option<Duration>,
    /// `--log-level`.
    pub log_level: LogLevel,
    /// The config file the values came from, if any.
    pub config_file: Option<PathBuf>,
    /// Things etcd would warn about (accepted values it discourages, config-file keys we
    /// ignore); the binary logs them once logging is up.
    pub warnings: Vec<String>,
}

impl Default for ServerConfig {
    /// etcd's defaults: a single member `default` in `default.etcd` on 127.0.0.1:2379/2380.
    fn default() -> Self {
        ServerConfig::from_args_and_env(["etcd"], |_| None)
            .expect("the built-in defaults are a valid configuration")
    }
}

impl ServerConfig {
    /// Parses a command line (`args[0]` is the program name) with the process's `ETCD_*`
    /// environment, as the `etcd` binary does.
    pub fn from_args<I, T>(args: I) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        ServerConfig::from_args_and_env(args, |name| std::env::var(name).ok())
    }

    /// [`ServerConfig::from_args`] with the environment given by `env` (name → value).
    pub fn from_args_and_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut args = args.into_iter().map(Into::into);
        let program = args.next().unwrap_or_else(|| OsString::from("etcd"));
        let given: Vec<OsString> = args.map(go_flag_form).collect();

        // An environment variable acts as its flag written before the command line, where a
        // flag given again overrides it; so a flag on the command line shadows its variable.
        let mut full = vec![program];
        for arg in Flags::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "version" || long == "help" {
                continue;
            }
            // etcd ignores a variable set to the empty string.
            if let Some(value) = env(&env_name(long)).filter(|v| !v.is_empty()) {
                full.push(OsString::from(format!("--{long}={value}")));
            }
        }
        full.extend(given.iter().cloned());

        let matches = Flags::command().try_get_matches_from(full)?;
        let flags = Flags::from_arg_matches(&matches)?;
        if let Some(stray) = flags.stray.first() {
            return Err(ConfigError::Invalid(format!(
                "'{stray}' is not a valid flag"
            )));
        }

        if let Some(path) = flags.config_file.clone() {
            let mut raw = RawConfig::from_file(&path)?;
            raw.config_file = Some(path);
            return raw.resolve();
        }

        let explicit = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        if explicit("listen_client_urls") && !explicit("advertise_client_urls") {
            return Err(ConfigError::Invalid(
                "--advertise-client-urls is required when --listen-client-urls is set \
                 explicitly"
                    .into(),
            ));
        }
        RawConfig::from(flags).resolve()
    }

    /// The request limits the services enforce.
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
        }
    }

    /// Raft's election timeout in heartbeat ticks (etcd: election / heartbeat, 10 by default).
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout.as_millis() / self.heartbeat_interval.as_millis()) as usize
    }

    /// `<data-dir>/member`, where etcd keeps everything of the member.
    pub fn member_dir(&self) -> PathBuf {
        self.data_dir.join("member")
    }

    /// `<data-dir>/member/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.member_dir().join("wal")
    }

    /// `<data-dir>/member/snap`.
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }

    /// `<data-dir>/member/snap/db`, the backend database.
    pub fn backend_path(&self) -> PathBuf {
        self.snap_dir().join("db")
    }
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

/// `ETCD_` + the flag's name upper-cased with `-` as `_`, as etcd's `flags.FlagToEnv`.
fn env_name(long: &str) -> String {
    format!("ETCD_{}", long.to_uppercase().replace('-', "_"))
}

/// etcd's command line. Values stay as text here and are checked in [`RawConfig::resolve`],
/// which a config file goes through too.
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
    #[arg(long, value_name = "STATE", default_value = "new")]
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
    #[arg(long, value_name = "MODE", default_value = "periodic")]
    auto_compaction_mode: String,
    /// Auto compaction retention (0 = off): a duration or hours ('periodic'), revisions
    /// ('revision').
    #[arg(
        long,
        value_name = "RETENTION",
        default_value = "0",
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
    #[arg(long, value_name = "DURATION", default_value = "5m0s")]
    experimental_lease_checkpoint_interval: String,
    /// Log level: debug, info, warn, error, dpanic, panic or fatal.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// 'zap' or 'capnslog' (accepted for compatibility; logs go to stderr either way).
    #[arg(long, value_name = "LOGGER", default_value = "zap")]
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
}

/// Every value before checks, whether from flags or from a config file.
#[derive(Debug)]
struct RawConfig {
    name: String,
    data_dir: Option<String>,
    listen_client_urls: String,
    advertise_client_urls: String,
    listen_peer_urls: String,
    initial_advertise_peer_urls: String,
    initial_cluster: Option<String>,
    initial_cluster_state: String,
    initial_cluster_token: String,
    heartbeat_interval: u64,
    election_timeout: u64,
    snapshot_count: u64,
    quota_backend_bytes: i64,
    max_request_bytes: u64,
    max_txn_ops: u64,
    auto_compaction_mode: String,
    auto_compaction_retention: String,
    lease_checkpoint: bool,
    lease_checkpoint_interval: String,
    log_level: String,
    logger: String,
    enable_v2: bool,
    config_file: Option<PathBuf>,
    warnings: Vec<String>,
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
        }
    }
}

/// The keys of etcd's YAML config file that we read; etcd ignores keys it does not know, and
/// so do we, with a warning.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    name: Option<String>,
    data_dir: Option<String>,
    listen_client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    listen_peer_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    initial_cluster_token: Option<String>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    snapshot_count: Option<u64>,
    quota_backend_bytes: Option<i64>,
    max_request_bytes: Option<u64>,
    max_txn_ops: Option<u64>,
    auto_compaction_mode: Option<String>,
    auto_compaction_retention: Option<Scalar>,
    experimental_enable_lease_checkpoint: Option<bool>,
    /// etcd reads a `time.Duration` from YAML as nanoseconds; a Go duration string is taken too.
    experimental_lease_checkpoint_interval: Option<Scalar>,
    log_level: Option<String>,
    logger: Option<String>,
    enable_v2: Option<bool>,
}

/// A YAML scalar read as text: `auto-compaction-retention: 1` and `"1h"` both occur.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

const FILE_KEYS: [&str; 20] = [
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "heartbeat-interval",
    "election-timeout",
    "snapshot-count",
    "quota-backend-bytes",
    "max-request-bytes",
    "max-txn-ops",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "log-level",
    "logger",
    "enable-v2",
];

impl RawConfig {
    fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("open {}: {e}", path.display())))?;
        let invalid = |e: serde_yaml_ng::Error| {
            ConfigError::Invalid(format!(
                "error unmarshaling config file {}: {e}",
                path.display()
            ))
        };
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(invalid)?;
        let mut warnings = Vec::new();
        let file: FileConfig = match value {
            // An empty file: every value at its default.
            serde_yaml_ng::Value::Null => FileConfig::default(),
            serde_yaml_ng::Value::Mapping(ref map) => {
                for key in map.keys() {
                    let key = key
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{key:?}"));
                    if !FILE_KEYS.contains(&key.as_str()) {
                        warnings.push(format!(
                            "config file {}: key {key:?} is not supported by etcd-rs and is \
                             ignored",
                            path.display()
                        ));
                    }
                }
                serde_yaml_ng::from_value(value).map_err(invalid)?
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "error unmarshaling config file {}: not a mapping of etcd's keys",
                    path.display()
                )))
            }
        };
        Ok(RawConfig {
            name: file.name.unwrap_or_else(|| DEFAULT_NAME.into()),
            data_dir: file.data_dir,
            listen_client_urls: file
                .listen_client_urls
                .unwrap_or_else(|| DEFAULT_CLIENT_URL.into()),
            advertise_client_urls: file
                .advertise_client_urls
                .unwrap_or_else(|| DEFAULT_CLIENT_URL.into()),
            listen_peer_urls: file
                .listen_peer_urls
                .unwrap_or_else(|| DEFAULT_PEER_URL.into()),
            initial_advertise_peer_urls: file
                .initial_advertise_peer_urls
                .unwrap_or_else(|| DEFAULT_PEER_URL.into()),
            initial_cluster: file.initial_cluster,
            initial_cluster_state: file.initial_cluster_state.unwrap_or_else(|| "new".into()),
            initial_cluster_token: file
                .initial_cluster_token
                .unwrap_or_else(|| DEFAULT_CLUSTER_TOKEN.into()),
            heartbeat_interval: file.heartbeat_interval.unwrap_or(DEFAULT_HEARTBEAT_MS),
            election_timeout: file.election_timeout.unwrap_or(DEFAULT_ELECTION_MS),
            snapshot_count: file.snapshot_count.unwrap_or(DEFAULT_SNAPSHOT_COUNT),
            quota_backend_bytes: file.quota_backend_bytes.unwrap_or(0),
            max_request_bytes: file.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            max_txn_ops: file.max_txn_ops.unwrap_or(DEFAULT_MAX_TXN_OPS),
            auto_compaction_mode: file
                .auto_compaction_mode
                .unwrap_or_else(|| "periodic".into()),
            auto_compaction_retention: match file.auto_compaction_retention {
                None => "0".into(),
                Some(Scalar::Int(n)) => n.to_string(),
                Some(Scalar::Text(s)) => s,
            },
            lease_checkpoint: file.experimental_enable_lease_checkpoint.unwrap_or(false),
            lease_checkpoint_interval: match file.experimental_lease_checkpoint_interval {
                None => "5m0s".into(),
                Some(Scalar::Int(nanos)) => format!("{nanos}ns"),
                Some(Scalar::Text(s)) => s,
            },
            log_level: file.log_level.unwrap_or_else(|| "info".into()),
            logger: file.logger.unwrap_or_else(|| "zap".into()),
            enable_v2: file.enable_v2.unwrap_or(false),
            config_file: None,
            warnings,
        })
    }

    /// etcd's checks, in etcd's order: flag verification first (`Invalid`), then what the
    /// member setup refuses (`Setup`).
    fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let invalid = ConfigError::Invalid;
        let mut warnings = self.warnings;

        let log_level = match self.log_level.as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" | "dpanic" | "panic" | "fatal" => LogLevel::Error,
            other => return Err(invalid(format!("unrecognized level: {other:?}"))),
        };
        if self.logger != "zap" && self.logger != "capnslog" {
            return Err(invalid(format!("unknown logger option {:?}", self.logger)));
        }

        let listen_peer_urls = listen_urls("listen-peer-urls", &self.listen_peer_urls)?;
        let listen_client_urls = listen_urls("listen-client-urls", &self.listen_client_urls)?;
        let initial_advertise_peer_urls = advertise_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        let advertise_client_urls =
            advertise_urls("advertise-client-urls", &self.advertise_client_urls)?;

        let cluster_state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => return Err(invalid(format!("unexpected clusterState {other:?}"))),
        };

        let (tick, election) = (self.heartbeat_interval, self.election_timeout);
        if tick == 0 {
            return Err(invalid(format!(
                "--heartbeat-interval must be >0 (set to {tick}ms)"
            )));
        }
        if election == 0 {
            return Err(invalid(format!(
                "--election-timeout must be >0 (set to {election}ms)"
            )));
        }
        if tick.saturating_mul(5) > election {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] should be at least as 5 times as \
                 --heartbeat-interval[{tick}ms]"
            )));
        }
        if election > MAX_ELECTION_MS {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] is too long, and should be set less than \
                 {MAX_ELECTION_MS}ms"
            )));
        }

        let periodic = match self.auto_compaction_mode.as_str() {
            "periodic" => true,
            "revision" => false,
            other => return Err(invalid(format!("unknown auto-compaction-mode {other:?}"))),
        };
        if self.enable_v2 {
            return Err(invalid(
                "--enable-v2: the v2 API is not served by etcd-rs; only --enable-v2=false is \
                 accepted"
                    .into(),
            ));
        }

        let interval = parse_go_duration(&self.lease_checkpoint_interval).map_err(|_| {
            invalid(format!(
                "invalid value {:?} for flag -experimental-lease-checkpoint-interval: parse \
                 error",
                self.lease_checkpoint_interval
            ))
        })?;
        let lease_checkpoint_interval = self.lease_checkpoint.then(|| {
            if interval.is_zero() {
                lease::DEFAULT_CHECKPOINT_INTERVAL
            } else {
                interval
            }
        });

        // Checked by etcd when it sets the member up.
        let auto_compaction = compaction(periodic, &self.auto_compaction_retention)?;
        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => vec![(self.name.clone(), initial_advertise_peer_urls.clone())],
        };
        check_initial_cluster(
            &self.name,
            self.initial_cluster.as_deref(),
            &initial_cluster,
            &initial_advertise_peer_urls,
        )?;

        let quota_backend_bytes = match self.quota_backend_bytes {
            0 => DEFAULT_QUOTA_BACKEND_BYTES,
            q if q < 0 => {
                warnings.push("disabled backend quota (negative --quota-backend-bytes)".into());
                u64::MAX
            }
            q => {
                let q = q as u64;
                if q > MAX_QUOTA_BACKEND_BYTES {
                    warnings.push(format!(
                        "quota exceeds the maximum value: --quota-backend-bytes {q} is above \
                         {MAX_QUOTA_BACKEND_BYTES} bytes"
                    ));
                }
                q
            }
        };
        let snapshot_count = if self.snapshot_count == 0 {
            warnings.push(format!(
                "updating snapshot-count to default: 0 given, {DEFAULT_SNAPSHOT_COUNT} used"
            ));
            DEFAULT_SNAPSHOT_COUNT
        } else {
            self.snapshot_count
        };
        if self.max_txn_ops == 0 {
            warnings.push("--max-txn-ops 0: every txn with an operation will be refused".into());
        }

        let data_dir = match self.data_dir.as_deref() {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(format!("{}.etcd", self.name)),
        };

        Ok(ServerConfig {
            name: self.name,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            cluster_state,
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_interval: Duration::from_millis(tick),
            election_timeout: Duration::from_millis(election),
            snapshot_count,
            quota_backend_bytes,
            max_request_bytes: usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
            max_txn_ops: usize::try_from(self.max_txn_ops).unwrap_or(usize::MAX),
            auto_compaction,
            lease_checkpoint_interval,
            log_level,
            config_file: self.config_file,
            warnings,
        })
    }
}

/// The host of a URL: an IP, or a name (resolved by whoever dials it, never here).
#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Whether `raw` is a URL a member may advertise (a runtime membership change checks it).
pub(crate) fn is_valid_member_url(raw: &str) -> bool {
    parse_url(raw).is_ok()
}

/// One URL as etcd's `types.NewURLs` accepts it (and only `http`): `http://host:port`, no
/// path. Returns the URL as given and its host and port.
fn parse_url(raw: &str) -> Result<(String, Host, u16), String> {
    let not_host_port = || format!("URL address does not have the form \"host:port\": {raw}");
    let (scheme, host_port) = raw.split_once("://").unwrap_or(("", raw));
    match scheme {
        "http" => {}
        "https" => {
            return Err(format!(
                "TLS is not supported by etcd-rs (https URL {raw}); use an http URL"
            ))
        }
        "unix" | "unixs" => {
            return Err(format!("unix sockets are not supported by etcd-rs: {raw}"))
        }
        _ => {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {raw}"
            ))
        }
    }
    if host_port.contains(['/', '?', '#']) {
        return Err(format!("URL must not contain a path: {raw}"));
    }
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, port) = bracketed.split_once("]:").ok_or_else(not_host_port)?;
            let ip = v6
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| not_host_port())?;
            (Host::Ip(IpAddr::V6(ip)), port)
        }
        None => {
            let (host, port) = host_port.rsplit_once(':').ok_or_else(not_host_port)?;
            if host.contains(':') {
                // An IPv6 address needs brackets, as in Go's net.SplitHostPort.
                return Err(not_host_port());
            }
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if is_host_name(host) => Host::Name(host.to_owned()),
                Err(_) => return Err(not_host_port()),
            };
            (host, port)
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port {port:?} in URL {raw}"))?;
    Ok((raw.to_owned(), host, port))
}

/// Letters, digits, `-` and `.`, as DNS names are.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A comma-separated URL list, sorted and deduplicated as etcd's `UniqueURLsFromFlag`.
fn url_list(flag: &str, list: &str) -> Result<Vec<(String, Host, u16)>, ConfigError> {
    let mut seen = BTreeSet::new();
    let mut urls = Vec::new();
    for raw in list.split(',').map(str::trim) {
        let parsed = parse_url(raw).map_err(|e| {
            ConfigError::Invalid(format!("invalid value {raw:?} for --{flag}: {e}"))
        })?;
        if seen.insert(parsed.0.clone()) {
            urls.push(parsed);
        }
    }
    urls.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(urls)
}

fn advertise_urls(flag: &str, list: &str) -> Result<Vec<String>, ConfigError> {
    Ok(url_list(flag, list)?
        .into_iter()
        .map(|(url, _, _)| url)
        .collect())
}

/// Listen URLs must name an IP (or `localhost`) to bind, as etcd's `checkBindURLs`.
fn listen_urls(flag: &str, list: &str) -> Result<Vec<ListenUrl>, ConfigError> {
    url_list(flag, list)?
        .into_iter()
        .map(|(url, host, port)| {
            let ip = match host {
                Host::Ip(ip) => ip,
                Host::Name(name) if name.eq_ignore_ascii_case("localhost") => {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                }
                Host::Name(_) => {
                    return Err(ConfigError::Invalid(format!(
                        "expected IP in URL for binding ({url})"
                    )))
                }
            };
            Ok(ListenUrl {
                url,
                addr: SocketAddr::new(ip, port),
            })
        })
        .collect()
}

/// `--initial-cluster`: `name=url,name=url,...`; a name given twice collects both URLs, as
/// etcd's `types.NewURLsMap`.
fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for entry in spec.split(',').filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
        let url = parse_url(url.trim())
            .map_err(|e| ConfigError::Setup(format!("error setting up initial cluster: {e}")))?
            .0;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_owned(), vec![url])),
        }
    }
    for (_, urls) in &mut members {
        urls.sort();
    }
    Ok(members)
}

/// What etcd checks of the initial cluster before it bootstraps a member.
fn check_initial_cluster(
    name: &str,
    spec: Option<&str>,
    members: &[(String, Vec<String>)],
    advertised: &[String],
) -> Result<(), ConfigError> {
    let setup = ConfigError::Setup;
    let spec = spec
        .map(str::to_owned)
        .unwrap_or_else(|| urls_map_string(members));
    let mut seen = BTreeSet::new();
    for url in members.iter().flat_map(|(_, urls)| urls) {
        if !seen.insert(url) {
            return Err(setup(format!("initial cluster {spec} has duplicate url")));
        }
    }
    let Some((_, urls)) = members.iter().find(|(n, _)| n == name) else {
        return Err(setup(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        )));
    };
    if urls == advertised {
        return Ok(());
    }
    let why = if urls.len() != advertised.len() {
        format!("len({}) != len({})", go_quoted(advertised), go_quoted(urls))
    } else {
        let (a, b) = advertised
            .iter()
            .zip(urls)
            .find(|(a, b)| a != b)
            .expect("equal lengths and unequal lists differ somewhere");
        format!("resolved urls: {a:?} != {b:?}")
    };
    let missing: Vec<String> = urls
        .iter()
        .filter(|u| !advertised.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(setup(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({why})",
            missing.join(","),
            advertised.join(",")
        )));
    }
    let extra: Vec<&str> = advertised
        .iter()
        .filter(|u| !urls.contains(u))
        .map(String::as_str)
        .collect();
    Err(setup(format!(
        "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
        extra.join(","),
        urls_map_string(&[(name.to_owned(), advertised.to_vec())])
    )))
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// etcd's `URLsMap.String()`: `name=url,...`.
fn urls_map_string(members: &[(String, Vec<String>)]) -> String {
    members
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// etcd's `parseCompactionRetention`: a non-negative integer is hours (periodic) or revisions
/// (revision); anything else must be a Go duration, which only periodic mode can use.
fn compaction(periodic: bool, retention: &str) -> Result<Option<AutoCompaction>, ConfigError> {
    let fail = |e: String| ConfigError::Setup(format!("error parsing CompactionRetention: {e}"));
    let auto = match retention.parse::<i64>() {
        Ok(n) if n >= 0 => {
            if n == 0 {
                return Ok(None);
            }
            if periodic {
                let secs = u64::try_from(n).unwrap_or(0).checked_mul(3600);
                AutoCompaction::Periodic(Duration::from_secs(
                    secs.ok_or_else(|| fail(format!("{n} hours is too long")))?,
                ))
            } else {
                AutoCompaction::Revision(n)
            }
        }
        _ => {
            let d = parse_go_duration(retention).map_err(fail)?;
            if !periodic {
                return Err(fail(format!(
                    "revision mode needs a number of revisions, got {retention:?}"
                )));
            }
            if d.is_zero() {
                return Ok(None);
            }
            AutoCompaction::Periodic(d)
        }
    };
    Ok(Some(auto))
}

/// Go's `time.ParseDuration` for non-negative durations: `300ms`, `1.5h`, `2h45m`...
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += value * scale;
        rest = after;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut full = vec!["etcd"];
        full.extend_from_slice(args);
        ServerConfig::from_args_and_env(full, |name| env.get(name).cloned())
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        parse_env(args, &[])
    }

    fn error(args: &[&str]) -> String {
        parse(args)
            .expect_err("expected the configuration to be refused")
            .to_string()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_flags_give_etcds_single_member_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(
            c.listen_client_urls,
            vec![ListenUrl {
                url: "http://127.0.0.1:2379".into(),
                addr: addr("127.0.0.1:2379")
            }]
        );
        assert_eq!(c.advertise_client_urls, vec!["http://127.0.0.1:2379"]);
        assert_eq!(c.listen_peer_urls[0].addr, addr("127.0.0.1:2380"));
        assert_eq!(c.initial_advertise_peer_urls, vec!["http://127.0.0.1:2380"]);
        assert_eq!(
            c.initial_cluster,
            vec![(
                "default".to_string(),
                vec!["http://127.0.0.1:2380".to_string()]
            )]
        );
        assert_eq!(c.cluster_state, ClusterState::New);
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.election_timeout, Duration::from_millis(1000));
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.quota_backend_bytes, 2_147_483_648);
        assert_eq!(c.limits(), Limits::default());
        assert_eq!(c.auto_compaction, None);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.config_file, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.backend_path(),
            PathBuf::from("default.etcd/member/snap/db")
        );
        assert_eq!(c.wal_dir(), PathBuf::from("default.etcd/member/wal"));
        assert_eq!(ServerConfig::default(), c);
    }

    #[test]
    fn every_flag_is_read() {
        let c = parse(&[
            "--name=m1",
            "--data-dir",
            "/var/lib/m1",
            "--listen-client-urls",
            "http://127.0.0.1:22379,http://[::1]:22379",
            "--advertise-client-urls",
            "http://10.0.0.1:22379",
            "--listen-peer-urls",
            "http://0.0.0.0:22380",
            "--initial-advertise-peer-urls",
            "http://10.0.0.1:22380",
            "--initial-cluster",
            "m0=http://10.0.0.0:22380,m1=http://10.0.0.1:22380,m2=http://10.0.0.2:22380",
            "--initial-cluster-state",
            "existing",
            "--initial-cluster-token",
            "tok",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--snapshot-count",
            "5",
            "--quota-backend-bytes",
            "1048576",
            "--max-request-bytes",
            "1024",
            "--max-txn-ops",
            "16",
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
            "--log-level",
            "debug",
            "--logger",
            "capnslog",
            "--enable-v2=false",
        ])
        .unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/m1"));
        let listen: Vec<SocketAddr> = c.listen_client_urls.iter().map(|l| l.addr).collect();
        // Sorted by URL text, as etcd sorts.
        assert_eq!(listen, vec![addr("127.0.0.1:22379"), addr("[::1]:22379")]);
        assert_eq!(c.advertise_client_urls, vec!["http://10.0.0.1:22379"]);
        assert_eq!(c.listen_peer_urls[0].addr, addr("0.0.0.0:22380"));
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.initial_cluster[2].0, "m2");
        assert_eq!(c.cluster_state, ClusterState::Existing);
        assert_eq!(c.initial_cluster_token, "tok");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.election_timeout, Duration::from_millis(500));
        assert_eq!(c.snapshot_count, 5);
        assert_eq!(c.quota_backend_bytes, 1_048_576);
        assert_eq!(
            c.limits(),
            Limits {
                max_request_bytes: 1024,
                max_txn_ops: 16
            }
        );
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Revision(1000)));
        assert_eq!(c.log_level, LogLevel::Debug);
    }

    #[test]
    fn the_harness_command_line_parses() {
        // What integration/src/cluster.rs gives member 1 of 3, plus a test's extra args.
        let c = parse(&[
            "--name",
            "m1",
            "--data-dir",
            "/tmp/etcd-rs-test-1-x/m1",
            "--listen-client-urls",
            "http://127.0.0.1:21002",
            "--advertise-client-urls",
            "http://127.0.0.1:21002",
            "--listen-peer-urls",
            "http://127.0.0.1:21003",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:21003",
            "--initial-cluster",
            "m0=http://127.0.0.1:21001,m1=http://127.0.0.1:21003,m2=http://127.0.0.1:21005",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "etcd-rs-test-1234-0",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--snapshot-count",
            "5",
        ])
        .unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.listen_client_urls[0].addr, addr("127.0.0.1:21002"));
        assert_eq!(c.listen_peer_urls[0].addr, addr("127.0.0.1:21003"));
        assert_eq!(
            c.initial_cluster
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
        assert_eq!(c.initial_cluster_token, "etcd-rs-test-1234-0");
        assert_eq!(c.snapshot_count, 5);
        assert_eq!(c.election_ticks(), 10);
    }

    #[test]
    fn a_name_alone_derives_data_dir_and_initial_cluster() {
        let c = parse(&["--name", "infra1"]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("infra1.etcd"));
        assert_eq!(
            c.initial_cluster,
            vec![(
                "infra1".to_string(),
                vec!["http://127.0.0.1:2380".to_string()]
            )]
        );
    }

    #[test]
    fn environment_variables_apply_unless_the_flag_is_given() {
        let env = [
            ("ETCD_NAME", "from-env"),
            ("ETCD_DATA_DIR", "/env/dir"),
            ("ETCD_SNAPSHOT_COUNT", "42"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:23000"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:23000"),
            ("ETCD_ENABLE_V2", "false"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "30m"),
            ("ETCD_UNRELATED", "x"),
            ("ETCD_INITIAL_CLUSTER", ""),
        ];
        let c = parse_env(&["--snapshot-count", "7"], &env).unwrap();
        assert_eq!(c.name, "from-env");
        assert_eq!(c.data_dir, PathBuf::from("/env/dir"));
        assert_eq!(c.snapshot_count, 7, "the flag shadows ETCD_SNAPSHOT_COUNT");
        assert_eq!(c.listen_client_urls[0].addr, addr("127.0.0.1:23000"));
        assert_eq!(
            c.auto_compaction,
            Some(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        // A listen URL set by environment counts as set explicitly, as in etcd.
        let e = parse_env(
            &[],
            &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:23000")],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("--advertise-client-urls is required"),
            "{e}"
        );
        // A bad value from the environment is refused like a bad flag.
        let e = parse_env(&[], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]).unwrap_err();
        assert!(matches!(e, ConfigError::Usage(_)), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_config_file_replaces_flags_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(
            &path,
            "# as etcd.conf.yml.sample\n\
             name: 'infra2'\n\
             data-dir: /data/infra2\n\
             wal-dir:\n\
             snapshot-count: 10000\n\
             heartbeat-interval: 200\n\
             election-timeout: 2000\n\
             quota-backend-bytes: -1\n\
             listen-peer-urls: http://127.0.0.1:24380\n\
             listen-client-urls: http://127.0.0.1:24379,http://localhost:24379\n\
             max-snapshots: 5\n\
             initial-advertise-peer-urls: http://127.0.0.1:24380\n\
             advertise-client-urls: http://127.0.0.1:24379\n\
             initial-cluster: infra1=http://127.0.0.1:23380,infra2=http://127.0.0.1:24380\n\
             initial-cluster-token: 'etcd-cluster-1'\n\
             initial-cluster-state: 'existing'\n\
             auto-compaction-mode: periodic\n\
             auto-compaction-retention: 1\n\
             max-txn-ops: 64\n\
             max-request-bytes: 2097152\n\
             log-level: warn\n\
             logger: zap\n\
             enable-v2: false\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let c = parse_env(
            &["--config-file", file, "--name", "ignored"],
            &[("ETCD_SNAPSHOT_COUNT", "1")],
        )
        .unwrap();
        assert_eq!(c.name, "infra2");
        assert_eq!(c.data_dir, PathBuf::from("/data/infra2"));
        assert_eq!(c.snapshot_count, 10_000);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.election_timeout, Duration::from_millis(2000));
        assert_eq!(c.quota_backend_bytes, u64::MAX);
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.listen_client_urls[1].addr, addr("127.0.0.1:24379"));
        assert_eq!(c.initial_cluster.len(), 2);
        assert_eq!(c.initial_cluster_token, "etcd-cluster-1");
        assert_eq!(c.cluster_state, ClusterState::Existing);
        assert_eq!(
            c.auto_compaction,
            Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(c.max_txn_ops, 64);
        assert_eq!(c.max_request_bytes, 2_097_152);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
        assert!(
            c.warnings.iter().any(|w| w.contains("\"max-snapshots\"")),
            "{:?}",
            c.warnings
        );

        // ETCD_CONFIG_FILE selects it too; missing keys take etcd's defaults.
        std::fs::write(&path, "name: solo\n").unwrap();
        let c = parse_env(&[], &[("ETCD_CONFIG_FILE", file)]).unwrap();
        assert_eq!(c.name, "solo");
        assert_eq!(c.data_dir, PathBuf::from("solo.etcd"));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.initial_cluster[0].0, "solo");

        // The file's values are checked as flags are.
        std::fs::write(&path, "heartbeat-interval: 100\nelection-timeout: 400\n").unwrap();
        let e = parse(&["--config-file", file]).unwrap_err().to_string();
        assert!(
            e.contains("--election-timeout[400ms] should be at least"),
            "{e}"
        );
        std::fs::write(&path, "heartbeat-interval: [1]\n").unwrap();
        let e = parse(&["--config-file", file]).unwrap_err().to_string();
        assert!(
            e.starts_with("error verifying flags, error unmarshaling config file"),
            "{e}"
        );
        let e = parse(&["--config-file", "/no/such/etcd.yml"]).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("/no/such/etcd.yml"), "{e}");
    }

    #[test]
    fn timing_is_checked_with_etcds_messages() {
        assert_eq!(
            error(&["--election-timeout", "100"]),
            "error verifying flags, --election-timeout[100ms] should be at least as 5 times as \
             --heartbeat-interval[100ms]. See 'etcd --help'."
        );
        assert_eq!(
            error(&["--heartbeat-interval", "0"]),
            "error verifying flags, --heartbeat-interval must be >0 (set to 0ms). See 'etcd \
             --help'."
        );
        assert_eq!(
            error(&["--election-timeout", "60000"]),
            "error verifying flags, --election-timeout[60000ms] is too long, and should be set \
             less than 50000ms. See 'etcd --help'."
        );
        assert!(parse(&["--heartbeat-interval", "10", "--election-timeout", "50"]).is_ok());
    }

    #[test]
    fn the_initial_cluster_is_checked_with_etcds_messages() {
        assert_eq!(
            error(&["--initial-cluster", "foo=http://127.0.0.1:2380"]),
            "couldn't find local name \"default\" in the initial cluster configuration"
        );
        assert_eq!(
            error(&["--initial-cluster", "default=http://127.0.0.1:2999"]),
            "--initial-cluster has default=http://127.0.0.1:2999 but missing from \
             --initial-advertise-peer-urls=http://127.0.0.1:2380 (resolved urls: \
             \"http://127.0.0.1:2380\" != \"http://127.0.0.1:2999\")"
        );
        assert_eq!(
            error(&[
                "--initial-cluster",
                "default=http://127.0.0.1:2380,default=http://127.0.0.1:2381"
            ]),
            "--initial-cluster has default=http://127.0.0.1:2381 but missing from \
             --initial-advertise-peer-urls=http://127.0.0.1:2380 \
             (len([\"http://127.0.0.1:2380\"]) != len([\"http://127.0.0.1:2380\" \
             \"http://127.0.0.1:2381\"]))"
        );
        assert_eq!(
            error(&[
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380,http://127.0.0.1:2381",
                "--initial-cluster",
                "default=http://127.0.0.1:2380"
            ]),
            "--initial-advertise-peer-urls has http://127.0.0.1:2381 but missing from \
             --initial-cluster=default=http://127.0.0.1:2380,default=http://127.0.0.1:2381"
        );
        assert_eq!(
            error(&[
                "--initial-cluster",
                "default=http://127.0.0.1:2380,m1=http://127.0.0.1:2380"
            ]),
            "initial cluster default=http://127.0.0.1:2380,m1=http://127.0.0.1:2380 has \
             duplicate url"
        );
        assert_eq!(
            error(&["--initial-cluster", "default=bad"]),
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: \
             bad"
        );
        // Two URLs for one member, given in any order, match the advertised ones.
        let c = parse(&[
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2381,http://127.0.0.1:2380",
            "--initial-cluster",
            "default=http://127.0.0.1:2381,default=http://127.0.0.1:2380",
        ])
        .unwrap();
        assert_eq!(
            c.initial_cluster[0].1,
            vec!["http://127.0.0.1:2380", "http://127.0.0.1:2381"]
        );
        assert_eq!(c.initial_advertise_peer_urls, c.initial_cluster[0].1);
    }

    #[test]
    fn urls_are_checked() {
        let e = error(&["--listen-client-urls", "http://127.0.0.1:23790"]);
        assert_eq!(
            e,
            "error verifying flags, --advertise-client-urls is required when \
             --listen-client-urls is set explicitly. See 'etcd --help'."
        );
        let e = error(&[
            "--listen-client-urls",
            "bad",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
        ]);
        assert!(
            e.contains("URL scheme must be http, https, unix, or unixs: bad"),
            "{e}"
        );
        assert!(error(&["--listen-peer-urls", "http://example.com:2380"])
            .contains("expected IP in URL for binding (http://example.com:2380)"));
        assert!(
            error(&["--initial-advertise-peer-urls", "http://127.0.0.1"])
                .contains("URL address does not have the form \"host:port\": http://127.0.0.1")
        );
        assert!(
            error(&["--advertise-client-urls", "http://127.0.0.1:2379/v2"])
                .contains("URL must not contain a path: http://127.0.0.1:2379/v2")
        );
        assert!(error(&["--listen-peer-urls", "http://127.0.0.1:99999"]).contains("99999"));
        for bad in [
            "http://",
            "http://:2380",
            "http://::1:2380",
            "http://[::1]",
            "http://[nope]:2380",
            "http://a b:2380",
            "http://user@host:2380",
        ] {
            assert!(
                error(&["--initial-advertise-peer-urls", bad]).contains("host:port"),
                "{bad}"
            );
        }
        assert!(error(&["--advertise-client-urls", "http://h:1?x=1"]).contains("path"));
        assert!(error(&["--listen-peer-urls", "https://127.0.0.1:2380"]).contains("TLS"));
        assert!(error(&["--listen-peer-urls", "unix://sock:1"]).contains("unix"));
        // Host names are fine where nothing binds; localhost binds to 127.0.0.1.
        let c = parse(&[
            "--listen-client-urls",
            "http://localhost:2379,http://127.0.0.1:2379,http://localhost:2379",
            "--advertise-client-urls",
            "http://node1.example:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(c.listen_client_urls.len(), 2, "duplicates dropped");
        assert_eq!(c.listen_client_urls[1].url, "http://localhost:2379");
        assert_eq!(c.listen_client_urls[1].addr, addr("127.0.0.1:2379"));
        assert_eq!(c.advertise_client_urls, vec!["http://node1.example:2379"]);
        assert_eq!(c.listen_peer_urls[0].addr.port(), 0);
    }

    #[test]
    fn enumerations_are_checked() {
        assert_eq!(
            error(&["--initial-cluster-state", "bad"]),
            "error verifying flags, unexpected clusterState \"bad\". See 'etcd --help'."
        );
        assert_eq!(
            error(&["--auto-compaction-mode", "foo"]),
            "error verifying flags, unknown auto-compaction-mode \"foo\". See 'etcd --help'."
        );
        assert!(error(&["--log-level", "foo"]).contains("unrecognized level: \"foo\""));
        assert!(error(&["--logger", "glog"]).contains("unknown logger option \"glog\""));
        assert!(error(&["--enable-v2"]).contains("--enable-v2"));
        assert!(error(&["--enable-v2=true"]).contains("--enable-v2"));
        for (level, want) in [
            ("warn", LogLevel::Warn),
            ("error", LogLevel::Error),
            ("fatal", LogLevel::Error),
        ] {
            assert_eq!(parse(&["--log-level", level]).unwrap().log_level, want);
        }
    }

    #[test]
    fn lease_checkpoints_are_off_unless_enabled() {
        let interval = |args: &[&str]| {
            parse(args)
                .map(|c| c.lease_checkpoint_interval)
                .map_err(|e| e.to_string())
        };
        assert_eq!(interval(&[]), Ok(None));
        assert_eq!(
            interval(&["--experimental-lease-checkpoint-interval", "1s"]),
            Ok(None)
        );
        assert_eq!(
            interval(&["--experimental-enable-lease-checkpoint"]),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            interval(&[
                "--experimental-enable-lease-checkpoint=true",
                "--experimental-lease-checkpoint-interval",
                "1.5s"
            ]),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            interval(&[
                "--experimental-enable-lease-checkpoint",
                "--experimental-lease-checkpoint-interval",
                "0"
            ]),
            Ok(Some(Duration::from_secs(300)))
        );
        let e = interval(&["--experimental-lease-checkpoint-interval", "soon"]).unwrap_err();
        assert!(e.contains("experimental-lease-checkpoint-interval"), "{e}");

        let c = parse_env(
            &[],
            &[
                ("ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", "true"),
                ("ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", "2m"),
            ],
        )
        .unwrap();
        assert_eq!(c.lease_checkpoint_interval, Some(Duration::from_secs(120)));

        // etcd's YAML holds a time.Duration as nanoseconds.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(
            &path,
            "experimental-enable-lease-checkpoint: true\n\
             experimental-lease-checkpoint-interval: 3000000000\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.lease_checkpoint_interval, Some(Duration::from_secs(3)));
    }

    #[test]
    fn auto_compaction_retention_as_etcd_reads_it() {
        let periodic = |r: &str| {
            parse(&["--auto-compaction-retention", r])
                .map(|c| c.auto_compaction)
                .map_err(|e| e.to_string())
        };
        let hours = |h: u64| {
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(
                h * 3600,
            ))))
        };
        assert_eq!(periodic("0"), Ok(None));
        assert_eq!(periodic("0s"), Ok(None));
        assert_eq!(periodic("1"), hours(1));
        assert_eq!(periodic("72"), hours(72));
        assert_eq!(periodic("1h"), hours(1));
        assert_eq!(
            periodic("30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            periodic("5s"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5))))
        );
        assert_eq!(
            periodic("1h30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            periodic("1.5s"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_millis(1500))))
        );
        assert_eq!(
            periodic("xx"),
            Err("error parsing CompactionRetention: time: invalid duration \"xx\"".into())
        );
        assert_eq!(
            periodic("-1"),
            Err("error parsing CompactionRetention: time: invalid duration \"-1\"".into())
        );
        assert_eq!(
            periodic("3d"),
            Err(
                "error parsing CompactionRetention: time: unknown unit \"d\" in duration \"3d\""
                    .into()
            )
        );
        let revision = |r: &str| {
            parse(&[
                "--auto-compaction-mode",
                "revision",
                "--auto-compaction-retention",
                r,
            ])
            .map(|c| c.auto_compaction)
        };
        assert_eq!(
            revision("100").unwrap(),
            Some(AutoCompaction::Revision(100))
        );
        assert_eq!(revision("0").unwrap(), None);
        assert!(revision("1h").is_err());
    }

    #[test]
    fn sizes_follow_etcd() {
        let c = parse(&[
            "--snapshot-count",
            "0",
            "--quota-backend-bytes",
            "9000000000",
        ])
        .unwrap();
        assert_eq!(c.snapshot_count, 100_000, "0 means etcd's default");
        assert_eq!(c.quota_backend_bytes, 9_000_000_000);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        // etcd accepts --max-txn-ops 0 (every txn with ops is then refused); so do we.
        assert_eq!(parse(&["--max-txn-ops", "0"]).unwrap().max_txn_ops, 0);
        assert!(matches!(
            parse(&["--max-txn-ops", "-1"]),
            Err(ConfigError::Usage(_))
        ));
    }

    #[test]
    fn unknown_flags_and_arguments_are_refused() {
        let e = parse(&["--no-such-flag"]).unwrap_err();
        assert!(matches!(e, ConfigError::Usage(_)));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--no-such-flag"), "{e}");
        assert!(matches!(
            parse(&["--heartbeat-interval", "abc"]),
            Err(ConfigError::Usage(_))
        ));
        assert_eq!(
            error(&["member"]),
            "error verifying flags, 'member' is not a valid flag. See 'etcd --help'."
        );
        // As Go's flag package, the last of a repeated flag wins, and one dash is enough.
        assert_eq!(parse(&["--name", "a", "--name", "b"]).unwrap().name, "b");
        let c = parse(&[
            "-name",
            "go",
            "-snapshot-count=9",
            "-quota-backend-bytes",
            "-1",
        ])
        .unwrap();
        assert_eq!((c.name.as_str(), c.snapshot_count), ("go", 9));
        assert_eq!(c.quota_backend_bytes, u64::MAX);
    }

    #[test]
    fn version_prints_an_etcd_style_block() {
        let e = parse(&["--version"]).unwrap_err();
        let ConfigError::Usage(e) = e else {
            panic!("expected a version display, got {e:?}")
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(e.exit_code(), 0);
        let text = e.to_string();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("etcd Version: 3.5.17"));
        assert!(lines.next().unwrap().starts_with("Git SHA: "));
        assert!(lines.next().unwrap().starts_with("Go Version: "));
        assert!(lines.next().unwrap().starts_with("Go OS/Arch: linux/"));
        assert!(SERVER_VERSION.starts_with("3.5."));
        let help = parse(&["--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(help.to_string().contains("--initial-cluster-token"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("2h45m"), Ok(Duration::from_secs(9900)));
        assert_eq!(parse_go_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("h").is_err());
        assert!(parse_go_duration("1..5s").is_err());
        assert!(parse_go_duration("5").unwrap_err().contains("missing unit"));
    }
}
