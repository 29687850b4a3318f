use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::capture::{Capture, PIPE_DRAIN_GRACE};
use super::child::{kill_and_reap, signal, wait_timeout};
use super::error::{io_err, ProcessError};
use super::output::CmdOutput;

type Result<T, E = ProcessError> = std::result::Result<T, E>;

/// A long-running child (`etcdctl watch`, `etcdctl lock`) whose stdout is read line by line with a
/// timeout. Killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Background {
    command: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout_closed: bool,
    stderr: Capture,
}

impl Background {
    pub(super) fn new(
        command: String,
        child: Child,
        stdout: Capture,
        stderr: Capture,
    ) -> Background {
        Background {
            command,
            child,
            lines: stdout.into_lines(),
            seen: Vec::new(),
            stdout_closed: false,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line without its `\n`; `Ok(None)` once stdout is closed (the child exited).
    /// Fails with [`ProcessError::LineTimedOut`] when no line arrives within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>> {
        if self.stdout_closed {
            return Ok(None);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(self.line_timeout(timeout)),
        }
    }

    /// Reads lines until one satisfies `wanted` and returns it; lines before it are consumed.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Ok(Some(line)) if wanted(&line) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) | Err(ProcessError::LineTimedOut { .. }) => {
                    return Err(self.line_timeout(timeout))
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Every stdout line read so far.
    pub fn lines_read(&self) -> &[String] {
        &self.seen
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.snapshot()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGINT (what Ctrl-C does: `etcdctl lock` releases its lock and exits). A child that already
    /// exited is left alone.
    pub fn interrupt(&mut self) -> Result<()> {
        // Once reaped, the pid may belong to someone else: never signal it then.
        if !self.is_running() {
            return Ok(());
        }
        signal(self.child.id(), libc::SIGINT).map_err(io_err(format!("SIGINT `{}`", self.command)))
    }

    /// Waits for the child to exit by itself (after [`Background::interrupt`], say), killing it after
    /// `timeout`. The output holds every stdout line, including those already read, and all of stderr.
    pub fn wait(mut self, timeout: Duration) -> Result<CmdOutput> {
        let finished = wait_timeout(&mut self.child, timeout)
            .map_err(io_err(format!("wait for `{}`", self.command)))?;
        let Some(status) = finished else {
            kill_and_reap(&mut self.child);
            return Err(ProcessError::CommandTimedOut {
                command: self.command.clone(),
                timeout,
                stdout: self.drain_stdout(),
                stderr: self.stderr.snapshot(),
            });
        };
        Ok(CmdOutput {
            status,
            stdout: self.drain_stdout(),
            stderr: self.stderr.finish_ref(),
        })
    }

    /// Kills the child now (SIGKILL) and reaps it. The output holds every stdout line, including those
    /// already read and those the child wrote before the signal landed, and all of stderr.
    pub fn kill(mut self) -> Result<CmdOutput> {
        // Not reaped yet, so the pid is still ours; a child that already exited just gets reaped.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(io_err(format!("reap `{}`", self.command)))?;
        Ok(CmdOutput {
            status,
            stdout: self.drain_stdout(),
            stderr: self.stderr.finish_ref(),
        })
    }

    fn drain_stdout(&mut self) -> String {
        // The child is gone, so its stdout reaches EOF promptly unless a grandchild still holds it.
        while let Ok(line) = self.lines.recv_timeout(PIPE_DRAIN_GRACE) {
            self.seen.push(line);
        }
        self.seen.iter().map(|l| format!("{l}\n")).collect()
    }

    fn line_timeout(&self, timeout: Duration) -> ProcessError {
        ProcessError::LineTimedOut {
            command: self.command.clone(),
            timeout,
            stdout: self.seen.join("\n"),
            stderr: self.stderr.snapshot(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
