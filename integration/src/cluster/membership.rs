//! Growing the cluster: a slot for a newcomer, and starting it as a member of an existing cluster.

use super::command::{
    initial_cluster, member_name, ports_per_member, set_flag, MemberTemplate, MemberUrls,
};
use super::Cluster;
use crate::error::{Error, Result};
use crate::ports;

impl Cluster {
    /// Reserves ports and a data dir for one more member, `m<size()>`, and returns its index. Nothing is
    /// started: announce it with MemberAdd (its [`Cluster::peer_url`]), then [`Cluster::join`] it.
    pub fn add_member_slot(&mut self) -> Result<usize> {
        let ports = ports::reserve(ports_per_member(&self.spec))?;
        let i = self.members.len();
        let urls = MemberUrls::new(i, &ports, self.network.as_ref(), &self.spec)?;
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
}
