//! Port reservation that holds across threads and processes.
//!
//! Each port is guarded by a lock file `<dir>/<port>` locked with `flock(LOCK_EX | LOCK_NB)`. flock locks
//! belong to an open file description, so two reservations conflict whether they live in two threads of one
//! test binary or in two processes (nextest runs each test in its own process). The lock is released by the
//! kernel when the file is closed, including when the test process dies, so a crashed run never leaks ports.
//! A bind check on top skips ports that something outside this scheme already listens on.
//!
//! Ports come from 20000..32000: below Linux's default ephemeral range (32768..60999), so an outgoing
//! connection of some other program can never grab a port between our check and etcd's bind.

use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::Rng;

use crate::error::{io_err, Error, Result};

/// The shared directory of lock files; every user of the harness on this machine must agree on it.
const LOCK_DIR: &str = "/tmp/etcd-rs-test-ports";
pub(crate) const FIRST_PORT: u16 = 20000;
pub(crate) const END_PORT: u16 = 32000;

/// A port reserved for as long as this value lives.
#[derive(Debug)]
pub(crate) struct ReservedPort {
    port: u16,
    // Held only for its flock; closing it releases the reservation.
    _lock: File,
}

impl ReservedPort {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves `count` distinct free ports in the shared lock directory.
pub(crate) fn reserve(count: usize) -> Result<Vec<ReservedPort>> {
    PortPool::new(PathBuf::from(LOCK_DIR), (FIRST_PORT..END_PORT).collect()).reserve(count)
}

/// Candidate ports guarded by lock files in `dir`. Separate from `reserve` so unit tests can use a private
/// directory and a handful of ports.
#[derive(Debug)]
pub(crate) struct PortPool {
    dir: PathBuf,
    candidates: Vec<u16>,
}

impl PortPool {
    pub(crate) fn new(dir: PathBuf, candidates: Vec<u16>) -> Self {
        PortPool { dir, candidates }
    }

    pub(crate) fn reserve(&self, count: usize) -> Result<Vec<ReservedPort>> {
        fs::create_dir_all(&self.dir).map_err(io_err(format!("create {}", self.dir.display())))?;
        let len = self.candidates.len();
        // Start each scan at a different place so that parallel tests rarely even contend for a lock file.
        let offset = scan_offset() as usize % len.max(1);
        let mut reserved = Vec::with_capacity(count);
        for step in 0..len {
            if reserved.len() == count {
                break;
            }
            let port = self.candidates[(offset + step) % len];
            if let Some(lock) = try_lock(&self.dir, port)? {
                if port_is_free(port) {
                    reserved.push(ReservedPort { port, _lock: lock });
                }
            }
        }
        if reserved.len() < count {
            return Err(Error::NoFreePorts {
                wanted: count,
                candidates: len,
                dir: self.dir.clone(),
            });
        }
        tracing::debug!(ports = ?reserved.iter().map(ReservedPort::port).collect::<Vec<_>>(), "reserved ports");
        Ok(reserved)
    }
}

/// Where a reservation starts scanning: different for every call, thread and process, so concurrent tests
/// rarely contend for the same lock files.
fn scan_offset() -> u32 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos
        ^ u64::from(std::process::id()).rotate_left(40)
        ^ CALLS.fetch_add(1, Ordering::Relaxed).rotate_left(20);
    // The generator's output mixes every bit of the seed into the low ones: those of `nanos` are often coarse.
    (Rng::new(seed).next_u64() >> 32) as u32
}

/// Returns the locked file, or None when another reservation holds the port.
fn try_lock(dir: &Path, port: u16) -> Result<Option<File>> {
    let path = dir.join(port.to_string());
    // Read-only is enough for flock, and 0o666 lets other users on the machine share the directory.
    let file = match OpenOptions::new()
        .read(true)
        .write(false)
        .create(false)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) => return Err(io_err(format!("create lock file {}", path.display()))(e)),
            }
        }
        // A file we may not open (another user's, say) is treated as taken rather than failing the test.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(io_err(format!("open lock file {}", path.display()))(e)),
    };
    // SAFETY: flock on a valid open descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(io_err(format!("flock {}", path.display()))(err))
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Reserves from `pool` ports that were just released. A dropped lock can outlive its drop by a moment:
    /// a child forked by a test running in parallel holds a copy of every descriptor, the lock files
    /// included, until it execs (they are close-on-exec). So wait a bounded time for the release.
    fn reserve_after_release(pool: &PortPool, count: usize) -> Vec<ReservedPort> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match pool.reserve(count) {
                Ok(ports) => return ports,
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("ports never released: {e}")
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    /// A private pool over ports that are reserved in the shared directory for the test's duration, so that
    /// the bind checks here cannot race with clusters booted by tests running in parallel.
    fn private_pool(count: usize) -> (tempfile::TempDir, PortPool, Vec<ReservedPort>) {
        let held = reserve(count).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pool = PortPool::new(
            dir.path().to_path_buf(),
            held.iter().map(ReservedPort::port).collect(),
        );
        (dir, pool, held)
    }

    #[test]
    fn shared_reservations_are_distinct_and_below_the_ephemeral_range() {
        let a = reserve(10).unwrap();
        let b = reserve(10).unwrap();
        let ports: HashSet<u16> = a.iter().chain(&b).map(ReservedPort::port).collect();
        assert_eq!(ports.len(), 20);
        assert!(ports.iter().all(|p| (FIRST_PORT..END_PORT).contains(p)));
    }

    #[test]
    fn exhausted_pool_fails_and_dropping_releases() {
        let (_dir, pool, _held) = private_pool(4);
        let taken = pool.reserve(4).unwrap();
        match pool.reserve(1) {
            Err(Error::NoFreePorts { wanted: 1, .. }) => {}
            other => panic!("expected NoFreePorts, got {other:?}"),
        }
        drop(taken);
        assert_eq!(reserve_after_release(&pool, 4).len(), 4);
    }

    #[test]
    fn port_in_use_by_a_listener_is_skipped() {
        let (_dir, pool, held) = private_pool(2);
        let busy = held[0].port();
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, busy)).unwrap();
        let got = pool.reserve(1).unwrap();
        assert_eq!(got[0].port(), held[1].port());
        assert!(pool.reserve(1).is_err());
    }

    #[test]
    fn lock_held_by_another_process_is_respected() {
        let (dir, pool, held) = private_pool(2);
        let locked = held[0].port();
        // util-linux flock(1) holds the lock on `locked` in another process until its `cat` sees EOF.
        let mut holder = Command::new("flock")
            .args(["--exclusive", "--close"])
            .arg(dir.path().join(locked.to_string()))
            .args(["sh", "-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock(1) from util-linux is installed");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        let got = pool.reserve(1);
        drop(holder.stdin.take());
        assert!(holder.wait().unwrap().success());
        let got = got.unwrap();
        assert_eq!(got[0].port(), held[1].port());
        drop(got);
        assert_eq!(reserve_after_release(&pool, 2).len(), 2);
    }
}
