//! Harness that boots real multi-process etcd clusters for end-to-end tests, and runs CLI binaries
//! (ours and the reference etcdctl) against them.
//!
//! ```no_run
//! use integration::{real_etcdctl, Cluster, ClusterSpec};
//!
//! let cluster = Cluster::start(ClusterSpec::new(3))?;
//! let out = cluster.cli(real_etcdctl()).args(["put", "foo", "bar"]).run()?;
//! assert_eq!(out.stdout, "OK\n");
//! # Ok::<(), integration::Error>(())
//! ```
//!
//! Our own binaries run the same way: `ClusterSpec { server: ServerBinary::workspace("etcd")?, .. }` boots
//! the workspace's `etcd` with the same flags (see [`Cluster::command`]), and `bin_path("etcdctl")` finds
//! our etcdctl next to the test executable, to run side by side with [`real_etcdctl`].
//!
//! [`server_tests!`] runs one test body against both servers (`<name>::etcd34` and `<name>::etcd_rs`).
//! Suites written for the default server (`ClusterSpec::default()`, e.g. etcdctl's) run against ours
//! with `ETCD_RS_TEST_ETCD_BIN=<target dir>/release/etcd`.
//!
//! Comparing outputs ([`output`] has the masking helpers): etcdctl 3.4 may write a JSON `retrying of
//! unary invoker failed` warning to stderr before an `Error: ...` line, so compare the last stderr line,
//! not all of stderr.
//!
//! Guarantees every test relies on:
//! - every port is below 32768 (outside the kernel's ephemeral range) and reserved with a lock file under
//!   `/tmp/etcd-rs-test-ports/` for the cluster's lifetime, so tests in parallel threads or processes never
//!   share one;
//! - every child process is SIGKILLed and reaped when its owner (`Cluster`, `Background`) is dropped, on
//!   success or panic, and dies with the test process if that is killed (`PR_SET_PDEATHSIG`);
//! - every wait is bounded and fails with an error that quotes what was seen (log tails, output so far).

pub mod certs;
pub mod check;
mod cluster;
pub mod corrupt;
mod error;
pub mod history;
mod http;
pub mod output;
mod ports;
mod proxy;
pub mod scenario;
#[doc(hidden)]
pub mod server_tests;
mod tls;
pub mod traffic;

pub use cluster::{real_etcdctl, Cluster, ClusterSpec, MemberCommand, ServerBinary};
pub use error::{Error, Result};
pub use tls::{CertFiles, ClientTls, ListenerTls};
// The child-process runner is testkit's; tests reach it here, beside the clusters it runs CLIs against.
pub use proxy::{Delay, Link};
pub use testkit::{bin_path, run, Background, Cli, CmdOutput, ProcessError};
