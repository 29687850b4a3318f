//! Every value as given, before etcd's checks: what the command line (with the environment)
//! or a config file hold, as etcd's `embed.Config` before `Validate`.

use std::path::PathBuf;

#[derive(Debug)]
pub(super) struct RawConfig {
    pub(super) name: String,
    pub(super) data_dir: Option<String>,
    pub(super) listen_client_urls: String,
    pub(super) advertise_client_urls: String,
    pub(super) listen_peer_urls: String,
    pub(super) initial_advertise_peer_urls: String,
    pub(super) initial_cluster: Option<String>,
    pub(super) initial_cluster_state: String,
    pub(super) initial_cluster_token: String,
    pub(super) heartbeat_interval: u64,
    pub(super) election_timeout: u64,
    pub(super) snapshot_count: u64,
    pub(super) quota_backend_bytes: i64,
    pub(super) max_request_bytes: u64,
    pub(super) max_txn_ops: u64,
    pub(super) auto_compaction_mode: String,
    pub(super) auto_compaction_retention: String,
    pub(super) lease_checkpoint: bool,
    pub(super) lease_checkpoint_interval: String,
    pub(super) log_level: String,
    pub(super) logger: String,
    pub(super) enable_v2: bool,
    /// The config file the values came from, if any.
    pub(super) config_file: Option<PathBuf>,
    /// What reading the values found worth a warning (config-file keys we ignore).
    pub(super) warnings: Vec<String>,
    // auth
    pub(super) auth_token: String,
    pub(super) auth_token_ttl: u64,
    pub(super) bcrypt_cost: u64,
    // tls
    pub(super) tls: super::tls::RawTls,
    // corrupt
    pub(super) corrupt: super::corrupt::RawCorrupt,
    // downgrade
    pub(super) downgrade_check_time: String,
    pub(super) max_concurrent_streams: u32,
    /// The hidden `--test-only-apply-delay` (never from a config file).
    pub(super) test_only_apply_delay: String,
}
