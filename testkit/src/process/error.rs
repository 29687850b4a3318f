use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What running a child can fail with. Messages are meant to be read in a failed test's output, so they
/// carry the command line and everything the child printed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "`{command}` failed with {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    )]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },

    #[error("`{command}` did not finish within {timeout:?} and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    CommandTimedOut {
        command: String,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },

    #[error("no output line from `{command}` matched within {timeout:?}\n--- stdout so far ---\n{stdout}\n--- stderr ---\n{stderr}")]
    LineTimedOut {
        command: String,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },

    #[error("binary `{name}` not found at {path}: {hint}")]
    BinaryNotFound {
        name: String,
        path: PathBuf,
        hint: String,
    },
}

/// Attaches a human-readable context to an `io::Error`.
pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let context = context.into();
    move |source| ProcessError::Io { context, source }
}
