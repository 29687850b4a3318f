//! What a fault-injection run records, for the checkers to judge afterwards: every client operation with
//! its invoke and return times and its outcome, and every watch stream with what it delivered.
//!
//! Times are nanoseconds since the run's start, taken from one monotonic clock shared by every client,
//! so "A returned before B was invoked" is a fact about real time. Values written by a run are unique
//! (each put or swap writes a value no other request writes), which lets a read name the write it saw.

/// Nanoseconds since the run started.
pub type Nanos = u64;

/// One client request, as the traffic generator issued it. Keys and values are UTF-8 by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `lease` 0 means no lease.
    Put {
        key: String,
        value: String,
        lease: i64,
    },
    /// A single-key Range; `serializable` answers from the member's local state without a read barrier,
    /// so it may be stale (but never from the future, and never a state that did not exist).
    Get {
        key: String,
        serializable: bool,
    },
    /// A single-key DeleteRange.
    Delete {
        key: String,
    },
    /// One Txn: `if value(key) == expected then put(key, new_value) else get(key)`, where `expected` None
    /// compares `create_revision == 0` (the key is absent).
    CompareAndSwap {
        key: String,
        expected: Option<String>,
        new_value: String,
    },
    LeaseGrant {
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    LeaseKeepAliveOnce {
        id: i64,
    },
}

impl Request {
    /// The key a KV request touches; None for lease requests.
    pub fn key(&self) -> Option<&str> {
        match self {
            Request::Put { key, .. }
            | Request::Get { key, .. }
            | Request::Delete { key }
            | Request::CompareAndSwap { key, .. } => Some(key),
            Request::LeaseGrant { .. }
            | Request::LeaseRevoke { .. }
            | Request::LeaseKeepAliveOnce { .. } => None,
        }
    }
}

/// A key as a read or a watch event showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// What the server answered. Every variant carries the response header's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Put {
        revision: i64,
    },
    Get {
        revision: i64,
        kv: Option<KeyValue>,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    /// `current` is the key as the else branch read it; None when the swap succeeded or the key is absent.
    CompareAndSwap {
        revision: i64,
        succeeded: bool,
        current: Option<KeyValue>,
    },
    LeaseGrant {
        revision: i64,
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
    /// `ttl` 0 means the lease was not found (expired or revoked), as etcd answers.
    LeaseKeepAlive {
        revision: i64,
        ttl: i64,
    },
}

impl Response {
    /// The revision in the answer's header.
    pub fn revision(&self) -> i64 {
        match self {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::Delete { revision, .. }
            | Response::CompareAndSwap { revision, .. }
            | Response::LeaseGrant { revision, .. }
            | Response::LeaseRevoke { revision }
            | Response::LeaseKeepAlive { revision, .. } => *revision,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Response),
    /// The server refused it and it certainly had no effect, e.g. a put with an unknown lease
    /// (`etcdserver: requested lease not found`).
    Failed(String),
    /// A timeout, a lost connection, an unavailable cluster: it may have taken effect, at any time after
    /// its invoke, even after the client gave up.
    Unknown(String),
}

/// One request from invoke to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it; each client issues one request at a time.
    pub client: u32,
    pub request: Request,
    pub invoke: Nanos,
    /// When the client saw the outcome (for `Unknown`, when it gave up).
    pub complete: Nanos,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event. For a delete, `kv` holds the key, an empty value and the deletion's revision as
/// `mod_revision`, as etcd sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// One WatchResponse, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub received: Nanos,
    pub header_revision: i64,
    pub events: Vec<WatchEvent>,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    /// A progress notification: no events, not created, not canceled.
    pub progress_notify: bool,
}

/// One watch stream, from the create request to its end. A client that resumes after a broken stream
/// opens a new `WatchRecord` whose `start_revision` is one past the last revision it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRecord {
    pub watcher: u32,
    pub key: String,
    /// Empty for a single key, else the exclusive end of the range (a prefix's end for prefix watches).
    pub range_end: String,
    pub start_revision: i64,
    pub progress_notify: bool,
    pub opened: Nanos,
    pub responses: Vec<WatchResponse>,
    /// Why the stream ended early (an error, a cancel); None if the run closed it.
    pub ended: Option<String>,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub operations: Vec<Operation>,
    pub watches: Vec<WatchRecord>,
}
