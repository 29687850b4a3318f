//! `--config-file`: etcd's YAML config file, which replaces flags and environment entirely.

use std::path::Path;

use serde::Deserialize;

use super::auth::{DEFAULT_AUTH_TOKEN, DEFAULT_AUTH_TOKEN_TTL_SECS, DEFAULT_BCRYPT_COST};
use super::defaults::*;
use super::error::InvalidFlag;
use super::raw::RawConfig;

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
    // auth
    auth_token: Option<String>,
    auth_token_ttl: Option<u64>,
    bcrypt_cost: Option<u64>,
    // tls
    #[serde(flatten)]
    tls: super::tls::FileTls,
    // corrupt
    #[serde(flatten)]
    corrupt: super::corrupt::FileCorrupt,
    // downgrade
    /// A `time.Duration`: nanoseconds, or a Go duration string.
    experimental_downgrade_check_time: Option<Scalar>,
    max_concurrent_streams: Option<u32>,
}

/// A YAML scalar read as text: `auto-compaction-retention: 1` and `"1h"` both occur.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

const FILE_KEYS: [&str; 27] = [
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
    "experimental-enable-lease-checkpoint",
    "experimental-lease-checkpoint-interval",
    "log-level",
    "logger",
    "enable-v2",
    // auth
    "auth-token",
    "auth-token-ttl",
    "bcrypt-cost",
    // downgrade
    "experimental-downgrade-check-time",
    "max-concurrent-streams",
];

/// Reads the config file at `path`; keys it leaves out take etcd's defaults.
pub(super) fn read_config_file(path: &Path) -> Result<RawConfig, InvalidFlag> {
    let text = std::fs::read_to_string(path).map_err(|source| InvalidFlag::ReadConfigFile {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |source| InvalidFlag::ParseConfigFile {
        path: path.to_owned(),
        source,
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
                if !FILE_KEYS.contains(&key.as_str())
                    && !super::tls::FILE_KEYS.contains(&key.as_str())
                    // corrupt
                    && !super::corrupt::FILE_KEYS.contains(&key.as_str())
                {
                    warnings.push(format!(
                        "config file {}: key {key:?} is not supported by etcd-rs and is ignored",
                        path.display()
                    ));
                }
            }
            serde_yaml_ng::from_value(value).map_err(invalid)?
        }
        _ => {
            return Err(InvalidFlag::ConfigFileNotAMapping {
                path: path.to_owned(),
            })
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
        initial_cluster_state: file
            .initial_cluster_state
            .unwrap_or_else(|| DEFAULT_CLUSTER_STATE.into()),
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
            .unwrap_or_else(|| DEFAULT_COMPACTION_MODE.into()),
        auto_compaction_retention: match file.auto_compaction_retention {
            None => DEFAULT_COMPACTION_RETENTION.into(),
            Some(Scalar::Int(n)) => n.to_string(),
            Some(Scalar::Text(s)) => s,
        },
        lease_checkpoint: file.experimental_enable_lease_checkpoint.unwrap_or(false),
        lease_checkpoint_interval: match file.experimental_lease_checkpoint_interval {
            None => DEFAULT_LEASE_CHECKPOINT_INTERVAL.into(),
            Some(Scalar::Int(nanos)) => format!("{nanos}ns"),
            Some(Scalar::Text(s)) => s,
        },
        log_level: file.log_level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
        logger: file.logger.unwrap_or_else(|| DEFAULT_LOGGER.into()),
        enable_v2: file.enable_v2.unwrap_or(false),
        config_file: Some(path.to_owned()),
        warnings,
        auth_token: file.auth_token.unwrap_or_else(|| DEFAULT_AUTH_TOKEN.into()),
        auth_token_ttl: file.auth_token_ttl.unwrap_or(DEFAULT_AUTH_TOKEN_TTL_SECS),
        bcrypt_cost: file.bcrypt_cost.unwrap_or(DEFAULT_BCRYPT_COST),
        // tls
        tls: file.tls.into(),
        // corrupt
        corrupt: file.corrupt.into(),
        // downgrade
        downgrade_check_time: match file.experimental_downgrade_check_time {
            None => DEFAULT_DOWNGRADE_CHECK_TIME.into(),
            Some(Scalar::Int(nanos)) => format!("{nanos}ns"),
            Some(Scalar::Text(s)) => s,
        },
        max_concurrent_streams: file
            .max_concurrent_streams
            .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
        test_only_apply_delay: "0s".into(),
    })
}
