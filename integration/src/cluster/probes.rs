//! Asking members over HTTP(S) whether they are healthy and who leads, and waiting for answers.

use std::thread;
use std::time::{Duration, Instant};

use super::member::{tail, LOG_TAIL_LINES};
use super::Cluster;
use crate::error::{io_err, Error, Result};
use crate::http;

/// How often health probes are repeated while waiting for several members (see `wait_members_healthy`).
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bound on a single HTTP probe; etcd's own /health check gives up after 1 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Cluster {
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
        let resp = http::get(
            &member.listen_client_url,
            "/metrics",
            PROBE_TIMEOUT,
            self.http_tls.as_ref(),
        )?;
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
        testkit::poll(timeout, || match self.leader_claims().as_slice() {
            [only] => Ok(*only),
            claims => Err(claims.to_vec()),
        })
        .map_err(|claims| Error::NoLeader {
            timeout,
            last: format!("members claiming leadership: {claims:?}"),
        })
    }

    fn leader_claims(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|&i| self.probed(i))
            .filter(|&i| {
                http::get(
                    &self.members[i].listen_client_url,
                    "/metrics",
                    PROBE_TIMEOUT,
                    self.http_tls.as_ref(),
                )
                .is_ok_and(|resp| resp.status == 200 && reports_leader(&resp.body))
            })
            .collect()
    }

    /// Whether probes should ask member `i`: a paused member would only make them wait for a timeout.
    fn probed(&self, i: usize) -> bool {
        self.members[i].process.is_some() && !self.members[i].paused
    }

    /// Its own loop rather than `testkit::poll`: a member that died ends the wait at once, with its log
    /// tail, instead of at the deadline.
    fn wait_members_healthy(&mut self, indexes: &[usize], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = indexes.to_vec();
        let mut last = vec![String::from("no answer yet"); self.size()];
        loop {
            let mut still_pending = Vec::new();
            for &i in &pending {
                self.ensure_alive(i)?;
                let url = &self.members[i].listen_client_url;
                match http::get(url, "/health", PROBE_TIMEOUT, self.http_tls.as_ref()) {
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
}
