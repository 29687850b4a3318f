//! etcd's default values and limits, shared by the flags and the config file.

pub(super) const DEFAULT_NAME: &str = "default";
pub(super) const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
pub(super) const DEFAULT_PEER_URL: &str = "http://127.0.0.1:2380";
pub(super) const DEFAULT_CLUSTER_STATE: &str = "new";
pub(super) const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";
pub(super) const DEFAULT_HEARTBEAT_MS: u64 = 100;
pub(super) const DEFAULT_ELECTION_MS: u64 = 1000;
pub(super) const MAX_ELECTION_MS: u64 = 50_000;
pub(super) const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// `--quota-backend-bytes 0` means this (etcd: 2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this etcd only warns.
pub(super) const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
pub(super) const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
pub(super) const DEFAULT_MAX_TXN_OPS: u64 = 128;
pub(super) const DEFAULT_COMPACTION_MODE: &str = "periodic";
pub(super) const DEFAULT_COMPACTION_RETENTION: &str = "0";
pub(super) const DEFAULT_LEASE_CHECKPOINT_INTERVAL: &str = "5m0s";
pub(super) const DEFAULT_LOG_LEVEL: &str = "info";
pub(super) const DEFAULT_LOGGER: &str = "zap";
// downgrade
pub(super) const DEFAULT_DOWNGRADE_CHECK_TIME: &str = "5s";
/// etcd's `math.MaxUint32`: no limit on a connection's concurrent streams.
pub(super) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = u32::MAX;
