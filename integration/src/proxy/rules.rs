//! Network links, the faults set on them, and the rule each direction of a connection obeys.

use std::collections::HashMap;
use std::time::Duration;

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

/// One end of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Party {
    Member(usize),
    /// A process connected to a peer port that is no known member.
    Outsider,
    Client,
}

/// Bytes flowing from one party to another on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Direction {
    pub(super) from: Party,
    pub(super) to: Party,
}

/// What happens to one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Rule {
    pub(super) blocked: bool,
    pub(super) delay: Delay,
    pub(super) drop_share: f64,
    /// Which `drop_connections` call set `drop_share`: a connection rolls once for each new one.
    pub(super) drop_call: u64,
}

impl Rule {
    pub(super) fn merge(self, other: Rule) -> Rule {
        Rule {
            blocked: self.blocked || other.blocked,
            delay: self.delay.longest(other.delay),
            drop_share: self.drop_share.max(other.drop_share),
            drop_call: self.drop_call.max(other.drop_call),
        }
    }
}

/// The faults in force. Every setter adds to what is there; [`Faults::heal`] clears everything.
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

    /// Clears every fault. The count of `drop_connections` calls goes on, so a later call is new to
    /// every connection.
    pub(super) fn heal(&mut self) {
        *self = Faults {
            drop_calls: self.drop_calls,
            ..Faults::default()
        };
    }

    fn rule_mut(&mut self, link: Link) -> &mut Rule {
        match link {
            Link::Peer { from, to } => self.pairs.entry((from, to)).or_default(),
            Link::Peers(member) => self.members.entry(member).or_default(),
            Link::Client(member) => self.clients.entry(member).or_default(),
        }
    }

    pub(super) fn rule(&self, dir: Direction) -> Rule {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
