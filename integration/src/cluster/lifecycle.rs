//! Starting, stopping, killing, pausing and restarting members, and cleaning up after them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use testkit::process::{kill_and_reap, signal, spawn_tied, wait_timeout};
use testkit::ProcessError;

use super::command::{
    initial_cluster, member_name, ports_per_member, unique_token, MemberTemplate, MemberUrls,
};
use super::spec::ClusterSpec;
use super::Cluster;
use crate::error::{io_err, Error, Result};
use crate::ports;
use crate::proxy::Network;

/// How long `stop` waits after SIGTERM before resorting to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Cluster {
    /// Boots `spec.size` members with fresh data dirs and waits until every one reports healthy.
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        if spec.size == 0 {
            return Err(Error::InvalidSpec(
                "a cluster needs at least one member".into(),
            ));
        }
        if !spec.server.path().is_file() {
            return Err(Error::Process(ProcessError::BinaryNotFound {
                name: "server".into(),
                path: spec.server.path().to_path_buf(),
                hint:
                    "install etcd-server, set ETCD_RS_TEST_ETCD_BIN, or build the workspace's etcd"
                        .into(),
            }));
        }
        let http_tls = probe_tls(&spec)?;
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
            .map(|(i, ports)| MemberUrls::new(i, ports, network.as_ref(), &spec))
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
            http_tls,
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

    /// SIGKILLs member `i` and reaps it: a crash, with no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let member = self.member_mut(i)?;
        member.paused = false;
        if let Some(mut child) = member.process.take() {
            tracing::info!(member = %member.name, pid = child.id(), "SIGKILL");
            kill_and_reap(&mut child);
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
        let signalled = signal(child.id(), libc::SIGTERM).and_then(|()| {
            if resume {
                signal(child.id(), libc::SIGCONT)
            } else {
                Ok(())
            }
        });
        if let Err(e) = signalled {
            kill_and_reap(&mut child);
            return Err(io_err(context)(e));
        }
        match wait_timeout(&mut child, STOP_GRACE) {
            Ok(Some(status)) => Ok(Some(status)),
            Ok(None) => {
                tracing::warn!(member = %member.name, "ignored SIGTERM; sending SIGKILL");
                kill_and_reap(&mut child);
                Ok(child.try_wait().ok().flatten())
            }
            Err(e) => {
                kill_and_reap(&mut child);
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
        signal(child.id(), sig).map_err(io_err(format!("signal {sig} to member {}", member.name)))
    }

    /// Starts member `i` again with the same command line and data dir, stopping it first (SIGTERM) if it
    /// is running. Does not wait for health, because a lone restarted member of a stopped cluster never
    /// gets there; follow with [`Cluster::wait_healthy`].
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.stop(i)?;
        self.launch(i)
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

    pub(super) fn launch(&mut self, i: usize) -> Result<()> {
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
        let child = spawn_tied(command)
            .map_err(io_err(format!("spawn {}: {}", member.name, member.command)))?;
        tracing::info!(member = %member.name, pid = child.id(), start = member.starts, "started");
        let pid = child.id();
        member.process = Some(child);
        if let Some(network) = &self.network {
            network.set_pid(i, Some(pid));
        }
        Ok(())
    }
}

/// The https configuration of the probes when the client port has TLS; the harness's identity is required
/// then, since a member may demand a client certificate even on `/health`.
fn probe_tls(spec: &ClusterSpec) -> Result<Option<Arc<rustls::ClientConfig>>> {
    if spec.client_tls.is_none() {
        return Ok(None);
    }
    let Some(harness) = &spec.harness_tls else {
        return Err(Error::InvalidSpec(
            "client_tls needs harness_tls: the CA (and certificate) the harness connects with"
                .into(),
        ));
    };
    let config = harness
        .options()
        .client_config_with_alpn(Vec::new())
        .map_err(|e| Error::InvalidSpec(format!("harness_tls: {e}")))?;
    Ok(Some(Arc::new(config)))
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerBinary;

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
        assert!(
            matches!(err, Error::Process(ProcessError::BinaryNotFound { .. })),
            "{err}"
        );
    }
}
