//! Exit codes and the error every command returns; `main` prints it as etcdctl does
//! (`Error: <message>` on stderr) and exits with its code.

/// etcdctl's exit codes (ctlv3/command/error.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Error = 1,
    BadConnection = 2,
    InvalidInput = 3,
    BadFeature = 4,
    Interrupted = 5,
    Io = 6,
    BadArgs = 128,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: ExitCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A wrong number or shape of positional arguments.
    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(ExitCode::BadArgs, message)
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Error, message)
    }

    /// A failure already reported on stderr: exit with `code`, print nothing more.
    pub fn reported(code: ExitCode) -> Self {
        Self::new(code, "")
    }

    /// An output format that cannot show this result.
    pub fn unsupported_format(format: &str) -> Self {
        Self::new(
            ExitCode::BadFeature,
            format!("{format} not supported as output format"),
        )
    }
}

impl From<client::Error> for CommandError {
    fn from(error: client::Error) -> Self {
        match error {
            client::Error::Tls(_) => Self::new(ExitCode::BadArgs, error.to_string()),
            _ => Self::error(error.to_string()),
        }
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        Self::new(ExitCode::Io, error.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CommandError>;
