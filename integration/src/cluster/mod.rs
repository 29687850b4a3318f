//! Real multi-process clusters: one server process per member, each started from a command line of
//! etcd's standard flags, so the same code boots Debian's etcd today and our own `etcd` binary later.
//!
//! [`Cluster`]'s methods live with their concern: `lifecycle` (start, stop, kill, pause, restart, wipe),
//! `membership` (a slot for a newcomer, joining it), `faults` (network faults through the proxies) and
//! `probes` (health and leadership over HTTP). `spec` says what to boot, `member` holds one member's state
//! and `command` builds its command line.

mod command;
mod faults;
mod lifecycle;
mod member;
mod membership;
mod probes;
mod spec;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::thread;

use testkit::process::kill_and_reap;
use testkit::Cli;

use crate::error::{Error, Result};
use crate::ports::ReservedPort;
use crate::proxy::Network;
use member::{tail, Member, LOG_TAIL_LINES};

pub use member::MemberCommand;
pub use spec::{real_etcdctl, ClusterSpec, ServerBinary};

/// A running cluster of server processes on 127.0.0.1.
///
/// Dropping it SIGKILLs and reaps every member, deletes the temporary directory (data dirs and logs) and
/// releases the ports. When the drop happens during a panic, each member's log tail is printed to stderr
/// first, which the test runner shows with the failure.
///
/// Member indexes run from 0 to `size() - 1`; accessors panic on an index out of range, like slice
/// indexing, while operations return [`Error::NoSuchMember`].
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    spec: ClusterSpec,
    token: String,
    /// The proxies of a proxied cluster; stopped (every socket closed) when the cluster is dropped.
    network: Option<Network>,
    /// How the probes speak https to a TLS client port (from `spec.harness_tls`).
    http_tls: Option<Arc<rustls::ClientConfig>>,
    // Drop order matters: `Drop for Cluster` kills the members, then the directory goes, then the ports
    // are released (fields drop in declaration order), so no other test can bind a port still in use.
    dir: tempfile::TempDir,
    _ports: Vec<ReservedPort>,
}

impl Cluster {
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The member's `--name`: `m0`, `m1`, ...
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// `http://127.0.0.1:<port>` (`https://` with client TLS): where clients reach the member (through its
    /// proxy when proxied).
    pub fn client_url(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Where the member itself listens for clients: past its proxy, so past every network fault. The
    /// same as [`Cluster::client_url`] in a cluster that is not proxied.
    pub fn direct_client_url(&self, i: usize) -> &str {
        &self.members[i].listen_client_url
    }

    /// `http://127.0.0.1:<port>` (`https://` with peer TLS) where the member talks raft to its peers.
    pub fn peer_url(&self, i: usize) -> &str {
        &self.members[i].peer_url
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Every member's client URL joined by commas, as `--endpoints` wants them.
    pub fn endpoints(&self) -> String {
        self.client_urls().join(",")
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// The file that receives the member's stdout and stderr across restarts.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log_path
    }

    /// The last lines of the member's log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.members[i].log_path, LOG_TAIL_LINES)
    }

    /// The command line the member was started with and is restarted with.
    pub fn command(&self, i: usize) -> &MemberCommand {
        &self.members[i].command
    }

    /// The pid of the member's current process; None after `kill` or `stop`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].process.as_ref().map(Child::id)
    }

    /// Whether the member's process is alive: false after `kill`/`stop` or if it exited by itself; true
    /// while paused.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].process.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A command line for `bin` with `--endpoints=<all members>` already in place, and with client TLS
    /// the harness's `--cacert`, `--cert` and `--key`.
    pub fn cli(&self, bin: impl Into<PathBuf>) -> Cli {
        let cli = Cli::new(bin).arg(format!("--endpoints={}", self.endpoints()));
        match &self.spec.harness_tls {
            Some(tls) if self.spec.client_tls.is_some() => cli.args(tls.etcdctl_flags()),
            _ => cli,
        }
    }

    /// Options for this workspace's client that reach this cluster as [`Cluster::cli`] does (TLS included).
    pub fn client_options(&self) -> client::ClientOptions {
        client::ClientOptions {
            tls: match &self.spec.harness_tls {
                Some(tls) if self.spec.client_tls.is_some() => tls.options(),
                _ => client::TlsOptions::default(),
            },
            ..client::ClientOptions::default()
        }
    }

    /// The spec the cluster was started with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    fn check_member(&self, i: usize) -> Result<()> {
        if i < self.size() {
            Ok(())
        } else {
            Err(Error::NoSuchMember {
                index: i,
                size: self.size(),
            })
        }
    }

    fn member_mut(&mut self, i: usize) -> Result<&mut Member> {
        let size = self.members.len();
        self.members
            .get_mut(i)
            .ok_or(Error::NoSuchMember { index: i, size })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Signal everyone first, then reap: members die in parallel instead of one after another.
        for member in &mut self.members {
            if let Some(child) = member.process.as_mut() {
                let _ = child.kill();
            }
        }
        for member in &mut self.members {
            if let Some(mut child) = member.process.take() {
                kill_and_reap(&mut child);
            }
        }
        if thread::panicking() {
            for (i, member) in self.members.iter().enumerate() {
                eprintln!(
                    "--- etcd-rs harness: log tail of {} ({}) in {} ---\n{}",
                    member.name,
                    member.client_url,
                    self.dir.path().display(),
                    self.log_tail(i)
                );
            }
        }
    }
}
