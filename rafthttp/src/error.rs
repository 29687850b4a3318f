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
    #[error("unsupported peer URL {0:?} (only http://host:port)")]
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
