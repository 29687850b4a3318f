//! The cluster version (etcd's `RaftCluster.version`, `monitorVersions` and
//! `mustDetectDowngrade`): the lowest major.minor among the members, decided by the leader from
//! each member's `/version` and set through raft, so that every member applies and stores the
//! same one (table `cluster`, key `clusterVersion`). Beside it the downgrade state a Downgrade
//! ENABLE sets (key `downgrade`, etcd's JSON), since both decide which members may run.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use api::etcdserverpb::{ClusterVersionSetRequest, InternalRaftRequest};
use backend::{Backend, BatchTx};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::schema::CLUSTER_TABLE;
use super::EtcdServer;
use crate::config::SERVER_VERSION;

/// etcd's `version.MinClusterVersion`: what the leader sets while some member's version is
/// unknown.
pub(crate) const MIN_CLUSTER_VERSION: Version = Version::new(3, 0, 0);
/// How often the leader looks at the members' versions (etcd's `monitorVersionInterval`:
/// rafthttp's connection write timeout minus a second).
const MONITOR_VERSION_INTERVAL: Duration = Duration::from_secs(4);
/// How often the monitor looks for a leadership this member just gained (etcd decides at the
/// first commit of a term).
const LEADERSHIP_POLL: Duration = Duration::from_millis(100);
/// Per peer, for the whole `/version` exchange (etcd: the peer round tripper's timeouts).
const PEER_VERSION_TIMEOUT: Duration = Duration::from_secs(2);

const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";
const DOWNGRADE_KEY: &[u8] = b"downgrade";

/// A version as coreos/go-semver reads it (etcd's `semver.Version`), without pre-release and
/// metadata, which etcd's cluster versions never keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
}

impl Version {
    pub(crate) const fn new(major: i64, minor: i64, patch: i64) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// go-semver's `NewVersion`: `X.Y.Z`, optionally `-pre` and `+meta` made of
    /// `[0-9A-Za-z-]` dot-separated identifiers; each number Go's `ParseInt`.
    pub(crate) fn parse(text: &str) -> Option<Version> {
        let (rest, metadata) = split_off(text, '+');
        let (rest, pre_release) = split_off(rest, '-');
        let parts: Vec<&str> = rest.splitn(3, '.').collect();
        if parts.len() != 3 || !is_identifier(pre_release) || !is_identifier(metadata) {
            return None;
        }
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<i64>().ok()
        };
        Some(Version::new(
            number(parts[0])?,
            number(parts[1])?,
            number(parts[2])?,
        ))
    }

    /// The version with its patch dropped, as cluster versions are compared.
    pub(crate) fn major_minor(self) -> Version {
        Version::new(self.major, self.minor, 0)
    }

    /// This binary's version (`SERVER_VERSION`).
    pub(crate) fn local() -> Version {
        Version::parse(SERVER_VERSION).expect("SERVER_VERSION is a valid version")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// go-semver's `splitOff`: what precedes the first `delim`, and what follows it.
fn split_off(text: &str, delim: char) -> (&str, &str) {
    text.split_once(delim).unwrap_or((text, ""))
}

/// go-semver's `validateIdentifier`: empty, or `^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$`.
fn is_identifier(id: &str) -> bool {
    id.is_empty()
        || id.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// etcd's `DowngradeInfo`, stored as its JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DowngradeInfo {
    /// `X.Y.0` while enabled, empty otherwise.
    #[serde(rename = "target-version")]
    pub target_version: String,
    pub enabled: bool,
}

impl DowngradeInfo {
    /// The target while a downgrade is enabled.
    pub(crate) fn target(&self) -> Option<Version> {
        if !self.enabled {
            return None;
        }
        Version::parse(&self.target_version)
    }
}

/// Why this binary may not run in the cluster as its stored versions describe it (etcd's
/// `mustDetectDowngrade`, fatal there too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DowngradeCheckError {
    #[error("invalid downgrade; server version is not allowed to join when downgrade is enabled (current-server-version: {server}, target-cluster-version: {target})")]
    NotTarget { server: String, target: String },
    #[error("invalid downgrade; server version is lower than determined cluster version (current-server-version: {server}, determined-cluster-version: {cluster})")]
    BelowCluster { server: String, cluster: String },
}

/// etcd's `mustDetectDowngrade` for this binary's version `local`.
pub(crate) fn check_local(
    local: Version,
    cluster: Option<Version>,
    downgrade: &DowngradeInfo,
) -> Result<(), DowngradeCheckError> {
    let lv = local.major_minor();
    if downgrade.enabled && !downgrade.target_version.is_empty() {
        if downgrade.target().map(Version::major_minor) == Some(lv) {
            return Ok(());
        }
        return Err(DowngradeCheckError::NotTarget {
            server: local.to_string(),
            target: downgrade.target_version.clone(),
        });
    }
    match cluster {
        Some(cv) if lv < cv.major_minor() => Err(DowngradeCheckError::BelowCluster {
            server: local.to_string(),
            // etcd logs it as `version.Cluster`: major.minor.
            cluster: format!("{}.{}", cv.major, cv.minor),
        }),
        _ => Ok(()),
    }
}

/// Why the stored versions cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("{0}")]
    Backend(#[from] backend::Error),
    #[error("stored cluster version {0:?} is not a version")]
    ClusterVersion(String),
    #[error("stored downgrade info: {0}")]
    Downgrade(#[from] serde_json::Error),
}

/// The cluster version and downgrade state as applied so far; written only by the apply
/// thread.
#[derive(Debug, Default)]
pub(crate) struct ClusterVersions {
    cluster: RwLock<Option<Version>>,
    downgrade: RwLock<DowngradeInfo>,
}

impl ClusterVersions {
    /// Reads what the backend holds (nothing for a new member).
    pub(crate) fn load(backend: &Backend) -> Result<ClusterVersions, VersionsError> {
        let versions = ClusterVersions::default();
        versions.reload(backend)?;
        Ok(versions)
    }

    /// Replaces the state with the backend's (after a snapshot replaced the backend).
    pub(crate) fn reload(&self, backend: &Backend) -> Result<(), VersionsError> {
        let read = backend.read();
        let cluster = match read.get(CLUSTER_TABLE, CLUSTER_VERSION_KEY)? {
            Some(raw) => {
                let text = String::from_utf8_lossy(&raw).into_owned();
                Some(Version::parse(&text).ok_or(VersionsError::ClusterVersion(text))?)
            }
            None => None,
        };
        let downgrade = match read.get(CLUSTER_TABLE, DOWNGRADE_KEY)? {
            Some(raw) => serde_json::from_slice(&raw)?,
            None => DowngradeInfo::default(),
        };
        drop(read);
        *self.cluster.write() = cluster;
        *self.downgrade.write() = downgrade;
        Ok(())
    }

    /// The cluster version, once the leader has set one.
    pub(crate) fn cluster(&self) -> Option<Version> {
        *self.cluster.read()
    }

    pub(crate) fn downgrade(&self) -> DowngradeInfo {
        self.downgrade.read().clone()
    }

    /// Whether this binary may run in the cluster as it is now.
    pub(crate) fn check_local(&self) -> Result<(), DowngradeCheckError> {
        check_local(Version::local(), self.cluster(), &self.downgrade.read())
    }

    /// Applies a `ClusterVersionSet` (etcd's `SetVersion`): stored as `X.Y.Z`; a text that is
    /// not a version is logged and ignored (etcd would panic). Then the member checks it may
    /// still run.
    pub(crate) fn apply_cluster_version(
        &self,
        tx: &mut BatchTx<'_>,
        text: &str,
    ) -> Result<(), DowngradeCheckError> {
        let Some(version) = Version::parse(text) else {
            tracing::error!(
                version = text,
                "ignoring a cluster version that is not a version"
            );
            return Ok(());
        };
        let before = self.cluster.write().replace(version);
        tx.put(
            CLUSTER_TABLE,
            CLUSTER_VERSION_KEY.to_vec(),
            version.to_string().into_bytes(),
        );
        match before {
            None => tracing::info!(cluster_version = %version, "set initial cluster version"),
            Some(b) if b != version => {
                tracing::info!(from = %b, to = %version, "updated cluster version")
            }
            _ => {}
        }
        self.check_local()
    }

    /// Applies a `DowngradeInfoSet` (etcd's `SetDowngradeInfo`).
    pub(crate) fn apply_downgrade(&self, tx: &mut BatchTx<'_>, enabled: bool, target: &str) {
        let info = DowngradeInfo {
            target_version: if enabled {
                target.to_owned()
            } else {
                String::new()
            },
            enabled,
        };
        let json = serde_json::to_vec(&info).expect("downgrade info always serializes");
        tx.put(CLUSTER_TABLE, DOWNGRADE_KEY.to_vec(), json);
        if enabled {
            tracing::info!(target_version = target, "the server is ready to downgrade");
        } else {
            tracing::info!("downgrade disabled");
        }
        *self.downgrade.write() = info;
    }
}

/// etcd's `decideClusterVersion`: the lowest member version, or none while any is unknown.
pub(crate) fn decide_cluster_version(versions: &BTreeMap<u64, Option<Version>>) -> Option<Version> {
    let mut lowest: Option<Version> = None;
    for version in versions.values() {
        let v = (*version)?;
        if v > Version::local() {
            tracing::warn!(remote = %v, local = SERVER_VERSION, "leader found higher-versioned member");
        }
        lowest = Some(lowest.map_or(v, |l| l.min(v)));
    }
    lowest
}

/// Whether the leader changes the cluster version from `current` to `decided` (both
/// major.minor): up within the major version, or down by exactly the one minor version an
/// enabled downgrade targets.
pub(crate) fn is_valid_version_change(
    current: Version,
    decided: Version,
    downgrade: &DowngradeInfo,
) -> bool {
    let (cv, v) = (current.major_minor(), decided.major_minor());
    let downgrading = downgrade.target().map(Version::major_minor) == Some(v)
        && v == Version::new(cv.major, cv.minor - 1, 0);
    downgrading || (cv.major == v.major && cv < v)
}

/// The body of a `/version` answer (etcd's `version.Versions`).
#[derive(Debug, Deserialize)]
struct Versions {
    etcdserver: String,
}

impl EtcdServer {
    /// The cluster version, once the leader has set one (etcd's `ClusterVersion`).
    pub(crate) fn cluster_version(&self) -> Option<Version> {
        self.inner.versions.cluster()
    }

    /// The downgrade state as applied so far.
    pub(crate) fn downgrade_info(&self) -> DowngradeInfo {
        self.inner.versions.downgrade()
    }

    /// etcd's `getVersions`: each member's server version, this one's own, the others' from
    /// their peer `/version` (none when it does not answer).
    pub(crate) async fn member_versions(&self) -> BTreeMap<u64, Option<Version>> {
        let local = self.inner.cluster.local_id();
        let membership = self.inner.cluster.membership();
        let asks = membership.members.values().map(|m| {
            let dialer = self.inner.peer_dialer.clone();
            let urls = m.peer_urls.clone();
            let id = m.id;
            async move {
                if id == local {
                    return (id, Some(Version::local()));
                }
                for url in &urls {
                    let url = format!("{}/version", url.trim_end_matches('/'));
                    match super::forward::get(&dialer, &url, PEER_VERSION_TIMEOUT).await {
                        Ok((status, body)) if status.is_success() => {
                            if let Some(v) = serde_json::from_slice::<Versions>(&body)
                                .ok()
                                .and_then(|v| Version::parse(&v.etcdserver))
                            {
                                return (id, Some(v));
                            }
                        }
                        Ok((status, _)) => {
                            tracing::debug!(%url, %status, "failed to reach the peer URL")
                        }
                        Err(e) => tracing::debug!(%url, error = %e, "failed to reach the peer URL"),
                    }
                }
                (id, None)
            }
        });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// etcd's `monitorVersions`: on the leader, when it takes office and every
    /// [`MONITOR_VERSION_INTERVAL`], decides the cluster version and proposes it when it
    /// changes.
    pub(super) fn spawn_version_monitor(&self) {
        let weak = self.downgrade();
        let stopped = self.inner.proposer.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut was_leader = false;
            let mut last_check = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
                    _ = &mut stopped => return,
                }
                let Some(server) = weak.upgrade() else { return };
                let leader = server.is_leader();
                let took_office = leader && !was_leader;
                was_leader = leader;
                if !leader || (!took_office && last_check.elapsed() < MONITOR_VERSION_INTERVAL) {
                    continue;
                }
                last_check = tokio::time::Instant::now();
                server.update_cluster_version().await;
            }
        });
    }

    async fn update_cluster_version(&self) {
        let decided =
            decide_cluster_version(&self.member_versions().await).map(Version::major_minor);
        let versions = &self.inner.versions;
        let next = match versions.cluster() {
            None => decided.unwrap_or(MIN_CLUSTER_VERSION),
            Some(current) => match decided {
                Some(v) if is_valid_version_change(current, v, &versions.downgrade()) => v,
                _ => return,
            },
        };
        tracing::info!(cluster_version = %next, "proposing the cluster version");
        // Not waited for: the next round sees whether it was applied.
        self.inner.proposer.propose_unwaited(InternalRaftRequest {
            cluster_version_set: Some(ClusterVersionSetRequest {
                ver: next.to_string(),
            }),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_go_semver() {
        assert_eq!(Version::parse("3.5.17"), Some(Version::new(3, 5, 17)));
        assert_eq!(
            Version::parse("3.4.0-rc.1+git.1"),
            Some(Version::new(3, 4, 0))
        );
        for bad in [
            "3.4",
            "3",
            "",
            "3.4.x",
            "3.4.0.1",
            "v3.4.0",
            "3.4.0-a..b",
            "3..0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        // go-semver takes an empty pre-release as none.
        assert_eq!(Version::parse("3.4.0-"), Some(Version::new(3, 4, 0)));
        assert_eq!(Version::new(3, 4, 0).to_string(), "3.4.0");
        assert_eq!(Version::local().major_minor().to_string(), "3.5.0");
    }

    #[test]
    fn the_cluster_version_is_the_lowest_known_one() {
        let v = |s| Some(Version::parse(s).unwrap());
        let all = BTreeMap::from([(1, v("3.5.17")), (2, v("3.5.2")), (3, v("3.5.9"))]);
        assert_eq!(decide_cluster_version(&all), v("3.5.2"));
        let unknown = BTreeMap::from([(1, v("3.5.17")), (2, None)]);
        assert_eq!(decide_cluster_version(&unknown), None);
    }

    #[test]
    fn the_version_goes_up_or_down_one_minor_during_a_downgrade() {
        let none = DowngradeInfo::default();
        let to_34 = DowngradeInfo {
            target_version: "3.4.0".into(),
            enabled: true,
        };
        let (v30, v34, v35, v36) = (
            Version::new(3, 0, 0),
            Version::new(3, 4, 0),
            Version::new(3, 5, 0),
            Version::new(3, 6, 0),
        );
        assert!(is_valid_version_change(v30, v35, &none));
        assert!(is_valid_version_change(v35, v36, &none));
        assert!(!is_valid_version_change(v35, v35, &none));
        assert!(!is_valid_version_change(v35, v34, &none));
        assert!(is_valid_version_change(v35, v34, &to_34));
        assert!(!is_valid_version_change(v36, v34, &to_34));
        assert!(!is_valid_version_change(v35, Version::new(4, 0, 0), &none));
    }

    #[test]
    fn a_member_runs_only_the_target_while_a_downgrade_is_enabled() {
        let local = Version::new(3, 5, 17);
        let enabled = |t: &str| DowngradeInfo {
            target_version: t.into(),
            enabled: true,
        };
        let none = DowngradeInfo::default();
        assert_eq!(check_local(local, None, &none), Ok(()));
        assert_eq!(
            check_local(local, Some(Version::new(3, 5, 0)), &none),
            Ok(())
        );
        assert!(matches!(
            check_local(local, Some(Version::new(3, 6, 0)), &none),
            Err(DowngradeCheckError::BelowCluster { .. })
        ));
        let e = check_local(local, Some(Version::new(3, 5, 0)), &enabled("3.4.0")).unwrap_err();
        assert!(e.to_string().starts_with(
            "invalid downgrade; server version is not allowed to join when downgrade is enabled"
        ));
        assert_eq!(
            check_local(
                Version::new(3, 4, 9),
                Some(Version::new(3, 5, 0)),
                &enabled("3.4.0")
            ),
            Ok(())
        );
    }

    #[test]
    fn downgrade_info_is_etcds_json() {
        let on = DowngradeInfo {
            target_version: "3.4.0".into(),
            enabled: true,
        };
        assert_eq!(
            serde_json::to_string(&on).unwrap(),
            r#"{"target-version":"3.4.0","enabled":true}"#
        );
        assert_eq!(
            serde_json::to_string(&DowngradeInfo::default()).unwrap(),
            r#"{"target-version":"","enabled":false}"#
        );
    }
}
