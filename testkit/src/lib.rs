//! Test tooling shared by the workspace's crates, so each exists once: a seeded generator ([`Rng`]), waiting
//! for a condition ([`eventually`], [`poll`] and their `_async` forms), and a runner for child processes
//! that cannot outlive the test ([`process`]).
//!
//! Only tests and the `integration` harness depend on this crate; production code never does.
//!
//! ```
//! use std::time::Duration;
//! use testkit::{eventually, Cli, Rng};
//!
//! let mut rng = Rng::new(42);
//! let delay = rng.share_of(Duration::from_millis(10));
//! let mut child = Cli::new("/bin/sh").args(["-c", "echo ready; exec sleep 30"]).spawn()?;
//! assert_eq!(child.next_line(Duration::from_secs(10))?.as_deref(), Some("ready"));
//! let pid = child.pid();
//! child.kill()?;
//! eventually(Duration::from_secs(10), "the child to be reaped", || {
//!     !std::path::Path::new(&format!("/proc/{pid}")).exists()
//! });
//! # let _ = delay;
//! # Ok::<(), testkit::ProcessError>(())
//! ```

mod poll;
pub mod process;
mod rng;

pub use poll::{eventually, eventually_async, poll, poll_async, timed_out};
pub use process::{bin_path, run, Background, Cli, CmdOutput, ProcessError};
pub use rng::Rng;
