//! One member: its URLs, files, command line and process.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;

use testkit::process::shell_words;

/// Lines of a member's log quoted in errors and printed when a test panics.
pub(super) const LOG_TAIL_LINES: usize = 40;

/// The command line that starts (and restarts) one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl fmt::Display for MemberCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_words(&self.program, &self.args))
    }
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) name: String,
    /// What the member advertises; its proxies' URLs in a proxied cluster.
    pub(super) client_url: String,
    pub(super) peer_url: String,
    /// Where the member itself listens; the harness probes it there, past any fault.
    pub(super) listen_client_url: String,
    pub(super) data_dir: PathBuf,
    pub(super) log_path: PathBuf,
    pub(super) command: MemberCommand,
    /// None once killed or stopped.
    pub(super) process: Option<Child>,
    /// SIGSTOPped by `pause` and not yet resumed.
    pub(super) paused: bool,
    pub(super) starts: u32,
}

pub(super) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        assert!(tail(&dir.path().join("missing"), 2).starts_with("(cannot read"));
    }
}
