//! `--auto-compaction-mode` and `--auto-compaction-retention`, read as etcd's
//! `parseCompactionRetention` reads them.

use std::time::Duration;

use pkg::flags::{parse_go_duration, ParseDurationError};

/// `--auto-compaction-mode` with its `--auto-compaction-retention`; absent when the retention
/// is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompactionMode {
    Periodic,
    Revision,
}

/// Why a retention was refused (etcd prints it after `error parsing CompactionRetention: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Duration(#[from] ParseDurationError),
    #[error("{0} hours is too long")]
    TooManyHours(i64),
    #[error("revision mode needs a number of revisions, got {0:?}")]
    NotRevisions(String),
}

/// etcd's `parseCompactionRetention`: a non-negative integer is hours (periodic) or revisions
/// (revision); anything else must be a Go duration, which only periodic mode can use.
pub(super) fn auto_compaction(
    mode: CompactionMode,
    retention: &str,
) -> Result<Option<AutoCompaction>, RetentionError> {
    let auto = match retention.parse::<i64>() {
        Ok(0) => return Ok(None),
        Ok(n) if n > 0 => match mode {
            CompactionMode::Periodic => {
                let secs = u64::try_from(n).unwrap_or(0).checked_mul(3600);
                AutoCompaction::Periodic(Duration::from_secs(
                    secs.ok_or(RetentionError::TooManyHours(n))?,
                ))
            }
            CompactionMode::Revision => AutoCompaction::Revision(n),
        },
        _ => {
            let retention_time = parse_go_duration(retention)?;
            if mode == CompactionMode::Revision {
                return Err(RetentionError::NotRevisions(retention.to_owned()));
            }
            if retention_time.is_zero() {
                return Ok(None);
            }
            AutoCompaction::Periodic(retention_time)
        }
    };
    Ok(Some(auto))
}
