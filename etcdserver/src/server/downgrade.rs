//! The Downgrade API (etcd 3.5's `EtcdServer.Downgrade` and `monitorDowngrade`): VALIDATE checks
//! that the cluster may go one minor version down, ENABLE records the target through raft,
//! CANCEL clears it; the leader cancels by itself once every member runs the target.

use std::collections::BTreeMap;
use std::time::Duration;

use api::etcdserverpb::downgrade_request::DowngradeAction;
use api::etcdserverpb::{DowngradeInfoSetRequest, InternalRaftRequest};

use super::version::Version;
use super::EtcdServer;
use crate::core::ServerCore;
use crate::error::ServerError;

/// etcd's `convertToClusterVersion`: `X.Y.Z` or `X.Y`, the patch dropped.
pub(crate) fn target_version(text: &str) -> Result<Version, ServerError> {
    Version::parse(text)
        .or_else(|| Version::parse(&format!("{text}.0")))
        .map(Version::major_minor)
        .ok_or(ServerError::WrongDowngradeVersionFormat)
}

/// etcd's `AllowedDowngradeVersion`: one minor version below `cluster`.
pub(crate) fn allowed_downgrade_version(cluster: Version) -> Version {
    Version::new(cluster.major, cluster.minor - 1, 0)
}

/// etcd's `isMatchedVersions`: every member's version is known and has `target`'s major.minor.
pub(crate) fn is_matched_versions(
    target: Version,
    versions: &BTreeMap<u64, Option<Version>>,
) -> bool {
    let target = target.major_minor();
    versions
        .values()
        .all(|v| v.is_some_and(|v| v.major_minor() == target))
}

impl EtcdServer {
    /// One Downgrade request; the cluster version on success.
    pub(crate) async fn downgrade_action(
        &self,
        action: i32,
        version: &str,
    ) -> Result<String, ServerError> {
        match DowngradeAction::try_from(action) {
            Ok(DowngradeAction::Validate) => self
                .downgrade_validate(version)
                .await
                .map(|v| v.to_string()),
            Ok(DowngradeAction::Enable) => self.downgrade_enable(version).await,
            Ok(DowngradeAction::Cancel) => self.downgrade_cancel().await,
            Err(_) => Err(ServerError::UnknownMethod),
        }
    }

    /// The current cluster version when the cluster may be downgraded to `version`.
    async fn downgrade_validate(&self, version: &str) -> Result<Version, ServerError> {
        let target = target_version(version)?;
        // Not on stale state: everything committed before the request is applied first.
        self.read_barrier().await?;
        let cluster = self
            .cluster_version()
            .ok_or(ServerError::ClusterVersionUnavailable)?;
        if target != allowed_downgrade_version(cluster) {
            return Err(ServerError::InvalidDowngradeTargetVersion);
        }
        if self.downgrade_info().enabled {
            return Err(ServerError::DowngradeInProcess);
        }
        Ok(cluster)
    }

    async fn downgrade_enable(&self, version: &str) -> Result<String, ServerError> {
        self.downgrade_validate(version)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "reject downgrade request"))?;
        let target = target_version(version)?;
        self.propose_downgrade(true, target.to_string())
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "reject downgrade request"))?;
        Ok(self.cluster_version_text())
    }

    async fn downgrade_cancel(&self) -> Result<String, ServerError> {
        self.read_barrier().await?;
        if !self.downgrade_info().enabled {
            return Err(ServerError::NoInflightDowngrade);
        }
        self.propose_downgrade(false, String::new()).await?;
        Ok(self.cluster_version_text())
    }

    async fn propose_downgrade(&self, enabled: bool, ver: String) -> Result<(), ServerError> {
        self.propose(InternalRaftRequest {
            downgrade_info_set: Some(DowngradeInfoSetRequest { enabled, ver }),
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    /// etcd answers with `ClusterVersion().String()` once the change is applied.
    fn cluster_version_text(&self) -> String {
        self.cluster_version()
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// etcd's `monitorDowngrade`: every `every` the leader cancels an enabled downgrade once
    /// every member runs its target. `None` (a check time of 0) turns it off.
    pub(super) fn spawn_downgrade_monitor(&self, every: Option<Duration>) {
        let Some(every) = every else { return };
        self.spawn_leader_loop(every, |server| async move {
            let Some(target) = server.downgrade_info().target() else {
                return;
            };
            if is_matched_versions(target, &server.member_versions().await) {
                tracing::info!(cluster_version = %target, "the cluster has been downgraded");
                if let Err(e) = server.downgrade_cancel().await {
                    tracing::warn!(error = %e, "failed to cancel downgrade");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_major_minor() {
        assert_eq!(target_version("3.4.7"), Ok(Version::new(3, 4, 0)));
        assert_eq!(target_version("3.4"), Ok(Version::new(3, 4, 0)));
        for bad in ["3", "", "x.y", "3.4.5.6", "v3.4"] {
            assert_eq!(
                target_version(bad),
                Err(ServerError::WrongDowngradeVersionFormat),
                "{bad}"
            );
        }
        assert_eq!(
            allowed_downgrade_version(Version::new(3, 5, 0)),
            Version::new(3, 4, 0)
        );
    }

    #[test]
    fn the_downgrade_is_over_when_every_member_runs_the_target() {
        let v = |s| Version::parse(s);
        let target = Version::new(3, 4, 0);
        let done = BTreeMap::from([(1, v("3.4.23")), (2, v("3.4.0"))]);
        assert!(is_matched_versions(target, &done));
        let mixed = BTreeMap::from([(1, v("3.4.23")), (2, v("3.5.17"))]);
        assert!(!is_matched_versions(target, &mixed));
        let unknown = BTreeMap::from([(1, v("3.4.23")), (2, None)]);
        assert!(!is_matched_versions(target, &unknown));
    }
}
