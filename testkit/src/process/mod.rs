//! Child processes that cannot outlive the test: spawning, bounded waiting, output capture, and locating
//! the binaries to run.
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the test process even when that process is
//! killed outright (a nextest timeout, a SIGKILL). The kernel delivers that signal when the *thread* that
//! forked the child exits, not the process, so all children are forked by one spawner thread that lives as
//! long as the process; children can then be started from helper threads and handed around freely.
//!
//! A crash test runs its own test binary as the child (`Cli::new(std::env::current_exe()?)` with the name of
//! an ignored test that does the writing), reads what it acknowledges line by line from a [`Background`],
//! SIGKILLs it with [`Background::kill`], and checks what survived.

mod background;
mod capture;
mod child;
mod cli;
mod error;
mod output;

pub use background::Background;
pub use child::{kill_and_reap, shell_words, signal, spawn_tied, wait_timeout};
pub use cli::{bin_path, run, Cli};
pub use error::ProcessError;
pub use output::CmdOutput;
