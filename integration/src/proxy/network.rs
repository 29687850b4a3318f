//! The proxies of one cluster: a thread with its own runtime, the listeners it serves, and the faults
//! changed from the test's thread.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::forward::accept_loop;
use super::rules::Faults;
use super::shared::{Proxy, Shared, Side, State};
use crate::error::{io_err, Result};

/// Bound on the proxy thread's shutdown when dropped, for tasks stuck in a blocking `/proc` scan.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxies of one cluster and the faults they apply.
pub(crate) struct Network {
    pub(super) shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("faults", &self.shared.state().faults)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Starts the proxy thread; proxies are added with [`Network::add_proxy`].
    pub(crate) fn start(seed: u64) -> Result<Network> {
        raise_open_files_limit();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err("build the proxies' runtime"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("etcd-rs-proxy".into())
            .spawn(move || {
                // Ends when the sender is dropped, then dropping every task closes every socket.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            })
            .map_err(io_err("spawn the proxy thread"))?;
        Ok(Network {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    faults: Faults::default(),
                    ids: HashMap::new(),
                    pids: HashMap::new(),
                }),
                changed: watch::Sender::new(0),
                seed,
                connections: AtomicU64::new(0),
            }),
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Forwards every connection accepted on `listener` to `upstream`, the real port of `member`.
    pub(crate) fn add_proxy(
        &self,
        member: usize,
        side: Side,
        listener: StdListener,
        upstream: SocketAddr,
    ) -> Result<()> {
        let listen = listener
            .local_addr()
            .map_err(io_err("read a proxy listener's address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err(format!("make proxy listener {listen} non-blocking")))?;
        let listener = {
            let _runtime = self.runtime.enter();
            TcpListener::from_std(listener)
                .map_err(io_err(format!("register proxy listener {listen}")))?
        };
        let proxy = Arc::new(Proxy {
            member,
            side,
            listen,
            upstream,
        });
        tracing::debug!(member, ?side, %listen, %upstream, "proxy listening");
        self.runtime
            .spawn(accept_loop(listener, proxy, Arc::clone(&self.shared)));
        Ok(())
    }

    /// Records member `member`'s current process, or that it has none.
    pub(crate) fn set_pid(&self, member: usize, pid: Option<u32>) {
        let mut state = self.shared.state();
        match pid {
            Some(pid) => state.pids.insert(member, pid),
            None => state.pids.remove(&member),
        };
    }

    /// Applies `change` to the faults in force, and wakes every connection to apply them.
    pub(crate) fn change(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.state().faults);
        self.shared.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Clears every fault: held bytes flow again, delays and resets stop.
    pub(crate) fn heal(&self) {
        self.change(Faults::heal);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the proxy thread panicked");
            }
        }
    }
}

/// Lifts the soft limit on open files to the hard one, once per process, as Go programs do at start.
/// Every proxied connection holds two descriptors, and a connection stalled by a partition stays open
/// until the heal (TCP would keep retransmitting its bytes), so a long partition with members that
/// redial (etcd 3.4 does every few seconds) adds up descriptors that a 1024 limit would not hold.
fn raise_open_files_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only access the struct they are given.
        let raised = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && (limit.rlim_cur >= limit.rlim_max || {
                    limit.rlim_cur = limit.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
                })
        };
        if !raised {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the open files limit");
        }
    });
}
