//! Errors as etcd's clientv3 reports them: server errors keep etcd's exact message, so that callers
//! (and etcdctl's output) see `etcdserver: key not found`, not a re-worded text.

use tonic::Code;

/// Messages the server sends that clients must recognise by text, as clientv3's rpctypes does.
pub mod messages {
    pub const INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";
    pub const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";
    pub const USER_EMPTY: &str = "etcdserver: user name is empty";
    pub const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
    pub const PERMISSION_DENIED: &str = "etcdserver: permission denied";
    pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
    pub const ROOT_ROLE_MISSING: &str = "etcdserver: root user does not have root role";
    pub const NO_LEADER: &str = "etcdserver: no leader";
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An error status returned by the server (or by the gRPC layer).
    #[error("{}", format_status(*.code, .message))]
    Status { code: Code, message: String },
    /// The connection failed before or while the request was in flight (not an answer from
    /// the server). `never_sent` when the failure was in dialing, so even a write may be retried.
    #[error("rpc error: code = Unavailable desc = {message}")]
    Transport { message: String, never_sent: bool },
    /// The request (including its retries) did not complete within the request timeout.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    /// An endpoint string that is not a usable URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// A watch was canceled by the server; `compact_revision` is set when its start revision was compacted.
    #[error("{}", watch_canceled_message(.reason, *.compact_revision))]
    WatchCanceled {
        reason: String,
        compact_revision: i64,
    },
    /// A lease expired (or was revoked) while it was being kept alive.
    #[error("lease {0:016x} expired or revoked")]
    LeaseExpired(i64),
    /// The client was closed, or a background task it relied on has stopped.
    #[error("client closed")]
    Closed,
    /// The TLS settings cannot be used (a file is missing, holds no PEM data, ...).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A caller-side misuse detected before anything was sent.
    #[error("{0}")]
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The gRPC code of a server error, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::DeadlineExceeded => Some(Code::DeadlineExceeded),
            Error::Transport { .. } => Some(Code::Unavailable),
            _ => None,
        }
    }

    /// The server's message of a server error, if this is one.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    pub fn is_message(&self, expected: &str) -> bool {
        self.server_message() == Some(expected)
    }

    /// The token is missing, expired, or older than the auth store: authenticate and retry.
    pub(crate) fn needs_new_token(&self) -> bool {
        matches!(
            self.server_message(),
            Some(messages::INVALID_AUTH_TOKEN | messages::AUTH_OLD_REVISION | messages::USER_EMPTY)
        )
    }

    /// Whether another endpoint may answer: the connection failed, or the server said it
    /// cannot serve now (`Unavailable`: no leader, stopping, timed out).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Status { code, .. } => *code == Code::Unavailable,
            _ => false,
        }
    }
}

impl From<tonic::Status> for Error {
    /// Statuses made locally by tonic (they carry the underlying error as `source`) are
    /// transport failures or our own deadline; the rest are the server's answers.
    fn from(status: tonic::Status) -> Self {
        let Some(source) = std::error::Error::source(&status) else {
            return Error::Status {
                code: status.code(),
                message: status.message().to_string(),
            };
        };
        if status.message() == "Timeout expired" {
            return Error::DeadlineExceeded;
        }
        let mut message = status.message().to_string();
        let mut cause = Some(source);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        let never_sent = message.contains("tcp connect error")
            || message.contains("tls handshake error")
            || message.contains("error trying to connect")
            || message.contains("Connection refused");
        Error::Transport {
            message,
            never_sent,
        }
    }
}

/// etcd errors print as their bare message; other gRPC errors as grpc-go prints a status.
fn format_status(code: Code, message: &str) -> String {
    if message.starts_with("etcdserver: ") || message.starts_with("auth: ") {
        message.to_string()
    } else {
        format!(
            "rpc error: code = {} desc = {}",
            go_code_name(code),
            message
        )
    }
}

fn watch_canceled_message(reason: &str, compact_revision: i64) -> String {
    if compact_revision != 0 {
        format!(
            "{} (compact revision {compact_revision})",
            messages::COMPACTED
        )
    } else if reason.is_empty() {
        "watch canceled".to_string()
    } else {
        reason.to_string()
    }
}

/// grpc-go's names for status codes (tonic spells `Cancelled` differently).
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_messages_print_bare_and_others_as_grpc_go_does() {
        let etcd = Error::from(tonic::Status::invalid_argument("etcdserver: key not found"));
        assert_eq!(etcd.to_string(), "etcdserver: key not found");
        let other = Error::from(tonic::Status::unknown("election: not leader"));
        assert_eq!(
            other.to_string(),
            "rpc error: code = Unknown desc = election: not leader"
        );
        let canceled = Error::from(tonic::Status::cancelled("context canceled"));
        assert_eq!(
            canceled.to_string(),
            "rpc error: code = Canceled desc = context canceled"
        );
    }
}
