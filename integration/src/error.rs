use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use testkit::ProcessError;

/// Everything the harness can fail with. Messages are meant to be read in a failed test's output, so they
/// carry the context needed to debug without rerunning (command lines, log tails, captured output).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),

    #[error("could not reserve {wanted} free ports among {candidates} candidates (locked in {dir} by other tests, or in use)")]
    NoFreePorts {
        wanted: usize,
        candidates: usize,
        dir: PathBuf,
    },

    #[error("no member {index}: the cluster has {size} members")]
    NoSuchMember { index: usize, size: usize },

    #[error("member {member} is not running")]
    MemberNotRunning { member: String },

    #[error("member {member} is paused")]
    MemberPaused { member: String },

    #[error("member {member} exited with {status} before becoming healthy\ncommand: {command}\n--- log tail ---\n{log_tail}")]
    MemberExited {
        member: String,
        status: ExitStatus,
        command: String,
        log_tail: String,
    },

    #[error("member {member} not healthy after {timeout:?}; last answer to GET /health: {last}\ncommand: {command}\n--- log tail ---\n{log_tail}")]
    NotHealthy {
        member: String,
        timeout: Duration,
        last: String,
        command: String,
        log_tail: String,
    },

    #[error(
        "no single leader among the running members after {timeout:?}; last observation: {last}"
    )]
    NoLeader { timeout: Duration, last: String },

    /// Running a child process (a CLI, a server binary) failed.
    #[error(transparent)]
    Process(#[from] ProcessError),

    #[error("network faults need a proxied cluster: start it with `ClusterSpec {{ proxied: true, .. }}`")]
    NotProxied,

    #[error("invalid network fault: {0}")]
    InvalidFault(String),

    #[error("bad HTTP response from {url}: {reason}")]
    Http { url: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a human-readable context to an `io::Error`.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
