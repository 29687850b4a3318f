//! What to boot: the server binary, the cluster's size, timing and flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::bin_path;

use crate::error::Result;
use crate::tls::{ClientTls, ListenerTls};

/// The etcdctl that tests compare ours against: `$ETCD_RS_TEST_ETCDCTL_BIN`, else `/usr/bin/etcdctl`.
pub fn real_etcdctl() -> PathBuf {
    std::env::var_os("ETCD_RS_TEST_ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

/// The server executable that every member runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinary {
    path: PathBuf,
}

impl ServerBinary {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ServerBinary { path: path.into() }
    }

    /// The reference server: `$ETCD_RS_TEST_ETCD_BIN`, else Debian's `/usr/bin/etcd`.
    pub fn real_etcd() -> Self {
        let path = std::env::var_os("ETCD_RS_TEST_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
        ServerBinary { path }
    }

    /// This workspace's `etcd` (built by the `etcdserver` crate), located with [`bin_path`]; the error
    /// says how to build it.
    pub fn etcd_rs() -> Result<Self> {
        Self::workspace("etcd")
    }

    /// A server binary of this workspace (e.g. `"etcd"`), located with [`bin_path`].
    pub fn workspace(name: &str) -> Result<Self> {
        Ok(ServerBinary {
            path: bin_path(name)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for ServerBinary {
    fn default() -> Self {
        Self::real_etcd()
    }
}

/// What to boot. Build with struct update syntax: `ClusterSpec { size: 3, ..ClusterSpec::default() }`.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of members, at least 1.
    pub size: usize,
    pub server: ServerBinary,
    /// Appended to every member's command line after the harness's own flags.
    pub extra_args: Vec<String>,
    /// `--heartbeat-interval`; short so elections in tests take well under a second.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout`; etcd requires at least 5 × the heartbeat interval.
    pub election_timeout_ms: u64,
    /// Bound on waiting for every member to report healthy in [`Cluster::start`].
    pub start_timeout: Duration,
    /// Puts a TCP proxy in front of every member's peer and client port, so that tests can inject
    /// network faults ([`Cluster::partition`], [`Cluster::blackhole`], ...). Members listen on their own
    /// ports and advertise the proxies'; [`Cluster::client_url`] is the proxied one.
    pub proxied: bool,
    /// Seeds the proxies' random choices (jitter, which connections are reset).
    pub proxy_seed: u64,
    /// TLS on the client port: https client URLs and `--cert-file`, `--key-file`, `--trusted-ca-file`,
    /// `--client-cert-auth` (the test PKI's `TestPki::client_tls_spec` makes one).
    pub client_tls: Option<ListenerTls>,
    /// TLS between members: https peer URLs and the `--peer-*` flags of the same names.
    pub peer_tls: Option<ListenerTls>,
    /// What the harness presents to a TLS client port: its health and metrics probes, and the
    /// `--cacert`/`--cert`/`--key` that [`crate::Cluster::cli`] adds.
    pub harness_tls: Option<ClientTls>,
}

impl ClusterSpec {
    pub fn new(size: usize) -> Self {
        ClusterSpec {
            size,
            ..ClusterSpec::default()
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            size: 1,
            server: ServerBinary::default(),
            extra_args: Vec::new(),
            heartbeat_interval_ms: 50,
            election_timeout_ms: 500,
            start_timeout: Duration::from_secs(30),
            proxied: false,
            proxy_seed: 0,
            client_tls: None,
            peer_tls: None,
            harness_tls: None,
        }
    }
}
