//! Joining a running cluster (`--initial-cluster-state existing` with an empty data dir): the
//! cluster id and this member's id come from the peers, as etcd's `GetClusterFromRemotePeers`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::server::membership::Member;

/// The header carrying the cluster id on the peer port's answers (etcd's `X-Etcd-Cluster-ID`).
pub(crate) const CLUSTER_ID_HEADER: &str = "x-etcd-cluster-id";
/// Per peer, for the whole exchange (etcd: 1 s dial plus the request timeout).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `/members` answer accepted.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// The running cluster as one of its members describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteCluster {
    pub cluster_id: u64,
    pub members: Vec<Member>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot fetch cluster info from peer urls: {0}")]
    Unreachable(String),
    #[error("couldn't find local member with peer URLs {0:?} in the existing cluster {1:x}; add it with `etcdctl member add` first")]
    NotAMember(Vec<String>, u64),
}

/// Why one peer could not tell the cluster's members.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("unsupported peer URL")]
    BadUrl,
    #[error("https peer URL but no peer TLS configured (--peer-cert-file or --peer-auto-tls)")]
    NoTls,
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("no address")]
    NoAddress,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("truncated HTTP answer")]
    Truncated,
    #[error("unexpected answer {0:?}")]
    Status(String),
    #[error("the answer carries no cluster id")]
    NoClusterId,
    #[error("bad chunk")]
    BadChunk,
    #[error("truncated chunk")]
    TruncatedChunk,
    #[error("{0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("{0}")]
    ChunkSize(#[from] std::num::ParseIntError),
    #[error("bad member list: {0}")]
    Members(#[from] serde_json::Error),
}

/// Asks each peer URL in turn for the cluster's members; the first answer wins.
pub(crate) fn cluster_from_peers(
    urls: &[String],
    dialer: &rafthttp::Dialer,
) -> Result<RemoteCluster, JoinError> {
    let mut errors = Vec::new();
    for url in urls {
        match fetch_members(url, dialer) {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(JoinError::Unreachable(errors.join("; ")))
}

/// This member's id in `cluster`, found by its peer URLs (etcd's `ValidateClusterAndAssignIDs`).
pub(crate) fn local_id(cluster: &RemoteCluster, peer_urls: &[String]) -> Result<u64, JoinError> {
    let mut mine = peer_urls.to_vec();
    mine.sort();
    let found = cluster.members.iter().find(|m| {
        let mut theirs = m.peer_urls.clone();
        theirs.sort();
        theirs == mine
    });
    match found {
        Some(m) => Ok(m.id),
        None => Err(JoinError::NotAMember(mine, cluster.cluster_id)),
    }
}

/// `GET <url>/members` over HTTP/1.1, over TLS for https peer URLs. Blocking: it runs while
/// the member starts, before anything is served.
fn fetch_members(url: &str, dialer: &rafthttp::Dialer) -> Result<RemoteCluster, FetchError> {
    let peer = rafthttp::PeerAddr::parse(url).ok_or(FetchError::BadUrl)?;
    let host_port = peer.authority.as_str();
    let mut conn: Box<dyn ReadWrite> = if peer.unix {
        let conn = UnixStream::connect(host_port)?;
        conn.set_read_timeout(Some(PEER_TIMEOUT))?;
        conn.set_write_timeout(Some(PEER_TIMEOUT))?;
        Box::new(conn)
    } else {
        let addr = host_port
            .to_socket_addrs()?
            .next()
            .ok_or(FetchError::NoAddress)?;
        let conn = TcpStream::connect_timeout(&addr, PEER_TIMEOUT)?;
        conn.set_read_timeout(Some(PEER_TIMEOUT))?;
        conn.set_write_timeout(Some(PEER_TIMEOUT))?;
        Box::new(conn)
    };
    if peer.tls {
        let config = dialer.tls_config().ok_or(FetchError::NoTls)?.clone();
        let name = peer.server_name().ok_or(FetchError::BadUrl)?;
        let tls = rustls::ClientConnection::new(config, name)?;
        conn = Box::new(rustls::StreamOwned::new(tls, conn));
    }
    write!(
        conn,
        "GET /members HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )?;
    conn.flush()?;
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify after its answer: keep what arrived.
    if let Err(e) = conn.take(MAX_ANSWER).read_to_end(&mut answer) {
        if answer.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(e.into());
        }
    }
    parse_members_answer(&answer)
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

fn parse_members_answer(answer: &[u8]) -> Result<RemoteCluster, FetchError> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FetchError::Truncated)?;
    let head = std::str::from_utf8(&answer[..split])?;
    let body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(FetchError::Status(status.to_owned()));
    }
    let mut cluster_id = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == CLUSTER_ID_HEADER {
            cluster_id = u64::from_str_radix(value, 16).ok();
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let cluster_id = cluster_id.ok_or(FetchError::NoClusterId)?;
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let members: Vec<Member> = serde_json::from_slice(&body)?;
    Ok(RemoteCluster {
        cluster_id,
        members,
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(FetchError::BadChunk)?;
        let size = std::str::from_utf8(&body[..end])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        body = &body[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or(FetchError::TruncatedChunk)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or(FetchError::TruncatedChunk)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_etcds_members_answer() {
        let body = r#"[{"id":1,"peerURLs":["http://127.0.0.1:1"],"name":"a","clientURLs":["http://127.0.0.1:2"]},{"id":2,"peerURLs":["http://127.0.0.1:3"]}]"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Etcd-Cluster-Id: cdf818194e3a8c32\r\n\r\n{body}"
        );
        let c = parse_members_answer(answer.as_bytes()).unwrap();
        assert_eq!(c.cluster_id, 0xcdf818194e3a8c32);
        assert_eq!(c.members.len(), 2);
        assert_eq!(local_id(&c, &["http://127.0.0.1:3".into()]).unwrap(), 2);
        assert!(local_id(&c, &["http://127.0.0.1:9".into()]).is_err());
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nx-etcd-cluster-id: 1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        assert_eq!(
            parse_members_answer(chunked.as_bytes()).unwrap().members,
            c.members
        );
        let missing = "HTTP/1.1 200 OK\r\n\r\n[]";
        assert!(parse_members_answer(missing.as_bytes()).is_err());
    }
}
