//! The corruption check flags (`--experimental-initial-corrupt-check`,
//! `--experimental-corrupt-check-time`, 3.5's `--experimental-compact-hash-check-enabled` and
//! `--experimental-compact-hash-check-time`) and their config-file keys.
//!
//! Beyond etcd: the periodic check is on by default, every [`DEFAULT_CORRUPT_CHECK_TIME`]
//! (etcd: off), because members diverge in ways nothing else notices (etcd-io/etcd#13766).
//! Its cost: the leader hashes the whole key table twice and each follower once per pass (a
//! sequential read of the key table plus crc32c, and a set of one revision per key, as
//! etcd's `HashByRev`). On a 2 GB database that is a few seconds of one core and a few
//! hundred MB of transient memory per pass on the leader, which at five minutes is about 1%
//! of one core; a small database costs milliseconds. `--experimental-corrupt-check-time 0`
//! turns it off, and a short value (`5s`) makes its cost measurable in a benchmark.

use std::time::Duration;

use serde::Deserialize;

/// The periodic check's interval when no flag sets one (etcd's default is 0: off).
pub const DEFAULT_CORRUPT_CHECK_TIME: &str = "5m0s";
/// etcd 3.5's `--experimental-compact-hash-check-time` default.
const DEFAULT_COMPACT_HASH_CHECK_TIME: &str = "1m0s";

/// The corruption checks, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptCheckConfig {
    /// `--experimental-initial-corrupt-check`: a restarting member compares its hash with its
    /// peers' before it starts raft, and refuses to start on a mismatch.
    pub initial: bool,
    /// `--experimental-corrupt-check-time`: how often the leader compares hashes with the
    /// followers at the same revision; None: never.
    pub periodic: Option<Duration>,
    /// `--experimental-compact-hash-check-enabled` with `--experimental-compact-hash-check-time`:
    /// how often the leader compares the hashes recorded at compactions; None: never.
    pub compact_hash: Option<Duration>,
}

impl Default for CorruptCheckConfig {
    fn default() -> Self {
        CorruptCheckConfig {
            initial: false,
            periodic: pkg::flags::parse_go_duration(DEFAULT_CORRUPT_CHECK_TIME).ok(),
            compact_hash: None,
        }
    }
}

/// A corruption check flag etcd refuses.
#[derive(Debug, thiserror::Error)]
pub enum CorruptFlagError {
    /// Go's flag package's words for a duration it cannot parse.
    #[error("invalid value {value:?} for flag -{flag}: parse error")]
    Duration { flag: &'static str, value: String },
    #[error("--experimental-compact-hash-check-time must be >0 (set to {0})")]
    CompactHashCheckTime(String),
}

/// The corruption check part of etcd's flag set.
#[derive(Debug, Default, clap::Args)]
pub(super) struct CorruptFlags {
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (0 turns it off).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_CORRUPT_CHECK_TIME,
          allow_hyphen_values = true)]
    experimental_corrupt_check_time: String,
    /// Enable leader to periodically check followers compaction hashes.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    experimental_compact_hash_check_enabled: bool,
    /// Duration of time between leader checks followers compaction hashes.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_COMPACT_HASH_CHECK_TIME,
          allow_hyphen_values = true)]
    experimental_compact_hash_check_time: String,
}

/// The values as given, before the checks.
#[derive(Debug)]
pub(super) struct RawCorrupt {
    initial: bool,
    periodic: String,
    compact_hash_enabled: bool,
    compact_hash_time: String,
}

impl From<CorruptFlags> for RawCorrupt {
    fn from(f: CorruptFlags) -> Self {
        RawCorrupt {
            initial: f.experimental_initial_corrupt_check,
            periodic: f.experimental_corrupt_check_time,
            compact_hash_enabled: f.experimental_compact_hash_check_enabled,
            compact_hash_time: f.experimental_compact_hash_check_time,
        }
    }
}

/// A YAML duration: etcd reads a `time.Duration` as nanoseconds; a Go duration text is taken
/// too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileDuration {
    Nanos(i64),
    Text(String),
}

impl FileDuration {
    fn into_text(self) -> String {
        match self {
            FileDuration::Nanos(n) => format!("{n}ns"),
            FileDuration::Text(s) => s,
        }
    }
}

/// The corruption check keys of etcd's config file (flattened into the file's mapping).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct FileCorrupt {
    experimental_initial_corrupt_check: Option<bool>,
    experimental_corrupt_check_time: Option<FileDuration>,
    experimental_compact_hash_check_enabled: Option<bool>,
    experimental_compact_hash_check_time: Option<FileDuration>,
}

/// The top-level keys [`FileCorrupt`] reads.
pub(super) const FILE_KEYS: [&str; 4] = [
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
    "experimental-compact-hash-check-enabled",
    "experimental-compact-hash-check-time",
];

impl From<FileCorrupt> for RawCorrupt {
    fn from(f: FileCorrupt) -> Self {
        RawCorrupt {
            initial: f.experimental_initial_corrupt_check.unwrap_or(false),
            periodic: f
                .experimental_corrupt_check_time
                .map(FileDuration::into_text)
                .unwrap_or_else(|| DEFAULT_CORRUPT_CHECK_TIME.into()),
            compact_hash_enabled: f.experimental_compact_hash_check_enabled.unwrap_or(false),
            compact_hash_time: f
                .experimental_compact_hash_check_time
                .map(FileDuration::into_text)
                .unwrap_or_else(|| DEFAULT_COMPACT_HASH_CHECK_TIME.into()),
        }
    }
}

/// etcd's checks: both durations parse; the compaction hash check interval is positive
/// (3.5 refuses it even with the check off). A negative periodic interval, which etcd takes
/// as "check without pause", is taken as off, with a warning.
pub(super) fn check(
    raw: RawCorrupt,
    warnings: &mut Vec<String>,
) -> Result<CorruptCheckConfig, CorruptFlagError> {
    let nanos = |flag: &'static str, value: &str| {
        pkg::flags::parse_go_duration_nanos(value).map_err(|_| CorruptFlagError::Duration {
            flag,
            value: value.to_owned(),
        })
    };
    let periodic = nanos("experimental-corrupt-check-time", &raw.periodic)?;
    let compact_hash = nanos(
        "experimental-compact-hash-check-time",
        &raw.compact_hash_time,
    )?;
    if compact_hash <= 0 {
        return Err(CorruptFlagError::CompactHashCheckTime(
            raw.compact_hash_time,
        ));
    }
    if periodic < 0 {
        warnings.push(format!(
            "--experimental-corrupt-check-time {}: a negative interval turns the periodic \
             corruption check off",
            raw.periodic
        ));
    }
    let positive = |n: i64| (n > 0).then(|| Duration::from_nanos(n as u64));
    Ok(CorruptCheckConfig {
        initial: raw.initial,
        periodic: positive(periodic),
        compact_hash: raw
            .compact_hash_enabled
            .then(|| positive(compact_hash))
            .flatten(),
    })
}
