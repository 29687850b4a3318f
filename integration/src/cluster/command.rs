//! The command line each member is started with: names, URLs (behind proxies or not), the initial
//! cluster, the token.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::member::{Member, MemberCommand};
use super::spec::ClusterSpec;
use crate::error::{io_err, Result};
use crate::ports::ReservedPort;
use crate::proxy::{Network, Side};

/// What every member's command line shares: the spec's binary, timing and extra flags, the token and
/// the directory that holds data dirs and logs.
pub(super) struct MemberTemplate<'a> {
    pub(super) spec: &'a ClusterSpec,
    pub(super) dir: &'a Path,
    pub(super) token: &'a str,
}

impl MemberTemplate<'_> {
    pub(super) fn member(
        &self,
        name: String,
        urls: MemberUrls,
        initial_cluster: &str,
        state: &str,
    ) -> Member {
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
        if let Some(tls) = &self.spec.client_tls {
            args.extend(tls.flags(""));
        }
        if let Some(tls) = &self.spec.peer_tls {
            args.extend(tls.flags("peer-"));
        }
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
pub(super) fn ports_per_member(spec: &ClusterSpec) -> usize {
    if spec.proxied {
        4
    } else {
        2
    }
}

/// A member's advertised URLs and the ones it listens on; they differ only in a proxied cluster.
pub(super) struct MemberUrls {
    pub(super) client: String,
    pub(super) peer: String,
    pub(super) listen_client: String,
    pub(super) listen_peer: String,
}

impl MemberUrls {
    /// URLs on `ports` (as many as [`ports_per_member`] says) for member `i`, whose proxies, when
    /// `network` is given, start listening here.
    pub(super) fn new(
        i: usize,
        ports: &[ReservedPort],
        network: Option<&Network>,
        spec: &ClusterSpec,
    ) -> Result<MemberUrls> {
        let scheme = |tls: bool| if tls { "https" } else { "http" };
        let client_scheme = scheme(spec.client_tls.is_some());
        let peer_scheme = scheme(spec.peer_tls.is_some());
        let client_url =
            |port: &ReservedPort| format!("{client_scheme}://127.0.0.1:{}", port.port());
        let peer_url = |port: &ReservedPort| format!("{peer_scheme}://127.0.0.1:{}", port.port());
        let Some(network) = network else {
            return Ok(MemberUrls {
                client: client_url(&ports[0]),
                peer: peer_url(&ports[1]),
                listen_client: client_url(&ports[0]),
                listen_peer: peer_url(&ports[1]),
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
            client: client_url(&ports[0]),
            peer: peer_url(&ports[1]),
            listen_client: client_url(&ports[2]),
            listen_peer: peer_url(&ports[3]),
        })
    }
}

/// `--initial-cluster`'s value: `name=peer-url` pairs joined by commas.
pub(super) fn initial_cluster<'a>(
    members: impl Iterator<Item = (&'a String, &'a String)>,
) -> String {
    members
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets `flag`'s value in `args`, which holds it as a separate word after the flag.
pub(super) fn set_flag(args: &mut [String], flag: &str, value: &str) {
    if let Some(pos) = args.iter().position(|a| a == flag) {
        if let Some(slot) = args.get_mut(pos + 1) {
            *slot = value.to_string();
        }
    }
}

pub(super) fn member_name(i: usize) -> String {
    format!("m{i}")
}

/// A cluster token no other cluster on this machine uses, so members of different tests can never join
/// each other even if a port were reused.
pub(super) fn unique_token() -> String {
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique() {
        assert_ne!(unique_token(), unique_token());
    }
}
