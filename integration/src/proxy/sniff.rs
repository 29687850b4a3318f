//! Who dials a peer port: the rafthttp headers of the connection's first request head, else the process
//! that owns the dialing socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::owner::owner_of;
use super::rules::Party;
use super::shared::{Proxy, Shared};

/// Longest request head the proxy reads to find the rafthttp headers.
const MAX_HEAD: usize = 16 * 1024;
/// Bound on waiting for a peer connection's first request head; past it, the proxy classifies on what
/// it has.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads a peer connection's first request head and says who sent it; returns the bytes read, which
/// belong to the inbound direction.
pub(super) async fn identify(
    stream: &mut TcpStream,
    dialer: SocketAddr,
    proxy: &Proxy,
    shared: &Arc<Shared>,
) -> (Vec<u8>, Party) {
    let mut head = Vec::new();
    // A dialer that errs or says nothing in time is classified on what it sent; the forwarding that
    // follows meets the same error or waits for the rest.
    let _ = tokio::time::timeout(SNIFF_TIMEOUT, read_head(stream, &mut head)).await;
    let headers = RaftHeaders::parse(&head);
    if let Some(to) = headers.to {
        shared.learn(to, proxy.member);
    }
    if let Some(from) = headers.from {
        if let Some(&member) = shared.state().ids.get(&from) {
            return (head, Party::Member(member));
        }
    }
    let pids: Vec<(u32, usize)> = shared
        .state()
        .pids
        .iter()
        .map(|(&member, &pid)| (pid, member))
        .collect();
    let listen = proxy.listen;
    let owner = tokio::task::spawn_blocking(move || owner_of(dialer, listen, &pids))
        .await
        .ok()
        .flatten();
    match owner {
        Some(member) => {
            if let Some(from) = headers.from {
                shared.learn(from, member);
            }
            (head, Party::Member(member))
        }
        None => (head, Party::Outsider),
    }
}

/// Reads until the end of the first request head, the end of the stream or [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 2048];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// The member ids a rafthttp request head names.
#[derive(Debug, Default, PartialEq, Eq)]
struct RaftHeaders {
    from: Option<u64>,
    to: Option<u64>,
}

impl RaftHeaders {
    fn parse(head: &[u8]) -> RaftHeaders {
        let text = String::from_utf8_lossy(head);
        let mut headers = RaftHeaders::default();
        // The request line first, then header lines up to the blank line.
        for line in text.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let id = u64::from_str_radix(value.trim(), 16).ok();
            if name.trim().eq_ignore_ascii_case("X-Server-From") {
                headers.from = id;
            } else if name.trim().eq_ignore_ascii_case("X-Raft-To") {
                headers.to = id;
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_headers_are_found_in_any_case() {
        let head = b"GET /raft/stream/message/8e9e05c52164694d HTTP/1.1\r\nHost: h\r\n\
                     x-server-from: 8e9e05c52164694d\r\nX-Raft-To:  91bc3c398fb3c146 \r\n\r\nbody";
        assert_eq!(
            RaftHeaders::parse(head),
            RaftHeaders {
                from: Some(0x8e9e05c52164694d),
                to: Some(0x91bc3c398fb3c146)
            }
        );
        assert_eq!(
            RaftHeaders::parse(b"GET /version HTTP/1.1\r\nX-Server-From: zz\r\n\r\n"),
            RaftHeaders::default()
        );
        // Headers after the blank line are body, not headers.
        assert_eq!(
            RaftHeaders::parse(b"GET / HTTP/1.1\r\n\r\nX-Server-From: 1\r\n"),
            RaftHeaders::default()
        );
    }
}
