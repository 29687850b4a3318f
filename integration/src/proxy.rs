//! Userspace TCP proxies that a proxied cluster (`ClusterSpec { proxied: true, .. }`) puts in front of every
//! member's peer port and client port, so that tests can cut, slow down and reset network links.
//!
//! Each member listens on its own ports and advertises its proxies' ports, so every connection between two
//! members, and every client connection, crosses exactly one proxy: the one in front of the member dialed.
//!
//! # Who is talking
//! Faults name directions between members ("m0's traffic to m2"), but a proxy in front of member j only
//! sees that someone connected to j. Raft connections say who they are: both etcd 3.4 and etcd-rs put the
//! dialer's member id in `X-Server-From` and the dialed member's id in `X-Raft-To` on every rafthttp request.
//! The proxy reads the first request head of every peer connection (holding its bytes until the connection
//! is classified), learns `X-Raft-To` as the id of the member it fronts, and maps `X-Server-From` through
//! what it learned. When the header is missing (etcd's `/members`, `/version`, `/leases`, `/raft/probing`)
//! or names an id not learned yet, it finds the process that owns the dialing socket through
//! `/proc/net/tcp` and `/proc/<pid>/fd`, among the pids of the members; a socket no member owns (a CLI, a
//! test) comes from an *outsider*, to which only the member-wide rules of the dialed member apply
//! ([`Link::Peers`]); a direction between two named members never applies to it.
//!
//! Bytes from the dialer to the member are traffic from the dialer to the member, bytes back are traffic
//! from the member to the dialer, whichever side opened the connection: etcd 3.4's stream receivers dial
//! the sender and read messages from the response body, etcd-rs's senders dial the receiver.
//!
//! # What a fault does
//! - **Blocked** direction: the proxy stops reading from that side and holds what it already read, so TCP
//!   flow control stalls the sender, as during a real partition, where unacknowledged segments are
//!   retransmitted until the network heals or the application gives up and closes the connection. Bytes are
//!   never discarded: dropping bytes from the middle of a TCP stream would hand the receiver a corrupt
//!   stream, which no network does. After a heal the held bytes flow in order (like retransmissions that
//!   finally get through), and the applications' own timeouts decide what they are still worth. A new
//!   connection gets accepted, but what it sends in a blocked direction is held like the rest, so nothing
//!   reaches the other side: to the dialer it looks like a peer that never answers.
//! - **Delay**: pure latency. A reader stamps each chunk when it arrives and the writer releases it at
//!   stamp + latency + a uniform share of the jitter, never before the previous chunk (bytes stay in order).
//!   Up to [`CHUNKS_IN_FLIGHT`] chunks wait in flight per direction, so throughput is not throttled.
//! - **Dropped connections**: TCP cannot lose a share of its bytes without corrupting the stream, so a
//!   share `p` of *connections* is reset (RST on both sides): when [`Faults::drop_connections`] is applied,
//!   each live connection on the link is reset with probability `p`, and so is each new one when it opens.
//!   A connection is on a peer link between i and j whichever side dialed: a reset kills both directions.
//! - Rules on one direction combine: blocked if any rule blocks it, the largest delay, the largest share.
//!
//! Randomness (jitter, resets) comes from one seed: connection n of a network draws from a generator seeded
//! with `(seed, n)`, so a run that opens the same connections in the same order makes the same choices.
//!
//! Everything runs on one thread with a single-threaded tokio runtime; dropping the [`Network`] stops it and
//! closes every listener and connection before `drop` returns.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::{io_err, Result};

/// Network links of a proxied cluster, named by member index, for [`Cluster`](crate::Cluster)'s fault
/// methods.
///
/// - A *blocked* direction holds bytes instead of discarding them: the proxy stops reading, so the
///   sender's TCP stalls as in a real partition, and after the heal the held bytes flow in order, like
///   retransmissions (a request that timed out may still be applied then). New connections are accepted,
///   but nothing they send in a blocked direction gets through.
/// - A *delay* is pure latency: each chunk is released `latency` + a uniform share of `jitter` after it
///   arrived, in order; throughput is not throttled.
/// - *Dropping* resets whole connections (TCP cannot lose bytes without corrupting its stream): each open
///   connection once when the fault is set, and each new one, with the given probability, seeded by
///   `ClusterSpec::proxy_seed`.
/// - Faults add up until the heal; on one direction: blocked if any fault blocks it, the longest delay,
///   the largest share of resets.
///
/// The proxy in front of a member knows which member dialed it from rafthttp's `X-Server-From` header,
/// or, for requests without one (`/members`, `/version`, `/leases`), from the process that owns the
/// dialing socket; a process that is no member (a CLI) is an outsider, subject to
/// [`Link::Peers`] of the member it dials only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// What member `from` sends to member `to` over their peer connections, whichever side dialed.
    Peer { from: usize, to: usize },
    /// Every peer link to and from the member, including connections from processes that are not members.
    Peers(usize),
    /// The member's client port, both directions.
    Client(usize),
}

/// Latency added to every chunk of a direction: `latency` plus a uniformly drawn share of `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delay {
    pub latency: Duration,
    pub jitter: Duration,
}

impl Delay {
    fn longest(self, other: Delay) -> Delay {
        if other.latency + other.jitter > self.latency + self.jitter {
            other
        } else {
            self
        }
    }
}

/// Most bytes read at once from a socket.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: with a delay, what may be in flight (4 MiB).
const CHUNKS_IN_FLIGHT: usize = 256;
/// Longest request head the proxy reads to find the rafthttp headers.
const MAX_HEAD: usize = 16 * 1024;
/// Bound on waiting for a peer connection's first request head; past it, the proxy classifies on what
/// it has.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the proxy thread's shutdown when dropped, for tasks stuck in a blocking `/proc` scan.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Which port of a member a proxy fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Peer,
    Client,
}

/// One end of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Party {
    Member(usize),
    /// A process connected to a peer port that is no known member.
    Outsider,
    Client,
}

/// Bytes flowing from one party to another on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Direction {
    from: Party,
    to: Party,
}

/// What happens to one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Rule {
    blocked: bool,
    delay: Delay,
    drop_share: f64,
    /// Which `drop_connections` call set `drop_share`: a connection rolls once for each new one.
    drop_call: u64,
}

impl Rule {
    fn merge(self, other: Rule) -> Rule {
        Rule {
            blocked: self.blocked || other.blocked,
            delay: self.delay.longest(other.delay),
            drop_share: self.drop_share.max(other.drop_share),
            drop_call: self.drop_call.max(other.drop_call),
        }
    }
}

/// The faults in force. Every setter adds to what is there; [`Network::heal`] clears everything.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Directed `(from, to)` peer links.
    pairs: HashMap<(usize, usize), Rule>,
    /// Every peer link of a member, both directions.
    members: HashMap<usize, Rule>,
    /// A member's client link, both directions.
    clients: HashMap<usize, Rule>,
    /// Counts `drop_connections` calls, never reset, so every call is new to every connection.
    drop_calls: u64,
}

impl Faults {
    pub(crate) fn block(&mut self, link: Link) {
        self.rule_mut(link).blocked = true;
    }

    pub(crate) fn delay(&mut self, link: Link, delay: Delay) {
        self.rule_mut(link).delay = delay;
    }

    pub(crate) fn drop_connections(&mut self, link: Link, share: f64) {
        self.drop_calls += 1;
        let calls = self.drop_calls;
        let rule = self.rule_mut(link);
        rule.drop_share = share;
        rule.drop_call = calls;
    }

    fn rule_mut(&mut self, link: Link) -> &mut Rule {
        match link {
            Link::Peer { from, to } => self.pairs.entry((from, to)).or_default(),
            Link::Peers(member) => self.members.entry(member).or_default(),
            Link::Client(member) => self.clients.entry(member).or_default(),
        }
    }

    fn rule(&self, dir: Direction) -> Rule {
        let get = |map: &HashMap<usize, Rule>, i: &usize| map.get(i).copied().unwrap_or_default();
        match (dir.from, dir.to) {
            (Party::Client, Party::Member(m)) | (Party::Member(m), Party::Client) => {
                get(&self.clients, &m)
            }
            (Party::Member(a), Party::Member(b)) => get(&self.members, &a)
                .merge(get(&self.members, &b))
                .merge(self.pairs.get(&(a, b)).copied().unwrap_or_default()),
            (Party::Outsider, Party::Member(m)) | (Party::Member(m), Party::Outsider) => {
                get(&self.members, &m)
            }
            _ => Rule::default(),
        }
    }
}

struct State {
    faults: Faults,
    /// Member ids, as rafthttp writes them, to member indexes.
    ids: HashMap<u64, usize>,
    /// Running members' pids, to find who owns a connection that names nobody.
    pids: HashMap<usize, u32>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change of the faults, to wake stalled directions and roll connection resets.
    changed: watch::Sender<u64>,
    seed: u64,
    connections: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rule(&self, dir: Direction) -> Rule {
        self.state().faults.rule(dir)
    }

    /// The latest `drop_connections` call that applies to a connection carrying both directions, and
    /// its share of resets.
    fn drop_roll(&self, dirs: [Direction; 2]) -> (u64, f64) {
        let state = self.state();
        let rule = state.faults.rule(dirs[0]).merge(state.faults.rule(dirs[1]));
        (rule.drop_call, rule.drop_share)
    }

    fn learn(&self, id: u64, member: usize) {
        if self.state().ids.insert(id, member) != Some(member) {
            tracing::debug!(id = format!("{id:x}"), member, "proxy learned a member id");
        }
    }

    /// Returns once `dir` is not blocked.
    async fn wait_open(&self, dir: Direction) {
        if !self.rule(dir).blocked {
            return;
        }
        let mut changes = self.changed.subscribe();
        while self.rule(dir).blocked {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The proxies of one cluster and the faults they apply.
pub(crate) struct Network {
    shared: Arc<Shared>,
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
        self.change(|faults| {
            *faults = Faults {
                drop_calls: faults.drop_calls,
                ..Faults::default()
            }
        });
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

/// One listening proxy.
#[derive(Debug)]
struct Proxy {
    member: usize,
    side: Side,
    listen: SocketAddr,
    upstream: SocketAddr,
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((socket, dialer)) => {
                tokio::spawn(serve(
                    socket,
                    dialer,
                    Arc::clone(&proxy),
                    Arc::clone(&shared),
                ));
            }
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(listen = %proxy.listen, error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Classifies one connection, then forwards it under the faults in force until either side closes it, a
/// fault resets it or the network stops.
async fn serve(
    mut downstream: TcpStream,
    dialer: SocketAddr,
    proxy: Arc<Proxy>,
    shared: Arc<Shared>,
) {
    let number = shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::new(shared.seed, number);
    let _ = downstream.set_nodelay(true);
    let (head, party) = match proxy.side {
        Side::Client => (Vec::new(), Party::Client),
        Side::Peer => identify(&mut downstream, dialer, &proxy, &shared).await,
    };
    let member = Party::Member(proxy.member);
    let inbound = Direction {
        from: party,
        to: member,
    };
    let outbound = Direction {
        from: member,
        to: party,
    };
    // Subscribe before reading the rule, so no change between the two goes unnoticed.
    let mut changes = shared.changed.subscribe();
    let (mut drop_call, share) = shared.drop_roll([inbound, outbound]);
    if rng.chance(share) {
        tracing::debug!(%dialer, ?party, ?member, "proxy resets a new connection");
        reset(&downstream);
        return;
    }
    let mut upstream = match TcpStream::connect(proxy.upstream).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // The member is down: the dialer sees its connection reset.
            tracing::debug!(upstream = %proxy.upstream, error = %e, "proxy cannot reach its member");
            reset(&downstream);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    tracing::trace!(%dialer, ?party, ?member, "proxy connection");
    let (rng_in, rng_out) = (rng.fork(), rng.fork());
    let failed = {
        let (mut down_read, mut down_write) = downstream.split();
        let (mut up_read, mut up_write) = upstream.split();
        let forward = async {
            tokio::try_join!(
                pump(
                    &mut down_read,
                    &mut up_write,
                    inbound,
                    head,
                    &shared,
                    rng_in
                ),
                pump(
                    &mut up_read,
                    &mut down_write,
                    outbound,
                    Vec::new(),
                    &shared,
                    rng_out
                ),
            )
        };
        let dropped = async {
            loop {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let (latest, share) = shared.drop_roll([inbound, outbound]);
                if latest != drop_call {
                    drop_call = latest;
                    if rng.chance(share) {
                        tracing::debug!(%dialer, ?party, ?member, "proxy resets a connection");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            result = forward => result.is_err(),
            () = dropped => true,
        }
    };
    if failed {
        // Pass a failure on as a reset, as the network would, rather than as a clean end of stream.
        reset(&downstream);
        reset(&upstream);
    }
}

/// Sets the socket to send RST instead of FIN when it is closed.
fn reset(socket: &TcpStream) {
    if let Err(e) = socket.set_zero_linger() {
        tracing::debug!(error = %e, "cannot set SO_LINGER");
    }
}

/// Reads a peer connection's first request head and says who sent it; returns the bytes read, which
/// belong to the inbound direction.
async fn identify(
    stream: &mut TcpStream,
    dialer: SocketAddr,
    proxy: &Proxy,
    shared: &Arc<Shared>,
) -> (Vec<u8>, Party) {
    let mut head = Vec::new();
    // A dialer that errs or says nothing in time is classified on what it sent; the forwarding that
    // follows meets the same error or waits for the rest.
    let _ = tokio::time::timeout(SNIFF_TIMEOUT, read_head(stream, &mut head)).await;
    let headers = RaftHeaders::parse(&head);
    if let Some(to) = headers.to {
        shared.learn(to, proxy.member);
    }
    if let Some(from) = headers.from {
        if let Some(&member) = shared.state().ids.get(&from) {
            return (head, Party::Member(member));
        }
    }
    let pids: Vec<(u32, usize)> = shared
        .state()
        .pids
        .iter()
        .map(|(&member, &pid)| (pid, member))
        .collect();
    let listen = proxy.listen;
    let owner = tokio::task::spawn_blocking(move || owner_of(dialer, listen, &pids))
        .await
        .ok()
        .flatten();
    match owner {
        Some(member) => {
            if let Some(from) = headers.from {
                shared.learn(from, member);
            }
            (head, Party::Member(member))
        }
        None => (head, Party::Outsider),
    }
}

/// Reads until the end of the first request head, the end of the stream or [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 2048];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// The member ids a rafthttp request head names.
#[derive(Debug, Default, PartialEq, Eq)]
struct RaftHeaders {
    from: Option<u64>,
    to: Option<u64>,
}

impl RaftHeaders {
    fn parse(head: &[u8]) -> RaftHeaders {
        let text = String::from_utf8_lossy(head);
        let mut headers = RaftHeaders::default();
        // The request line first, then header lines up to the blank line.
        for line in text.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let id = u64::from_str_radix(value.trim(), 16).ok();
            if name.trim().eq_ignore_ascii_case("X-Server-From") {
                headers.from = id;
            } else if name.trim().eq_ignore_ascii_case("X-Raft-To") {
                headers.to = id;
            }
        }
        headers
    }
}

/// The member whose process owns the dialing end of a connection from `dialer` to `listen`: its socket's
/// inode from `/proc/net/tcp`, then the pid that holds that socket among `pids` (pid, member).
fn owner_of(dialer: SocketAddr, listen: SocketAddr, pids: &[(u32, usize)]) -> Option<usize> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = socket_inode(&table, dialer, listen)?;
    let target = format!("socket:[{inode}]");
    pids.iter()
        .find(|&&(pid, _)| holds(pid, &target))
        .map(|&(_, member)| member)
}

/// The inode of the IPv4 socket bound to `local` and connected to `remote`, from `/proc/net/tcp`'s text.
fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (local, remote) = (proc_addr(local)?, proc_addr(remote)?);
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()) {
            fields.get(9)?.parse().ok()
        } else {
            None
        }
    })
}

/// An address as `/proc/net/tcp` prints it: the IPv4 address as the hex of its in-memory u32, the port
/// in hex.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    Some(format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    ))
}

/// Whether process `pid` has a file descriptor whose link reads `target`.
fn holds(pid: u32, target: &str) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target))
}

/// A chunk read from one side, with the time it arrived.
struct Chunk {
    at: Instant,
    bytes: Vec<u8>,
}

/// Forwards one direction until its source ends (then passes the end on) or either side fails.
/// `head` was read from `src` already.
async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    dir: Direction,
    head: Vec<u8>,
    shared: &Shared,
    mut rng: Rng,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let read = async move {
        if !head.is_empty() {
            let chunk = Chunk {
                at: Instant::now(),
                bytes: head,
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            // While blocked, leave the bytes in the kernel: the sender's TCP stalls, as in a partition.
            shared.wait_open(dir).await;
            let n = src.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let chunk = Chunk {
                at: Instant::now(),
                bytes: buf[..n].to_vec(),
            };
            // The writer only goes away after failing, and reports that failure itself.
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async {
        let mut not_before = Instant::now();
        while let Some(chunk) = rx.recv().await {
            let delay = shared.rule(dir).delay;
            if delay != Delay::default() {
                let release =
                    (chunk.at + delay.latency + rng.share_of(delay.jitter)).max(not_before);
                tokio::time::sleep_until(release).await;
                not_before = release;
            }
            shared.wait_open(dir).await;
            dst.write_all(&chunk.bytes).await?;
        }
        dst.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// SplitMix64: tiny, seedable, and good enough to pick delays and victims.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    fn share_of(&mut self, span: Duration) -> Duration {
        if span.is_zero() {
            return Duration::ZERO;
        }
        span.mul_f64(self.unit())
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream as StdStream};
    use std::sync::mpsc as std_mpsc;

    /// Long enough to be sure a held byte is not on its way; nothing depends on it being short.
    const QUIET: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(10);

    /// An echo server on 127.0.0.1:0 that also reports every chunk it receives.
    fn echo_server() -> (SocketAddr, std_mpsc::Receiver<Vec<u8>>) {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std_mpsc::channel();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        let _ = tx.send(buf[..n].to_vec());
                    }
                });
            }
        });
        (addr, rx)
    }

    /// A network with one proxy in front of an echo server playing member `member`.
    fn proxied_echo(
        side: Side,
        member: usize,
    ) -> (Network, SocketAddr, std_mpsc::Receiver<Vec<u8>>) {
        let (upstream, received) = echo_server();
        let network = Network::start(7).unwrap();
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        network.add_proxy(member, side, listener, upstream).unwrap();
        (network, addr, received)
    }

    fn connect(addr: SocketAddr) -> StdStream {
        let stream = StdStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(LONG)).unwrap();
        stream
    }

    fn read_exactly(stream: &mut StdStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).unwrap();
        buf
    }

    /// Whether `len` bytes arrive on `stream` within [`QUIET`] (they are then consumed).
    fn arrives(stream: &mut StdStream, len: usize) -> bool {
        stream.set_read_timeout(Some(QUIET)).unwrap();
        let mut buf = vec![0u8; len];
        let got = stream.read_exact(&mut buf).is_ok();
        stream.set_read_timeout(Some(LONG)).unwrap();
        got
    }

    fn head(from: &str, to: &str) -> Vec<u8> {
        format!("POST /raft/stream HTTP/1.1\r\nHost: x\r\nX-Server-From: {from}\r\nX-Raft-To: {to}\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn forwards_both_ways_and_passes_the_end_on() {
        let (_network, addr, _) = proxied_echo(Side::Client, 0);
        let mut stream = connect(addr);
        stream.write_all(b"hello").unwrap();
        assert_eq!(read_exactly(&mut stream, 5), b"hello");
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sent = big.clone();
        let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
        assert_eq!(read_exactly(&mut stream, big.len()), big);
        writing.join().unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn a_blocked_client_link_holds_bytes_until_healed() {
        let (network, addr, received) = proxied_echo(Side::Client, 0);
        let mut before = connect(addr);
        before.write_all(b"a").unwrap();
        assert_eq!(read_exactly(&mut before, 1), b"a");
        received.recv_timeout(LONG).unwrap();

        network.change(|f| f.block(Link::Client(0)));
        before.write_all(b"held").unwrap();
        let mut during = connect(addr);
        during.write_all(b"new").unwrap();
        assert!(!arrives(&mut before, 4));
        assert!(!arrives(&mut during, 3));
        assert!(received.try_recv().is_err(), "nothing reached the member");

        network.heal();
        assert_eq!(read_exactly(&mut before, 4), b"held");
        assert_eq!(read_exactly(&mut during, 3), b"new");
    }

    #[test]
    fn a_one_way_blackhole_holds_only_its_direction() {
        // The proxy fronts member 1; this test process is member 0, found through /proc on the first
        // connection (its id is not known yet) and through its id afterwards.
        let (network, addr, received) = proxied_echo(Side::Peer, 1);
        network.set_pid(0, Some(std::process::id()));
        let hello = head("a0", "b1");
        let mut first = connect(addr);
        first.write_all(&hello).unwrap();
        assert_eq!(read_exactly(&mut first, hello.len()), hello);
        received.recv_timeout(LONG).unwrap();
        {
            let state = network.shared.state();
            assert_eq!(state.ids.get(&0xa0), Some(&0));
            assert_eq!(state.ids.get(&0xb1), Some(&1));
        }
        network.set_pid(0, None);

        // Member 1 to member 0 is lost: the request gets there, the echo does not come back.
        network.change(|f| f.block(Link::Peer { from: 1, to: 0 }));
        first.write_all(b"ping").unwrap();
        assert_eq!(received.recv_timeout(LONG).unwrap(), b"ping");
        assert!(!arrives(&mut first, 4));
        // So does a new connection, known by its header alone now.
        let mut second = connect(addr);
        second.write_all(&hello).unwrap();
        assert_eq!(received.recv_timeout(LONG).unwrap(), hello);
        assert!(!arrives(&mut second, hello.len()));
        network.heal();
        assert_eq!(read_exactly(&mut first, 4), b"ping");
        assert_eq!(read_exactly(&mut second, hello.len()), hello);

        // Member 0 to member 1 is lost: nothing gets there, on old or new connections.
        network.change(|f| f.block(Link::Peer { from: 0, to: 1 }));
        first.write_all(b"pong").unwrap();
        let mut third = connect(addr);
        third.write_all(&hello).unwrap();
        assert!(received.recv_timeout(QUIET).is_err());
        // A link between other members does not touch it.
        network.heal();
        network.change(|f| f.block(Link::Peer { from: 2, to: 1 }));
        assert_eq!(read_exactly(&mut first, 4), b"pong");
        assert_eq!(read_exactly(&mut third, hello.len()), hello);
    }

    #[test]
    fn outsiders_obey_member_wide_rules_only() {
        let (network, addr, _) = proxied_echo(Side::Peer, 1);
        // No header, no member pid: an outsider.
        network.change(|f| f.block(Link::Peer { from: 0, to: 1 }));
        let mut stream = connect(addr);
        stream.write_all(b"GET /version HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            read_exactly(&mut stream, 25),
            b"GET /version HTTP/1.1\r\n\r\n"
        );
        network.change(|f| f.block(Link::Peers(1)));
        stream.write_all(b"x").unwrap();
        assert!(!arrives(&mut stream, 1));
        network.heal();
        assert_eq!(read_exactly(&mut stream, 1), b"x");
    }

    #[test]
    fn delay_adds_latency_and_keeps_order() {
        let (network, addr, _) = proxied_echo(Side::Client, 0);
        let latency = Duration::from_millis(150);
        network.change(|f| {
            f.delay(
                Link::Client(0),
                Delay {
                    latency,
                    jitter: Duration::from_millis(50),
                },
            )
        });
        let mut stream = connect(addr);
        let started = std::time::Instant::now();
        stream.write_all(b"x").unwrap();
        assert_eq!(read_exactly(&mut stream, 1), b"x");
        // Delayed on the way in and on the way back.
        assert!(started.elapsed() >= 2 * latency, "{:?}", started.elapsed());

        let mut writer = stream.try_clone().unwrap();
        let sending = thread::spawn(move || {
            for i in 0..200u8 {
                writer.write_all(&[i]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
        });
        let expected: Vec<u8> = (0..200u8).collect();
        assert_eq!(read_exactly(&mut stream, 200), expected);
        sending.join().unwrap();
    }

    #[test]
    fn dropped_connections_are_reset_by_seeded_share() {
        let (network, addr, _) = proxied_echo(Side::Client, 0);
        let mut established = connect(addr);
        established.write_all(b"a").unwrap();
        assert_eq!(read_exactly(&mut established, 1), b"a");

        network.change(|f| f.drop_connections(Link::Client(0), 1.0));
        let mut buf = [0u8; 1];
        // Reset: an error (ECONNRESET) or, if the RST raced the read, the end of the stream.
        assert!(matches!(established.read(&mut buf), Err(_) | Ok(0)));
        let mut fresh = connect(addr);
        let _ = fresh.write_all(b"b");
        assert!(matches!(fresh.read(&mut buf), Err(_) | Ok(0)));

        network.change(|f| f.drop_connections(Link::Client(0), 0.5));
        let survivors = (0..40)
            .filter(|_| {
                let mut stream = connect(addr);
                stream.write_all(b"c").is_ok() && matches!(stream.read(&mut buf), Ok(1))
            })
            .count();
        assert!(
            survivors > 0 && survivors < 40,
            "{survivors} of 40 survived"
        );

        network.heal();
        let mut after = connect(addr);
        after.write_all(b"d").unwrap();
        assert_eq!(read_exactly(&mut after, 1), b"d");
    }

    #[test]
    fn dropping_connections_on_one_link_spares_the_others() {
        let (network, addr0, _) = proxied_echo(Side::Client, 0);
        let (upstream, _) = echo_server();
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr1 = listener.local_addr().unwrap();
        network
            .add_proxy(1, Side::Client, listener, upstream)
            .unwrap();
        let mut buf = [0u8; 1];
        let mut on1 = connect(addr1);
        on1.write_all(b"a").unwrap();
        assert_eq!(read_exactly(&mut on1, 1), b"a");

        // Connections to link 0 that survive the roll they get when they open.
        network.change(|f| f.drop_connections(Link::Client(0), 0.5));
        let mut survivors: Vec<StdStream> = (0..20)
            .map(|_| connect(addr0))
            .filter_map(|mut s| {
                (s.write_all(b"b").is_ok() && matches!(s.read(&mut buf), Ok(1))).then_some(s)
            })
            .collect();
        assert!(!survivors.is_empty());
        // Calls on link 1 reset link 1's connections, and make no connection of link 0 roll again.
        for _ in 0..10 {
            network.change(|f| f.drop_connections(Link::Client(1), 1.0));
        }
        assert!(matches!(on1.read(&mut buf), Err(_) | Ok(0)));
        for stream in &mut survivors {
            stream.write_all(b"c").unwrap();
            assert_eq!(read_exactly(stream, 1), b"c");
        }
    }

    #[test]
    fn dropping_the_network_closes_listeners_and_connections() {
        let (network, addr, _) = proxied_echo(Side::Client, 0);
        let mut stream = connect(addr);
        stream.write_all(b"a").unwrap();
        assert_eq!(read_exactly(&mut stream, 1), b"a");
        drop(network);
        let mut buf = [0u8; 1];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
        assert!(StdStream::connect(addr).is_err());
    }

    #[test]
    fn raft_headers_are_found_in_any_case() {
        let head = b"GET /raft/stream/message/8e9e05c52164694d HTTP/1.1\r\nHost: h\r\n\
                     x-server-from: 8e9e05c52164694d\r\nX-Raft-To:  91bc3c398fb3c146 \r\n\r\nbody";
        assert_eq!(
            RaftHeaders::parse(head),
            RaftHeaders {
                from: Some(0x8e9e05c52164694d),
                to: Some(0x91bc3c398fb3c146)
            }
        );
        assert_eq!(
            RaftHeaders::parse(b"GET /version HTTP/1.1\r\nX-Server-From: zz\r\n\r\n"),
            RaftHeaders::default()
        );
        // Headers after the blank line are body, not headers.
        assert_eq!(
            RaftHeaders::parse(b"GET / HTTP/1.1\r\n\r\nX-Server-From: 1\r\n"),
            RaftHeaders::default()
        );
    }

    #[test]
    fn the_owner_of_a_socket_is_found_through_proc() {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap();
        let stream = StdStream::connect(listen).unwrap();
        let dialer = stream.local_addr().unwrap();
        let me = std::process::id();
        assert_eq!(owner_of(dialer, listen, &[(me, 4)]), Some(4));
        assert_eq!(owner_of(dialer, listen, &[]), None);
        assert_eq!(
            proc_addr("127.0.0.1:20000".parse().unwrap()).unwrap(),
            "0100007F:4E20"
        );
    }

    #[test]
    fn rules_combine() {
        let mut faults = Faults::default();
        let (m0, m1) = (Party::Member(0), Party::Member(1));
        let dir = |from, to| Direction { from, to };
        faults.block(Link::Peer { from: 0, to: 1 });
        assert!(faults.rule(dir(m0, m1)).blocked);
        assert!(!faults.rule(dir(m1, m0)).blocked);
        assert!(!faults.rule(dir(Party::Outsider, m1)).blocked);
        let slow = Delay {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
        };
        let slower = Delay {
            latency: Duration::from_millis(30),
            jitter: Duration::ZERO,
        };
        faults.delay(Link::Peers(1), slow);
        faults.delay(Link::Peer { from: 1, to: 0 }, slower);
        assert_eq!(faults.rule(dir(m1, m0)).delay, slower);
        assert_eq!(faults.rule(dir(Party::Outsider, m1)).delay, slow);
        assert_eq!(faults.rule(dir(Party::Client, m1)), Rule::default());
    }

    #[test]
    fn the_generator_is_seeded() {
        let draws = |seed| {
            let mut rng = Rng::new(seed, 3);
            (0..4).map(|_| rng.next()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        let mut rng = Rng::new(9, 0);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.unit())));
        assert!(!rng.chance(0.0));
    }
}
