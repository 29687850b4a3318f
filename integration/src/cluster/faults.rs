//! Network faults on a proxied cluster: partitions, blackholes, delays and connection resets, set on the
//! proxies and lifted by a heal.

use super::Cluster;
use crate::error::{Error, Result};
use crate::proxy::{Delay, Faults, Link, Network};

impl Cluster {
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

    /// Tells the proxies member `i` has no process any more, so its pid is never taken for it.
    pub(super) fn forget_pid(&self, i: usize) {
        if let Some(network) = &self.network {
            network.set_pid(i, None);
        }
    }
}
