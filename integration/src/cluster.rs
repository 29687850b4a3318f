//! Real multi-process clusters: one server process per member, each started from a command line of
//! etcd's standard flags, so the same code boots Debian's etcd today and our own `etcd` binary later.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{io_err, Error, Result};
use crate::http;
use crate::ports::{self, ReservedPort};
use crate::process::{self, bin_path, shell_words, Cli};
use crate::proxy::{Delay, Faults, Link, Network, Side};

/// How often health and leader probes are repeated while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bound on a single HTTP probe; etcd's own /health check gives up after 1 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of a member's log quoted in errors and printed when a test panics.
const LOG_TAIL_LINES: usize = 40;
/// How long `stop` waits after SIGTERM before resorting to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

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
        }
    }
}

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
struct Member {
    name: String,
    /// What the member advertises; its proxies' URLs in a proxied cluster.
    client_url: String,
    peer_url: String,
    /// Where the member itself listens; the harness probes it there, past any fault.
    listen_client_url: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    command: MemberCommand,
    /// None once killed or stopped.
    process: Option<Child>,
    /// SIGSTOPped by `pause` and not yet resumed.
    paused: bool,
    starts: u32,
}

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
    // Drop order matters: `Drop for Cluster` kills the members, then the directory goes, then the ports
    // are released (fields drop in declaration order), so no other test can bind a port still in use.
    dir: tempfile::TempDir,
    _ports: Vec<ReservedPort>,
}

impl Cluster {
    /// Boots `spec.size` members with fresh data dirs and waits until every one reports healthy.
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        if spec.size == 0 {
            return Err(Error::InvalidSpec(
                "a cluster needs at least one member".into(),
            ));
        }
        if !spec.server.path().is_file() {
            return Err(Error::BinaryNotFound {
                name: "server".into(),
                path: spec.server.path().to_path_buf(),
                hint:
                    "install etcd-server, set ETCD_RS_TEST_ETCD_BIN, or build the workspace's etcd"
                        .into(),
            });
        }
        let network = spec
            .proxied
            .then(|| Network::start(spec.proxy_seed))
            .transpose()?;
        let ports = ports::reserve(ports_per_member(&spec) * spec.size)?;
        remove_abandoned_dirs(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(io_err("create the cluster's temporary directory"))?;

        let urls = ports
            .chunks(ports_per_member(&spec))
            .enumerate()
            .map(|(i, ports)| MemberUrls::new(i, ports, network.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = (0..spec.size).map(member_name).collect();
        let initial_cluster = initial_cluster(names.iter().zip(urls.iter().map(|u| &u.peer)));
        let token = unique_token();

        let template = MemberTemplate {
            spec: &spec,
            dir: dir.path(),
            token: &token,
        };
        let members = names
            .into_iter()
            .zip(urls)
            .map(|(name, urls)| template.member(name, urls, &initial_cluster, "new"))
            .collect();

        let mut cluster = Cluster {
            members,
            spec,
            token,
            network,
            dir,
            _ports: ports,
        };
        for i in 0..cluster.size() {
            cluster.launch(i)?;
        }
        cluster.wait_all_healthy(cluster.spec.start_timeout)?;
        tracing::info!(size = cluster.size(), endpoints = %cluster.endpoints(), "cluster is healthy");
        Ok(cluster)
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The member's `--name`: `m0`, `m1`, ...
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// `http://127.0.0.1:<port>`: where clients reach the member (through its proxy when proxied).
    pub fn client_url(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Where the member itself listens for clients: past its proxy, so past every network fault. The
    /// same as [`Cluster::client_url`] in a cluster that is not proxied.
    pub fn direct_client_url(&self, i: usize) -> &str {
        &self.members[i].listen_client_url
    }

    /// `http://127.0.0.1:<port>` where the member talks raft to its peers.
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

    /// A command line for `bin` with `--endpoints=<all members>` already in place.
    pub fn cli(&self, bin: impl Into<PathBuf>) -> Cli {
        Cli::new(bin).arg(format!("--endpoints={}", self.endpoints()))
    }

    /// SIGKILLs member `i` and reaps it: a crash, with no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let member = self.member_mut(i)?;
        member.paused = false;
        if let Some(mut child) = member.process.take() {
            tracing::info!(member = %member.name, pid = child.id(), "SIGKILL");
            process::kill_and_reap(&mut child);
        }
        self.forget_pid(i);
        Ok(())
    }

    /// SIGTERMs member `i` and waits for it to exit (SIGKILL after 10 s). Returns its exit status, or None
    /// if it had been killed or stopped already.
    pub fn stop(&mut self, i: usize) -> Result<Option<ExitStatus>> {
        self.forget_pid(i);
        let member = self.member_mut(i)?;
        let Some(mut child) = member.process.take() else {
            return Ok(None);
        };
        // It may have exited by itself already; then its pid must not be signalled.
        if let Ok(Some(status)) = child.try_wait() {
            member.paused = false;
            return Ok(Some(status));
        }
        tracing::info!(member = %member.name, pid = child.id(), "SIGTERM");
        let context = format!("stop member {}", member.name);
        // A paused process only acts on SIGTERM once continued.
        let resume = std::mem::take(&mut member.paused);
        let signalled = process::signal(child.id(), libc::SIGTERM).and_then(|()| {
            if resume {
                process::signal(child.id(), libc::SIGCONT)
            } else {
                Ok(())
            }
        });
        if let Err(e) = signalled {
            process::kill_and_reap(&mut child);
            return Err(io_err(context)(e));
        }
        match process::wait_timeout(&mut child, STOP_GRACE) {
            Ok(Some(status)) => Ok(Some(status)),
            Ok(None) => {
                tracing::warn!(member = %member.name, "ignored SIGTERM; sending SIGKILL");
                process::kill_and_reap(&mut child);
                Ok(child.try_wait().ok().flatten())
            }
            Err(e) => {
                process::kill_and_reap(&mut child);
                Err(io_err(context)(e))
            }
        }
    }

    /// SIGSTOPs member `i`: it keeps its sockets and state but answers nobody, like a long GC pause or a
    /// frozen VM. Health and leader probes skip it until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.signal_running(i, libc::SIGSTOP)?;
        self.members[i].paused = true;
        Ok(())
    }

    /// SIGCONTs a member paused by [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) -> Result<()> {
        self.signal_running(i, libc::SIGCONT)?;
        self.members[i].paused = false;
        Ok(())
    }

    fn signal_running(&mut self, i: usize, sig: libc::c_int) -> Result<()> {
        let member = self.member_mut(i)?;
        // A process that exited by itself and was reaped may have had its pid reused: never signal it.
        let Some(child) = member.process.as_mut() else {
            return Err(Error::MemberNotRunning {
                member: member.name.clone(),
            });
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return Err(Error::MemberNotRunning {
                member: member.name.clone(),
            });
        }
        tracing::info!(member = %member.name, pid = child.id(), signal = sig, "signal");
        process::signal(child.id(), sig)
            .map_err(io_err(format!("signal {sig} to member {}", member.name)))
    }

    /// Starts member `i` again with the same command line and data dir, stopping it first (SIGTERM) if it
    /// is running. Does not wait for health, because a lone restarted member of a stopped cluster never
    /// gets there; follow with [`Cluster::wait_healthy`].
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.stop(i)?;
        self.launch(i)
    }

    /// Reserves ports and a data dir for one more member, `m<size()>`, and returns its index. Nothing is
    /// started: announce it with MemberAdd (its [`Cluster::peer_url`]), then [`Cluster::join`] it.
    pub fn add_member_slot(&mut self) -> Result<usize> {
        let ports = ports::reserve(ports_per_member(&self.spec))?;
        let i = self.members.len();
        let urls = MemberUrls::new(i, &ports, self.network.as_ref())?;
        let template = MemberTemplate {
            spec: &self.spec,
            dir: self.dir.path(),
            token: &self.token,
        };
        let member = template.member(member_name(i), urls, "", "existing");
        self.members.push(member);
        self._ports.extend(ports);
        Ok(i)
    }

    /// Starts member `i` as a newcomer to the running cluster, as etcd's docs say to after MemberAdd:
    /// `--initial-cluster-state existing` and `--initial-cluster` naming `membership`, the indexes of
    /// every member the cluster has now, `i` included. The member must not be running; its data dir is
    /// kept, so [`Cluster::wipe`] it first to join afresh. Does not wait for health.
    pub fn join(&mut self, i: usize, membership: &[usize]) -> Result<()> {
        self.member_mut(i)?;
        if self.members[i].process.is_some() {
            return Err(Error::InvalidSpec(format!(
                "member {} is running; stop it before it joins again",
                self.members[i].name
            )));
        }
        if let Some(&bad) = membership.iter().find(|&&m| m >= self.size()) {
            return Err(Error::NoSuchMember {
                index: bad,
                size: self.size(),
            });
        }
        let initial_cluster = initial_cluster(
            membership
                .iter()
                .map(|&m| (&self.members[m].name, &self.members[m].peer_url)),
        );
        let args = &mut self.members[i].command.args;
        set_flag(args, "--initial-cluster", &initial_cluster);
        set_flag(args, "--initial-cluster-state", "existing");
        self.launch(i)
    }

    /// Splits the members into `groups` that cannot talk to each other: every peer link between two
    /// groups is blocked both ways. Clients still reach every member, and members in no group are not
    /// affected. Faults add up until [`Cluster::heal`]; see [`Link`] for what a blocked link does.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<()> {
        let network = self.network()?;
        let mut seen = Vec::new();
        for &member in groups.iter().flat_map(|g| g.iter()) {
            self.check_member(member)?;
            if seen.contains(&member) {
                return Err(Error::InvalidFault(format!(
                    "member {member} is in two groups of {groups:?}"
                )));
            }
            seen.push(member);
        }
        tracing::info!(?groups, "fault: partition");
        network.change(|faults| {
            for (g, group) in groups.iter().enumerate() {
                for other in groups.iter().skip(g + 1) {
                    for &a in group.iter() {
                        for &b in other.iter() {
                            faults.block(Link::Peer { from: a, to: b });
                            faults.block(Link::Peer { from: b, to: a });
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Cuts member `i` off the network: its peer links both ways and its client link.
    pub fn isolate(&self, i: usize) -> Result<()> {
        self.change_faults(
            "isolate",
            &[Link::Peers(i), Link::Client(i)],
            |faults, link| faults.block(link),
        )
    }

    /// Blocks `link`: bytes sent over it are held (the sender's TCP stalls) until [`Cluster::heal`].
    /// `Link::Peer { from, to }` is one-way: `to`'s traffic to `from` still flows.
    pub fn blackhole(&self, link: Link) -> Result<()> {
        self.change_faults("blackhole", &[link], |faults, link| faults.block(link))
    }

    /// Delays every chunk of bytes sent over `link` by `delay` (on a client link or `Link::Peers`, both
    /// directions).
    pub fn delay(&self, link: Link, delay: Delay) -> Result<()> {
        self.change_faults("delay", &[link], |faults, link| faults.delay(link, delay))
    }

    /// Resets (RST) each connection over `link` with probability `share`, from 0 to 1: every one open
    /// now, and every new one as it opens. A peer connection carries both directions between two
    /// members, so `Link::Peer { from, to }` resets connections between them whichever side dialed.
    pub fn drop_connections(&self, link: Link, share: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&share) {
            return Err(Error::InvalidFault(format!(
                "a share of connections must be within [0, 1], not {share}"
            )));
        }
        self.change_faults("drop connections", &[link], |faults, link| {
            faults.drop_connections(link, share)
        })
    }

    /// Lifts every network fault: held bytes flow again, delays and resets stop.
    pub fn heal(&self) -> Result<()> {
        tracing::info!("fault: heal");
        self.network()?.heal();
        Ok(())
    }

    fn change_faults(
        &self,
        what: &str,
        links: &[Link],
        apply: impl Fn(&mut Faults, Link),
    ) -> Result<()> {
        let network = self.network()?;
        for &link in links {
            match link {
                Link::Peer { from, to } => {
                    self.check_member(from)?;
                    self.check_member(to)?;
                    if from == to {
                        return Err(Error::InvalidFault(format!(
                            "a peer link joins two members, not member {from} to itself"
                        )));
                    }
                }
                Link::Peers(i) | Link::Client(i) => self.check_member(i)?,
            }
        }
        tracing::info!(?links, "fault: {what}");
        network.change(|faults| {
            for &link in links {
                apply(faults, link);
            }
        });
        Ok(())
    }

    fn network(&self) -> Result<&Network> {
        self.network.as_ref().ok_or(Error::NotProxied)
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

    /// Tells the proxies member `i` has no process any more, so its pid is never taken for it.
    fn forget_pid(&self, i: usize) {
        if let Some(network) = &self.network {
            network.set_pid(i, None);
        }
    }

    /// Deletes member `i`'s data dir, which must not be in use: a replaced disk or machine.
    pub fn wipe(&mut self, i: usize) -> Result<()> {
        let member = self.member_mut(i)?;
        if member.process.is_some() {
            return Err(Error::InvalidSpec(format!(
                "member {} is running; stop it before wiping its data",
                member.name
            )));
        }
        match fs::remove_dir_all(&member.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("remove {}", member.data_dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Forgets member `i`'s process after it left the cluster: a removed member exits by itself, and
    /// probes and [`Cluster::wait_all_healthy`] must not wait for it. Kills it if it still runs.
    pub fn retire(&mut self, i: usize) -> Result<()> {
        self.kill(i)
    }

    /// Waits until member `i` answers `GET /health` with `{"health":"true"}`.
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<()> {
        self.member_mut(i)?;
        self.wait_members_healthy(&[i], timeout)
    }

    /// Waits until every member that has a process and is not paused answers `/health` with true.
    pub fn wait_all_healthy(&mut self, timeout: Duration) -> Result<()> {
        let running: Vec<usize> = (0..self.size()).filter(|&i| self.probed(i)).collect();
        self.wait_members_healthy(&running, timeout)
    }

    /// The index of the leader, if exactly one running, unpaused member reports `etcd_server_is_leader 1` on
    /// `/metrics` (etcd 3.4 exposes leadership over plain HTTP nowhere else).
    pub fn leader_index(&self) -> Option<usize> {
        match self.leader_claims().as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// The member's Prometheus text from `GET /metrics`.
    pub fn metrics(&self, i: usize) -> Result<String> {
        let member = self.members.get(i).ok_or(Error::NoSuchMember {
            index: i,
            size: self.size(),
        })?;
        let resp = http::get(&member.listen_client_url, "/metrics", PROBE_TIMEOUT)?;
        if resp.status != 200 {
            return Err(Error::Http {
                url: format!("{}/metrics", member.listen_client_url),
                reason: format!("HTTP {}: {}", resp.status, resp.body.trim()),
            });
        }
        Ok(resp.body)
    }

    /// Polls [`Cluster::leader_index`] until a leader exists.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let claims = self.leader_claims();
            if let [only] = claims.as_slice() {
                return Ok(*only);
            }
            if Instant::now() >= deadline {
                return Err(Error::NoLeader {
                    timeout,
                    last: format!("members claiming leadership: {claims:?}"),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn leader_claims(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|&i| self.probed(i))
            .filter(|&i| {
                http::get(
                    &self.members[i].listen_client_url,
                    "/metrics",
                    PROBE_TIMEOUT,
                )
                .is_ok_and(|resp| resp.status == 200 && reports_leader(&resp.body))
            })
            .collect()
    }

    /// Whether probes should ask member `i`: a paused member would only make them wait for a timeout.
    fn probed(&self, i: usize) -> bool {
        self.members[i].process.is_some() && !self.members[i].paused
    }

    fn member_mut(&mut self, i: usize) -> Result<&mut Member> {
        let size = self.members.len();
        self.members
            .get_mut(i)
            .ok_or(Error::NoSuchMember { index: i, size })
    }

    fn launch(&mut self, i: usize) -> Result<()> {
        let member = self.member_mut(i)?;
        member.starts += 1;
        member.paused = false;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .map_err(io_err(format!("open {}", member.log_path.display())))?;
        // A marker so a log spanning restarts shows where each run begins.
        writeln!(
            log,
            "=== etcd-rs harness: start #{} of {}: {} ===",
            member.starts, member.name, member.command
        )
        .map_err(io_err(format!("write {}", member.log_path.display())))?;
        let stderr = log
            .try_clone()
            .map_err(io_err(format!("dup {}", member.log_path.display())))?;
        let mut command = std::process::Command::new(&member.command.program);
        command
            .args(&member.command.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = process::spawn_tied(command)
            .map_err(io_err(format!("spawn {}: {}", member.name, member.command)))?;
        tracing::info!(member = %member.name, pid = child.id(), start = member.starts, "started");
        let pid = child.id();
        member.process = Some(child);
        if let Some(network) = &self.network {
            network.set_pid(i, Some(pid));
        }
        Ok(())
    }

    fn wait_members_healthy(&mut self, indexes: &[usize], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = indexes.to_vec();
        let mut last = vec![String::from("no answer yet"); self.size()];
        loop {
            let mut still_pending = Vec::new();
            for &i in &pending {
                self.ensure_alive(i)?;
                match http::get(&self.members[i].listen_client_url, "/health", PROBE_TIMEOUT) {
                    Ok(resp) if resp.status == 200 && reports_healthy(&resp.body) => continue,
                    Ok(resp) => last[i] = format!("HTTP {}: {}", resp.status, resp.body.trim()),
                    Err(e) => last[i] = e.to_string(),
                }
                still_pending.push(i);
            }
            pending = still_pending;
            let Some(&first) = pending.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let member = &self.members[first];
                return Err(Error::NotHealthy {
                    member: member.name.clone(),
                    timeout,
                    last: last[first].clone(),
                    command: member.command.to_string(),
                    log_tail: self.log_tail(first),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Fails fast, with the log tail, when the member's process is gone (a bad flag, a crash).
    fn ensure_alive(&mut self, i: usize) -> Result<()> {
        let member = &mut self.members[i];
        let Some(child) = member.process.as_mut() else {
            return Err(Error::MemberNotRunning {
                member: member.name.clone(),
            });
        };
        if member.paused {
            return Err(Error::MemberPaused {
                member: member.name.clone(),
            });
        }
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                member.process = None;
                Err(Error::MemberExited {
                    member: member.name.clone(),
                    status,
                    command: member.command.to_string(),
                    log_tail: tail(&member.log_path, LOG_TAIL_LINES),
                })
            }
            Err(e) => Err(io_err(format!("check member {}", member.name))(e)),
        }
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
                process::kill_and_reap(&mut child);
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

/// Cluster directories are named `<DIR_PREFIX><pid of the test process>-<random>`.
const DIR_PREFIX: &str = "etcd-rs-cluster-";

/// Deletes cluster directories left behind by test processes that were killed before `Drop` could run
/// (each holds ~120 MB of preallocated WAL). A directory whose process still exists is left alone.
fn remove_abandoned_dirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %entry.path().display(), pid, "removing an abandoned cluster directory");
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove");
            }
        }
    }
}

/// What every member's command line shares: the spec's binary, timing and extra flags, the token and
/// the directory that holds data dirs and logs.
struct MemberTemplate<'a> {
    spec: &'a ClusterSpec,
    dir: &'a Path,
    token: &'a str,
}

impl MemberTemplate<'_> {
    fn member(&self, name: String, urls: MemberUrls, initial_cluster: &str, state: &str) -> Member {
        let data_dir = self.dir.join(&name);
        let log_path = self.dir.join(format!("{name}.log"));
        let mut args: Vec<String> = [
            "--name",
            &name,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-client-urls",
            &urls.listen_client,
            "--advertise-client-urls",
            &urls.client,
            "--listen-peer-urls",
            &urls.listen_peer,
            "--initial-advertise-peer-urls",
            &urls.peer,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            &self.spec.heartbeat_interval_ms.to_string(),
            "--election-timeout",
            &self.spec.election_timeout_ms.to_string(),
        ]
        .map(String::from)
        .into();
        args.extend(self.spec.extra_args.iter().cloned());
        Member {
            name,
            client_url: urls.client,
            peer_url: urls.peer,
            listen_client_url: urls.listen_client,
            data_dir,
            log_path,
            command: MemberCommand {
                program: self.spec.server.path().to_path_buf(),
                args,
            },
            process: None,
            paused: false,
            starts: 0,
        }
    }
}

/// Ports a member takes from the pool: client and peer, and in a proxied cluster the member's own two
/// behind its proxies'.
fn ports_per_member(spec: &ClusterSpec) -> usize {
    if spec.proxied {
        4
    } else {
        2
    }
}

/// A member's advertised URLs and the ones it listens on; they differ only in a proxied cluster.
struct MemberUrls {
    client: String,
    peer: String,
    listen_client: String,
    listen_peer: String,
}

impl MemberUrls {
    /// URLs on `ports` (as many as [`ports_per_member`] says) for member `i`, whose proxies, when
    /// `network` is given, start listening here.
    fn new(i: usize, ports: &[ReservedPort], network: Option<&Network>) -> Result<MemberUrls> {
        let url = |port: &ReservedPort| format!("http://127.0.0.1:{}", port.port());
        let Some(network) = network else {
            return Ok(MemberUrls {
                client: url(&ports[0]),
                peer: url(&ports[1]),
                listen_client: url(&ports[0]),
                listen_peer: url(&ports[1]),
            });
        };
        for (side, proxy, upstream) in [
            (Side::Client, &ports[0], &ports[2]),
            (Side::Peer, &ports[1], &ports[3]),
        ] {
            let listener = std::net::TcpListener::bind(("127.0.0.1", proxy.port()))
                .map_err(io_err(format!("bind a proxy on port {}", proxy.port())))?;
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], upstream.port()));
            network.add_proxy(i, side, listener, upstream)?;
        }
        Ok(MemberUrls {
            client: url(&ports[0]),
            peer: url(&ports[1]),
            listen_client: url(&ports[2]),
            listen_peer: url(&ports[3]),
        })
    }
}

/// `--initial-cluster`'s value: `name=peer-url` pairs joined by commas.
fn initial_cluster<'a>(members: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    members
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets `flag`'s value in `args`, which holds it as a separate word after the flag.
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    if let Some(pos) = args.iter().position(|a| a == flag) {
        if let Some(slot) = args.get_mut(pos + 1) {
            *slot = value.to_string();
        }
    }
}

fn member_name(i: usize) -> String {
    format!("m{i}")
}

/// A cluster token no other cluster on this machine uses, so members of different tests can never join
/// each other even if a port were reused.
fn unique_token() -> String {
    static CLUSTERS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "etcd-rs-test-{}-{}-{nanos}",
        std::process::id(),
        CLUSTERS.fetch_add(1, Ordering::Relaxed)
    )
}

fn reports_healthy(body: &str) -> bool {
    // 3.4 answers {"health":"true"}, 3.5 adds ,"reason":""; compare without whitespace.
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains(r#""health":"true""#)
}

fn reports_leader(metrics: &str) -> bool {
    metrics.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("etcd_server_is_leader")
            && words.next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)
    })
}

fn tail(path: &Path, lines: usize) -> String {
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
    fn health_body_parsing() {
        assert!(reports_healthy(r#"{"health":"true"}"#));
        assert!(reports_healthy(r#"{"health": "true", "reason": ""}"#));
        assert!(!reports_healthy(r#"{"health":"false"}"#));
        assert!(!reports_healthy(""));
    }

    #[test]
    fn leader_metric_parsing() {
        let leader = "# HELP etcd_server_is_leader Whether or not this member is a leader.\n\
                      # TYPE etcd_server_is_leader gauge\netcd_server_is_leader 1\n";
        assert!(reports_leader(leader));
        assert!(!reports_leader(
            "etcd_server_is_leader 0\netcd_server_has_leader 1\n"
        ));
        assert!(!reports_leader("etcd_server_is_leader_changes 1\n"));
        assert!(!reports_leader(""));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        assert!(tail(&dir.path().join("missing"), 2).starts_with("(cannot read"));
    }

    #[test]
    fn abandoned_dirs_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid above the kernel's pid_max limit (2^22) cannot exist.
        let dead = tmp.path().join(format!("{DIR_PREFIX}{}-abc", 1u32 << 23));
        let alive = tmp
            .path()
            .join(format!("{DIR_PREFIX}{}-abc", std::process::id()));
        let unrelated = tmp.path().join(format!("{DIR_PREFIX}not-a-pid"));
        for dir in [&dead, &alive, &unrelated] {
            fs::create_dir_all(dir.join("m0/member")).unwrap();
        }
        remove_abandoned_dirs(tmp.path());
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn tokens_are_unique() {
        assert_ne!(unique_token(), unique_token());
    }

    #[test]
    fn empty_cluster_is_rejected() {
        let err = Cluster::start(ClusterSpec::new(0)).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    }

    #[test]
    fn missing_server_binary_is_reported() {
        let spec = ClusterSpec {
            server: ServerBinary::new("/nonexistent/etcd"),
            ..ClusterSpec::default()
        };
        let err = Cluster::start(spec).unwrap_err();
        assert!(matches!(err, Error::BinaryNotFound { .. }), "{err}");
    }
}
