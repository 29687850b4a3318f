//! Error types of the transport.

/// A frame on a stream or at the head of a snapshot body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("cannot decode raft message: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Why a connection to a peer failed or ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("peer has no usable URL")]
    NoUrl,
    #[error("unsupported peer URL {0:?}")]
    BadUrl(String),
    #[error("dial {url}: {source}")]
    Dial { url: String, source: std::io::Error },
    #[error("dial {url}: timed out")]
    DialTimeout { url: String },
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("no response within the dial timeout")]
    ResponseTimeout,
    /// The remote belongs to another cluster (412 "cluster ID mismatch").
    #[error("cluster ID mismatch: remote peer's cluster is {remote_cluster}")]
    ClusterIdMismatch { remote_cluster: String },
    /// The remote told us that we were removed from the cluster (410).
    #[error("this member was removed from the cluster")]
    MemberRemoved,
    /// Any other refusal.
    #[error("refused with {status}: {body}")]
    Refused {
        status: http::StatusCode,
        body: String,
    },
    #[error("stream ended")]
    StreamEnded,
    #[error("no link heartbeat from peer within {0:?}")]
    ReadTimeout(std::time::Duration),
    #[error("write to peer stalled for {0:?}")]
    WriteTimeout(std::time::Duration),
    #[error("peer URLs changed")]
    UrlsChanged,
    #[error("transport stopped")]
    Stopped,
}

/// Why a peer request was refused before its body was read; the texts are etcd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("transport stopped")]
    Stopped,
    #[error("cluster ID mismatch")]
    ClusterIdMismatch,
    #[error("invalid from")]
    InvalidFrom,
    #[error("removed member")]
    RemovedMember,
    #[error("to field mismatch")]
    ToMismatch,
    #[error("error sender not found")]
    SenderNotFound,
}

impl Rejection {
    pub(crate) fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Rejection::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::ClusterIdMismatch | Rejection::ToMismatch => StatusCode::PRECONDITION_FAILED,
            Rejection::InvalidFrom => StatusCode::BAD_REQUEST,
            Rejection::RemovedMember => StatusCode::GONE,
            Rejection::SenderNotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// Why an inbound message stream ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamEnd {
    #[error("closed locally")]
    ClosedLocally,
    #[error("no data from peer within {0:?}")]
    Idle(std::time::Duration),
    #[error("peer closed the stream")]
    PeerClosed,
    #[error("read error: {0}")]
    Read(axum::Error),
    #[error("bad frame: {0}")]
    BadFrame(FrameError),
}

/// Why sending a snapshot to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendSnapshotError {
    #[error("unknown peer")]
    UnknownPeer,
    #[error("transport stopped or peer removed")]
    Stopped,
    #[error("peer has no URL")]
    NoUrl,
    #[error("writing the database: {0}")]
    WriteDb(std::io::Error),
    #[error("database writer failed: {0}")]
    Writer(tokio::task::JoinError),
    #[error("no answer within {0:?} after the database was sent")]
    NoAnswer(std::time::Duration),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Why the MsgSnap at the head of a snapshot upload could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotMessageError {
    #[error("empty snapshot message")]
    Empty,
    #[error("body ended before the snapshot message")]
    Truncated,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Body(#[from] std::io::Error),
    #[error("unexpected message type {0:?}")]
    UnexpectedType(raftpb::MessageType),
}
