//! Runtime membership changes (etcd's `AddMember`, `RemoveMember`, `UpdateMember`,
//! `PromoteMember`): checked as etcd checks them (`ValidateConfigurationChange` and the strict
//! reconfiguration checks), then proposed as raft conf changes whose caller is woken when the
//! change is applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use raftpb::ConfChangeType;

use super::cluster::Cluster;
use super::forward;
use super::membership::{Member, Membership};
use super::proposer::Proposer;
use super::status::RaftStatus;
use crate::error::ServerError;

/// Pause between two forwarding attempts while the leader is unknown or changing.
const PROMOTE_RETRY: Duration = Duration::from_millis(100);

/// A peer counts as active once connected this long (etcd's `HealthInterval`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// A learner may be promoted once it has matched this share of the leader's log (etcd's
/// `readyPercent`).
const LEARNER_READY_PERCENT: f64 = 0.9;
/// etcd's `maxLearners`.
const MAX_LEARNERS: usize = 1;

/// etcd's `isLearnerReady`, on the leader's raft status: refused off the leader, and when the
/// learner's matched index is below 90% of the leader's.
pub(crate) fn learner_ready(status: &raft::Status, id: u64) -> Result<(), ServerError> {
    if status.progress.is_empty() {
        return Err(ServerError::NotLeader);
    }
    let matched = |who: u64| {
        status
            .progress
            .iter()
            .find(|(p, _)| *p == who)
            .map(|(_, pr)| pr.matched)
    };
    let Some(learner) = matched(id) else {
        return Ok(());
    };
    let leader = matched(status.id).unwrap_or(0);
    if (learner as f64) < (leader as f64) * LEARNER_READY_PERCENT {
        return Err(ServerError::LearnerNotReady);
    }
    Ok(())
}

/// A member is started once it has published its name (etcd's `IsStarted`).
fn is_started(m: &Member) -> bool {
    !m.name.is_empty()
}

/// etcd's `IsReadyToAddVotingMember`: after the add, a quorum must already be started.
fn ready_to_add_voter(ms: &Membership) -> bool {
    let voters: Vec<&Member> = ms.members.values().filter(|m| !m.is_learner).collect();
    let members = voters.len() + 1;
    let started = voters.iter().filter(|m| is_started(m)).count();
    if started == 1 && members == 2 {
        // A single member may always get a second: the new one cannot start otherwise.
        return true;
    }
    started > members / 2
}

/// etcd's `IsReadyToRemoveVotingMember`.
fn ready_to_remove_voter(ms: &Membership, id: u64) -> bool {
    let rest: Vec<&Member> = ms
        .members
        .values()
        .filter(|m| !m.is_learner && m.id != id)
        .collect();
    let started = rest.iter().filter(|m| is_started(m)).count();
    started > rest.len() / 2
}

/// etcd's `IsReadyToPromoteMember`: the learner counts as a started voter.
fn ready_to_promote(ms: &Membership) -> bool {
    let voters: Vec<&Member> = ms.members.values().filter(|m| !m.is_learner).collect();
    let members = voters.len() + 1;
    let started = voters.iter().filter(|m| is_started(m)).count() + 1;
    started > members / 2
}

fn check_urls(urls: &[String]) -> Result<(), ServerError> {
    if urls.is_empty() || !urls.iter().all(|u| crate::config::is_valid_member_url(u)) {
        return Err(ServerError::MemberBadUrls);
    }
    Ok(())
}

fn urls_taken(ms: &Membership, urls: &[String], except: u64) -> bool {
    ms.members
        .values()
        .filter(|m| m.id != except)
        .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
}

/// Membership changes, one at a time.
pub(crate) struct Reconfig {
    /// Held while a membership change is in flight: raft takes one conf change at a time.
    serial: tokio::sync::Mutex<()>,
    proposer: Arc<Proposer>,
    status: Arc<RaftStatus>,
    cluster: Arc<Cluster>,
    transport: rafthttp::Transport,
}

impl Reconfig {
    pub(crate) fn new(
        proposer: Arc<Proposer>,
        status: Arc<RaftStatus>,
        cluster: Arc<Cluster>,
        transport: rafthttp::Transport,
    ) -> Reconfig {
        Reconfig {
            serial: tokio::sync::Mutex::new(()),
            proposer,
            status,
            cluster,
            transport,
        }
    }

    fn is_leader(&self) -> bool {
        self.status.leader() == Some(self.cluster.local_id())
    }

    /// etcd's `MemberAdd`: a new member (voter or learner) with an id derived from its peer
    /// URLs and the time. Returns it and the members after the change.
    pub(crate) async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServerError> {
        check_urls(&peer_urls)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut member = Member::new("", &peer_urls, "", Some(now));
        member.is_learner = is_learner;
        let _serial = self.serial.lock().await;
        let ms = self.cluster.membership();
        if ms.members.contains_key(&member.id) {
            return Err(ServerError::MemberExist);
        }
        if urls_taken(&ms, &member.peer_urls, 0) {
            return Err(ServerError::PeerUrlExist);
        }
        if is_learner {
            if ms.members.values().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(ServerError::TooManyLearners);
            }
        } else if !ready_to_add_voter(&ms) {
            return Err(ServerError::NotEnoughStartedMembers);
        }
        if !self.connected_to_all_since(&ms, Instant::now().checked_sub(HEALTH_INTERVAL)) {
            return Err(ServerError::UnhealthyCluster);
        }
        let kind = if is_learner {
            ConfChangeType::ConfChangeAddLearnerNode
        } else {
            ConfChangeType::ConfChangeAddNode
        };
        let context = serde_json::to_vec(&member).expect("a member always serializes");
        let members = self.configure(kind, member.id, context, false).await?;
        Ok((member, members))
    }

    /// etcd's `MemberRemove`. A leader removing itself first hands leadership to another
    /// voter, so the cluster does not wait an election timeout for a new one.
    pub(crate) async fn remove_member(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        let _serial = self.serial.lock().await;
        let ms = self.cluster.membership();
        let Some(target) = ms.members.get(&id) else {
            return Err(ServerError::MemberNotFound);
        };
        if !target.is_learner {
            if !ready_to_remove_voter(&ms, id) {
                return Err(ServerError::NotEnoughStartedMembers);
            }
            let transport = &self.transport;
            let down = id != self.cluster.local_id() && transport.active_since(id).is_none();
            if !down {
                // Keep a quorum of active voters once this one is gone.
                let since = Instant::now().checked_sub(HEALTH_INTERVAL);
                let voters: Vec<&Member> = ms.members.values().filter(|m| !m.is_learner).collect();
                let active = voters
                    .iter()
                    .filter(|m| self.connected_since(m.id, since))
                    .count();
                if active.saturating_sub(1) < 1 + (voters.len() - 1) / 2 {
                    return Err(ServerError::UnhealthyCluster);
                }
            }
        }
        if id == self.cluster.local_id() && self.is_leader() {
            if let Some(next) = self.transferee(&ms) {
                tracing::info!(
                    to = format!("{next:x}"),
                    "removing the leader: handing leadership over first"
                );
                if let Err(e) = self.proposer.transfer_leadership(next).await {
                    tracing::warn!(error = %e, "leadership transfer before self-removal failed");
                }
            }
        }
        let removed = self
            .configure(ConfChangeType::ConfChangeRemoveNode, id, Vec::new(), false)
            .await;
        match removed {
            // The others may tell this member it is gone (and stop it) before it applies its
            // own removal: that is the removal having happened.
            Err(ServerError::Stopped) if id == self.cluster.local_id() => Ok(ms
                .members
                .values()
                .filter(|m| m.id != id)
                .cloned()
                .collect()),
            other => other,
        }
    }

    /// etcd's `MemberUpdate`: new peer URLs for a member.
    pub(crate) async fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ServerError> {
        check_urls(&peer_urls)?;
        let _serial = self.serial.lock().await;
        let ms = self.cluster.membership();
        let Some(current) = ms.members.get(&id) else {
            return Err(ServerError::MemberNotFound);
        };
        let mut urls = peer_urls;
        urls.sort();
        if urls_taken(&ms, &urls, id) {
            return Err(ServerError::PeerUrlExist);
        }
        let updated = Member {
            peer_urls: urls,
            ..current.clone()
        };
        let context = serde_json::to_vec(&updated).expect("a member always serializes");
        self.configure(ConfChangeType::ConfChangeUpdateNode, id, context, false)
            .await
    }

    /// etcd's `MemberPromote`: a learner in sync with the leader becomes a voter. Only the
    /// leader can tell whether it is in sync, so a follower forwards the request to the leader's
    /// peer URL (`POST /members/promote/<id>`), as etcd does, until the request timeout.
    pub(crate) async fn promote_member(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        match self.promote_here(id).await {
            Err(ServerError::NotLeader) => {}
            done => return done,
        }
        let deadline = tokio::time::Instant::now() + self.proposer.request_timeout();
        loop {
            for url in forward::leader_peer_urls(&self.status, &self.cluster) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let url = format!("{url}{}{id}", forward::PROMOTE_PATH);
                let dialer = self.transport.dialer();
                match forward::post(dialer, &url, "text/plain", Vec::new(), left).await {
                    Ok((status, body)) => {
                        if let Some(answer) = promote_answer(status, &body) {
                            return answer;
                        }
                    }
                    Err(e) => tracing::debug!(url, error = %e, "forwarding promote failed"),
                }
            }
            if self.proposer.is_stopped() {
                return Err(ServerError::Stopped);
            }
            if tokio::time::Instant::now() + PROMOTE_RETRY >= deadline {
                return Err(ServerError::Timeout);
            }
            tokio::time::sleep(PROMOTE_RETRY).await;
        }
    }

    /// Promotes on this member, which must be the leader.
    pub(crate) async fn promote_here(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        let _serial = self.serial.lock().await;
        let ms = self.cluster.membership();
        let Some(target) = ms.members.get(&id) else {
            return Err(ServerError::MemberNotFound);
        };
        if !target.is_learner {
            return Err(ServerError::MemberNotLearner);
        }
        if !ready_to_promote(&ms) {
            return Err(ServerError::NotEnoughStartedMembers);
        }
        let promoted = Member {
            is_learner: false,
            ..target.clone()
        };
        let context = serde_json::to_vec(&promoted).expect("a member always serializes");
        self.configure(ConfChangeType::ConfChangeAddNode, id, context, true)
            .await
    }

    /// Proposes one conf change and waits until it is applied; returns the members then.
    async fn configure(
        &self,
        kind: ConfChangeType,
        node_id: u64,
        context: Vec<u8>,
        promote: bool,
    ) -> Result<Vec<Member>, ServerError> {
        self.proposer
            .propose_conf_change(kind, node_id, context, promote)
            .await?;
        Ok(self.cluster.membership().list())
    }

    fn connected_since(&self, id: u64, since: Option<Instant>) -> bool {
        if id == self.cluster.local_id() {
            return true;
        }
        match (self.transport.active_since(id), since) {
            (Some(t), Some(since)) => t <= since,
            _ => false,
        }
    }

    /// etcd's `isConnectedFullySince` over the voters.
    fn connected_to_all_since(&self, ms: &Membership, since: Option<Instant>) -> bool {
        ms.members
            .values()
            .filter(|m| !m.is_learner)
            .all(|m| self.connected_since(m.id, since))
    }

    /// The connected voter other than this member that is furthest along, to lead next.
    fn transferee(&self, ms: &Membership) -> Option<u64> {
        ms.members
            .values()
            .filter(|m| !m.is_learner && m.id != self.cluster.local_id())
            .filter(|m| self.transport.active_since(m.id).is_some())
            .map(|m| m.id)
            .next()
    }
}

/// The outcome a forwarded promotion's answer gives; None when the sender should try again.
fn promote_answer(status: StatusCode, body: &[u8]) -> Option<Result<Vec<Member>, ServerError>> {
    let text = String::from_utf8_lossy(body);
    match status {
        StatusCode::OK => Some(
            serde_json::from_slice(body)
                .map_err(|e| ServerError::Internal(format!("bad promote answer: {e}"))),
        ),
        StatusCode::NOT_FOUND => Some(Err(ServerError::MemberNotFound)),
        StatusCode::PRECONDITION_FAILED if text == ServerError::LearnerNotReady.to_string() => {
            Some(Err(ServerError::LearnerNotReady))
        }
        StatusCode::PRECONDITION_FAILED if text == ServerError::MemberNotLearner.to_string() => {
            Some(Err(ServerError::MemberNotLearner))
        }
        StatusCode::PRECONDITION_FAILED | StatusCode::BAD_REQUEST => Some(Err(
            ServerError::Internal(format!("member promote: unknown error({text})")),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, started: bool, learner: bool) -> Member {
        Member {
            id,
            peer_urls: vec![format!("http://127.0.0.1:{}", 20000 + id)],
            name: if started {
                format!("m{id}")
            } else {
                String::new()
            },
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }

    fn membership(members: &[Member]) -> Membership {
        Membership {
            members: members.iter().map(|m| (m.id, m.clone())).collect(),
            removed: Default::default(),
        }
    }

    #[test]
    fn strict_checks_count_started_voters_as_etcd() {
        let one = membership(&[member(1, true, false)]);
        assert!(ready_to_add_voter(&one));
        // 2 voters, one not started yet: a third would need 2 of 3 started.
        let half = membership(&[member(1, true, false), member(2, false, false)]);
        assert!(!ready_to_add_voter(&half));
        assert!(!ready_to_remove_voter(&half, 1));
        assert!(ready_to_remove_voter(&half, 2));
        let three = membership(&[
            member(1, true, false),
            member(2, true, false),
            member(3, false, true),
        ]);
        assert!(ready_to_add_voter(&three));
        assert!(ready_to_promote(&three));
        assert!(!ready_to_remove_voter(&one, 1));
    }

    #[test]
    fn learner_readiness_is_measured_against_the_leader() {
        let progress = |matched| raft::PeerProgress {
            matched,
            next_idx: matched + 1,
            state: raft::ProgressState::Replicate,
            is_learner: false,
            recent_active: true,
            inflight: 0,
            pending_snapshot: 0,
            probe_sent: false,
        };
        let status = |learner_match| raft::Status {
            id: 1,
            hard_state: Default::default(),
            soft_state: Default::default(),
            applied: 100,
            progress: vec![(1, progress(100)), (2, progress(learner_match))],
            conf_state: Default::default(),
            lead_transferee: None,
        };
        assert_eq!(learner_ready(&status(90), 2), Ok(()));
        assert_eq!(
            learner_ready(&status(89), 2),
            Err(ServerError::LearnerNotReady)
        );
        let follower = raft::Status {
            progress: Vec::new(),
            ..status(100)
        };
        assert_eq!(learner_ready(&follower, 2), Err(ServerError::NotLeader));
    }

    #[test]
    fn member_urls_are_checked_as_etcd() {
        assert!(check_urls(&["http://127.0.0.1:2380".into()]).is_ok());
        assert_eq!(
            check_urls(&["127.0.0.1:2380".into()]),
            Err(ServerError::MemberBadUrls)
        );
        assert_eq!(check_urls(&[]), Err(ServerError::MemberBadUrls));
    }

    #[test]
    fn forwarded_promote_answers_map_back_to_etcds_errors() {
        let members = vec![member(1, true, false)];
        let json = serde_json::to_vec(&members).unwrap();
        assert_eq!(
            promote_answer(StatusCode::OK, &json),
            Some(Ok(members.clone()))
        );
        assert_eq!(
            promote_answer(StatusCode::NOT_FOUND, b"etcdserver: member not found"),
            Some(Err(ServerError::MemberNotFound))
        );
        let not_ready = ServerError::LearnerNotReady.to_string();
        assert_eq!(
            promote_answer(StatusCode::PRECONDITION_FAILED, not_ready.as_bytes()),
            Some(Err(ServerError::LearnerNotReady))
        );
        let not_learner = ServerError::MemberNotLearner.to_string();
        assert_eq!(
            promote_answer(StatusCode::PRECONDITION_FAILED, not_learner.as_bytes()),
            Some(Err(ServerError::MemberNotLearner))
        );
        assert!(matches!(
            promote_answer(StatusCode::PRECONDITION_FAILED, b"something else"),
            Some(Err(ServerError::Internal(_)))
        ));
        assert!(matches!(
            promote_answer(StatusCode::OK, b"not json"),
            Some(Err(ServerError::Internal(_)))
        ));
        assert_eq!(promote_answer(StatusCode::SERVICE_UNAVAILABLE, b""), None);
    }
}
