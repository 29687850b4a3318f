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
//!
//! The parts: `rules` (links, delays and how faults combine into a rule per direction), `network` (the
//! proxy thread and its listeners), `shared` (what the proxy's tasks share), `forward` (moving a
//! connection's bytes under the rules), `sniff` (reading who dials from the first request head) and
//! `owner` (finding a socket's process in `/proc`).

mod forward;
mod network;
mod owner;
mod rules;
mod shared;
mod sniff;

pub(crate) use network::Network;
pub(crate) use rules::Faults;
pub use rules::{Delay, Link};
pub(crate) use shared::Side;

#[cfg(test)]
mod tests;
