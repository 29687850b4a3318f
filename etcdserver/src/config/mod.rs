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
//! bootstraps a new data dir; the TLS settings are checked against the listen URLs here, before
//! anything is served.
//!
//! The files follow etcd's split: `flags` and `env` are etcdmain's flag set, `file` the YAML
//! of `embed.ConfigFromFile`, `raw` the values before checks, `urls` and `cluster` the URL and
//! initial-cluster checks, `compaction` `parseCompactionRetention`; this file holds the checked
//! configuration and the checks that need more than one value.

mod auth;
mod cluster;
mod compaction;
mod corrupt;
mod defaults;
mod env;
mod error;
mod file;
mod flags;
mod raw;
mod tls;
mod urls;
mod version;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::Limits;

pub use auth::AuthConfig;
pub use cluster::{ClusterError, ClusterState};
pub use compaction::{AutoCompaction, RetentionError};
// corrupt
pub use corrupt::{CorruptCheckConfig, CorruptFlagError, DEFAULT_CORRUPT_CHECK_TIME};
pub use defaults::DEFAULT_QUOTA_BACKEND_BYTES;
pub use error::{ConfigError, InvalidFlag, SetupError};
pub use tls::{cipher_suite, TlsConfig, TlsConfigError, TlsInfo, TlsVersion};
pub(crate) use urls::is_valid_member_url;
pub use urls::{ListenAddr, ListenUrl, UrlError, UrlListError};
pub use version::SERVER_VERSION;

use compaction::CompactionMode;
use defaults::{DEFAULT_SNAPSHOT_COUNT, MAX_ELECTION_MS, MAX_QUOTA_BACKEND_BYTES};
use flags::CommandLine;
use raw::RawConfig;

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
    /// `--log-level`'s value.
    fn parse(level: &str) -> Result<LogLevel, InvalidFlag> {
        match level {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" | "dpanic" | "panic" | "fatal" => Ok(LogLevel::Error),
            other => Err(InvalidFlag::LogLevel(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
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
    // auth
    /// `--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`.
    pub auth: AuthConfig,
    // tls
    /// The client and peer TLS settings.
    pub tls: TlsConfig,
    // corrupt
    /// The corruption checks.
    pub corrupt_check: CorruptCheckConfig,
    // downgrade
    /// `--experimental-downgrade-check-time`; None for 0 (the leader never checks).
    pub downgrade_check_time: Option<Duration>,
    /// `--max-concurrent-streams`: HTTP/2 streams one client connection may have open.
    pub max_concurrent_streams: u32,
    /// The hidden `--test-only-apply-delay`: how long the apply thread sleeps before each request
    /// (tests build an apply backlog with it; None normally).
    pub test_only_apply_delay: Option<Duration>,
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

    pub fn from_args_and_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let raw = match flags::parse_command_line(args, env)? {
            CommandLine::Flags(raw) => *raw,
            CommandLine::ConfigFile(path) => file::read_config_file(&path)?,
        };
        ServerConfig::check(raw)
    }

    /// The request limits the services enforce.
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            max_concurrent_streams: self.max_concurrent_streams,
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

    /// etcd's checks, in etcd's order: flag verification first ([`ConfigError::Invalid`]),
    /// then what the member setup refuses ([`ConfigError::Setup`]).
    fn check(raw: RawConfig) -> Result<ServerConfig, ConfigError> {
        let mut warnings = raw.warnings;

        let log_level = LogLevel::parse(&raw.log_level)?;
        if raw.logger != "zap" && raw.logger != "capnslog" {
            return Err(InvalidFlag::Logger(raw.logger).into());
        }

        let listen_peer_urls = urls::listen_urls("listen-peer-urls", &raw.listen_peer_urls)
            .map_err(InvalidFlag::from)?;
        let listen_client_urls = urls::listen_urls("listen-client-urls", &raw.listen_client_urls)
            .map_err(InvalidFlag::from)?;
        let initial_advertise_peer_urls = urls::advertise_urls(
            "initial-advertise-peer-urls",
            &raw.initial_advertise_peer_urls,
        )
        .map_err(InvalidFlag::from)?;
        let advertise_client_urls =
            urls::advertise_urls("advertise-client-urls", &raw.advertise_client_urls)
                .map_err(InvalidFlag::from)?;

        let cluster_state = match raw.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            _ => return Err(InvalidFlag::ClusterState(raw.initial_cluster_state).into()),
        };

        let (tick, election) = (raw.heartbeat_interval, raw.election_timeout);
        if tick == 0 {
            return Err(InvalidFlag::ZeroHeartbeat(tick).into());
        }
        if election == 0 {
            return Err(InvalidFlag::ZeroElectionTimeout(election).into());
        }
        if tick.saturating_mul(5) > election {
            return Err(InvalidFlag::ElectionTimeoutTooShort {
                election_ms: election,
                heartbeat_ms: tick,
            }
            .into());
        }
        if election > MAX_ELECTION_MS {
            return Err(InvalidFlag::ElectionTimeoutTooLong(election).into());
        }

        let compaction_mode = match raw.auto_compaction_mode.as_str() {
            "periodic" => CompactionMode::Periodic,
            "revision" => CompactionMode::Revision,
            _ => return Err(InvalidFlag::CompactionMode(raw.auto_compaction_mode).into()),
        };
        if raw.enable_v2 {
            return Err(InvalidFlag::EnableV2.into());
        }

        // downgrade
        let Ok(downgrade_check_time) = pkg::flags::parse_go_duration(&raw.downgrade_check_time)
        else {
            return Err(InvalidFlag::DowngradeCheckTime(raw.downgrade_check_time).into());
        };
        let downgrade_check_time = Some(downgrade_check_time).filter(|t| !t.is_zero());
        let Ok(apply_delay) = pkg::flags::parse_go_duration(&raw.test_only_apply_delay) else {
            return Err(InvalidFlag::TestOnlyApplyDelay(raw.test_only_apply_delay).into());
        };
        let test_only_apply_delay = Some(apply_delay).filter(|t| !t.is_zero());

        let Ok(interval) = pkg::flags::parse_go_duration(&raw.lease_checkpoint_interval) else {
            return Err(InvalidFlag::LeaseCheckpointInterval(raw.lease_checkpoint_interval).into());
        };
        let lease_checkpoint_interval = raw.lease_checkpoint.then(|| {
            if interval.is_zero() {
                lease::DEFAULT_CHECKPOINT_INTERVAL
            } else {
                interval
            }
        });

        // Checked by etcd when it sets the member up.
        let auto_compaction =
            compaction::auto_compaction(compaction_mode, &raw.auto_compaction_retention)
                .map_err(SetupError::from)?;
        let initial_cluster = match &raw.initial_cluster {
            Some(spec) => cluster::parse_initial_cluster(spec).map_err(SetupError::from)?,
            None => vec![(raw.name.clone(), initial_advertise_peer_urls.clone())],
        };
        cluster::check_initial_cluster(
            &raw.name,
            raw.initial_cluster.as_deref(),
            &initial_cluster,
            &initial_advertise_peer_urls,
        )
        .map_err(SetupError::from)?;

        let quota_backend_bytes = match raw.quota_backend_bytes {
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
        let snapshot_count = if raw.snapshot_count == 0 {
            warnings.push(format!(
                "updating snapshot-count to default: 0 given, {DEFAULT_SNAPSHOT_COUNT} used"
            ));
            DEFAULT_SNAPSHOT_COUNT
        } else {
            raw.snapshot_count
        };
        if raw.max_txn_ops == 0 {
            warnings.push("--max-txn-ops 0: every txn with an operation will be refused".into());
        }

        let data_dir = match raw.data_dir.as_deref() {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(format!("{}.etcd", raw.name)),
        };

        let listen_client_text: Vec<String> =
            listen_client_urls.iter().map(|u| u.url.clone()).collect();
        let listen_peer_text: Vec<String> =
            listen_peer_urls.iter().map(|u| u.url.clone()).collect();
        let tls = tls::check(
            raw.tls,
            &listen_client_text,
            &listen_peer_text,
            &mut warnings,
        )
        .map_err(SetupError::from)?;
        // corrupt
        let corrupt_check =
            corrupt::check(raw.corrupt, &mut warnings).map_err(InvalidFlag::from)?;

        Ok(ServerConfig {
            name: raw.name,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            cluster_state,
            initial_cluster_token: raw.initial_cluster_token,
            heartbeat_interval: Duration::from_millis(tick),
            election_timeout: Duration::from_millis(election),
            snapshot_count,
            quota_backend_bytes,
            max_request_bytes: usize::try_from(raw.max_request_bytes).unwrap_or(usize::MAX),
            max_txn_ops: usize::try_from(raw.max_txn_ops).unwrap_or(usize::MAX),
            auto_compaction,
            lease_checkpoint_interval,
            log_level,
            config_file: raw.config_file,
            warnings,
            auth: AuthConfig::from_raw(raw.auth_token, raw.auth_token_ttl, raw.bcrypt_cost),
            // tls
            tls,
            // corrupt
            corrupt_check,
            // downgrade
            downgrade_check_time,
            max_concurrent_streams: raw.max_concurrent_streams,
            test_only_apply_delay,
        })
    }
}

// restore
/// The members `--initial-cluster` names (each with its sorted peer URLs, in the order given),
/// after etcd's checks of them against `name` and its advertised peer URLs (`VerifyBootstrap`),
/// as `snapshot restore` runs them; the errors are etcd's.
pub fn initial_cluster_for(
    name: &str,
    spec: &str,
    advertised_peer_urls: &[String],
) -> Result<Vec<(String, Vec<String>)>, ClusterError> {
    let mut advertised = advertised_peer_urls
        .iter()
        .map(|u| urls::parse_url(u.trim()).map(|p| p.url))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClusterError::Url)?;
    advertised.sort();
    let members = cluster::parse_initial_cluster(spec)?;
    cluster::check_initial_cluster(name, Some(spec), &members, &advertised)?;
    Ok(members)
}

#[cfg(test)]
mod tests;
