//! What a watch asks for and what it receives.

use crate::Event;

/// Identifies a watcher within its stream.
pub type WatchId = i64;

/// One message for a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watcher it is for; -1 for a stream-wide progress notification.
    pub watch_id: WatchId,
    /// Events in revision order; all events of a revision are in the same response.
    pub events: Vec<Event>,
    /// The store revision when the response was made: no events up to it are missing.
    pub revision: i64,
    /// Non-zero: the watcher's start revision was compacted (this is the compaction
    /// revision) and the watcher is gone.
    pub compact_revision: i64,
}

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// Empty means `"\0"`.
    pub key: Vec<u8>,
    /// etcd's convention (see [`KeyRange::new`]).
    pub range_end: Vec<u8>,
    /// First revision to report; 0 = the next one.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    /// Attach each event's previous value (omitted when compacted or for creations).
    pub prev_kv: bool,
    /// 0 = the smallest unused id of the stream.
    pub watch_id: WatchId,
}

/// Why a watch was refused; the texts are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
}
