//! Why the configuration was refused, worded as etcd words it.

use std::path::PathBuf;

use super::cluster::ClusterError;
use super::compaction::RetentionError;
use super::defaults::MAX_ELECTION_MS;
use super::urls::UrlListError;

/// Why the configuration was refused. `Display` is the text etcd prints after `etcdmain: `.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag parse error, or a request for `--help`/`--version`: `clap::Error::exit` prints it
    /// and exits as etcd's flag package does (2 on error, 0 for help and version).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// A value etcd's flag verification refuses.
    #[error("error verifying flags, {0}. See 'etcd --help'.")]
    Invalid(#[from] InvalidFlag),
    /// What etcd refuses once its flags parsed, when it sets the member up.
    #[error(transparent)]
    Setup(#[from] SetupError),
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

/// What etcd's flag verification refuses (`error verifying flags, ...`).
#[derive(Debug, thiserror::Error)]
pub enum InvalidFlag {
    /// etcd takes no positional arguments.
    #[error("'{0}' is not a valid flag")]
    NotAFlag(String),
    #[error("--advertise-client-urls is required when --listen-client-urls is set explicitly")]
    AdvertiseClientUrlsRequired,
    #[error("open {}: {source}", path.display())]
    ReadConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("error unmarshaling config file {}: {source}", path.display())]
    ParseConfigFile {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("error unmarshaling config file {}: not a mapping of etcd's keys", path.display())]
    ConfigFileNotAMapping { path: PathBuf },
    #[error("unrecognized level: {0:?}")]
    LogLevel(String),
    #[error("unknown logger option {0:?}")]
    Logger(String),
    #[error(transparent)]
    Url(#[from] UrlListError),
    #[error("unexpected clusterState {0:?}")]
    ClusterState(String),
    #[error("--heartbeat-interval must be >0 (set to {0}ms)")]
    ZeroHeartbeat(u64),
    #[error("--election-timeout must be >0 (set to {0}ms)")]
    ZeroElectionTimeout(u64),
    #[error(
        "--election-timeout[{election_ms}ms] should be at least as 5 times as \
         --heartbeat-interval[{heartbeat_ms}ms]"
    )]
    ElectionTimeoutTooShort { election_ms: u64, heartbeat_ms: u64 },
    #[error(
        "--election-timeout[{0}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
    )]
    ElectionTimeoutTooLong(u64),
    #[error("unknown auto-compaction-mode {0:?}")]
    CompactionMode(String),
    #[error(
        "--enable-v2: the v2 API is not served by etcd-rs; only --enable-v2=false is accepted"
    )]
    EnableV2,
    /// Go's flag package's words for a value its parser refused.
    #[error("invalid value {0:?} for flag -experimental-lease-checkpoint-interval: parse error")]
    LeaseCheckpointInterval(String),
    // corrupt
    #[error(transparent)]
    Corrupt(#[from] super::corrupt::CorruptFlagError),
    // downgrade
    #[error("invalid value {0:?} for flag -experimental-downgrade-check-time: parse error")]
    DowngradeCheckTime(String),
    #[error("invalid value {0:?} for flag -test-only-apply-delay: parse error")]
    TestOnlyApplyDelay(String),
}

/// What etcd refuses when it sets the member up, after the flags verified.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    InitialCluster(#[from] ClusterError),
    #[error("error parsing CompactionRetention: {0}")]
    CompactionRetention(#[from] RetentionError),
    // tls
    #[error(transparent)]
    Tls(#[from] super::tls::TlsConfigError),
}
