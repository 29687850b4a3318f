//! Starting, signalling, waiting for and reaping one child, for the runners here and for harnesses that
//! manage long-lived servers themselves.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Waits up to `timeout` for the child to exit. Polls with a short, growing interval: a blocking wait
/// cannot be given a timeout, and the extra latency is at most a few milliseconds per command.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILLs and reaps the child; a child that already exited is only reaped.
pub fn kill_and_reap(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::debug!(pid = child.id(), error = %e, "kill failed (child already exited?)");
    }
    if let Err(e) = child.wait() {
        tracing::warn!(pid = child.id(), error = %e, "could not reap child");
    }
}

/// Sends `sig` to a child that has not been reaped yet (so its pid cannot have been reused).
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Spawns `command` from the process-lifetime spawner thread with a parent-death signal of SIGKILL.
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then no signal will ever come.
            if libc::getppid() != parent {
                return Err(io::Error::other("test process exited while spawning"));
            }
            // A test run started in the background of a shell inherits SIGINT and SIGQUIT
            // ignored, and a child cannot trap a signal ignored on entry; `interrupt` relies on
            // SIGINT reaching the child's handler, as it does for a user pressing Ctrl-C.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()?
        .send(SpawnRequest {
            command,
            reply: reply_tx,
        })
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

struct SpawnRequest {
    command: Command,
    reply: Sender<io::Result<Child>>,
}

fn spawner() -> io::Result<Sender<SpawnRequest>> {
    static SPAWNER: Mutex<Option<Sender<SpawnRequest>>> = Mutex::new(None);
    let mut guard = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = guard.as_ref() {
        return Ok(sender.clone());
    }
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    thread::Builder::new()
        .name("etcd-rs-spawner".into())
        .spawn(move || {
            // The static sender is never dropped, so this loop (and thread) lasts as long as the process.
            for mut request in rx {
                let _ = request.reply.send(request.command.spawn());
            }
        })?;
    *guard = Some(tx.clone());
    Ok(tx)
}

/// Renders a command line for messages, quoting words a shell would split.
pub fn shell_words(program: &Path, args: &[impl AsRef<OsStr>]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(AsRef::as_ref))
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
