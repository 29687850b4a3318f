use std::process::ExitStatus;

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    pub status: ExitStatus,
    /// Decoded lossily as UTF-8.
    pub stdout: String,
    /// Decoded lossily as UTF-8.
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or None when the process was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}
