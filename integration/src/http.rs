//! A minimal HTTP/1.1 GET over `std::net::TcpStream` (and rustls for https), enough for `/health`,
//! `/metrics` and `/version` on a member's client URL. Keeping it hand-written avoids pulling an async
//! stack into tests that only need a status code and a small body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// A response: status code and body (chunked transfer encoding already decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// GETs `path` from `base_url` (`http://host:port`, or `https://host:port` with `tls`), with `timeout` on
/// connect, each read and each write.
pub(crate) fn get(
    base_url: &str,
    path: &str,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Response> {
    let url = format!("{base_url}{path}");
    let http_err = |reason: String| Error::Http {
        url: url.clone(),
        reason,
    };
    let (host, tls) = match (base_url.split_once("://"), tls) {
        (Some(("http", host)), _) => (host, None),
        (Some(("https", host)), Some(tls)) => (host, Some(tls)),
        (Some(("https", _)), None) => {
            return Err(http_err(
                "an https URL needs the cluster's harness_tls".into(),
            ))
        }
        _ => {
            return Err(http_err(
                "only http:// and https:// URLs are supported".into(),
            ))
        }
    };
    let host = host.trim_end_matches('/');
    let addr: SocketAddr = host
        .to_socket_addrs()
        .map_err(|e| http_err(format!("resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| http_err(format!("{host} resolves to nothing")))?;

    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| http_err(format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| http_err(format!("set timeout: {e}")))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let raw = match tls {
        None => exchange(&mut stream, &request),
        Some(config) => {
            let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
            let name = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|e| http_err(format!("server name {name:?}: {e}")))?;
            let connection = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| http_err(format!("tls: {e}")))?;
            exchange(&mut rustls::StreamOwned::new(connection, stream), &request)
        }
    }
    .map_err(http_err)?;
    parse_response(&raw).map_err(http_err)
}

/// Sends `request` and reads the response until the server closes the connection.
fn exchange(stream: &mut impl ReadWrite, request: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify has still sent the whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(format!("read: {e}")),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("response has no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad content-length {value:?}"))?,
            );
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = content_length {
        rest.get(..len)
            .ok_or_else(|| format!("body is {} bytes, content-length {len}", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("truncated chunk size line")?;
        let size_line =
            std::str::from_utf8(&rest[..line_end]).map_err(|_| "chunk size not UTF-8")?;
        // Chunk extensions (";name=value") are allowed after the size.
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("chunk not followed by CRLF")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn parses_content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"health\":\"true\"}";
        let resp = parse_response(raw).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, r#"{"health":"true"}"#);
    }

    #[test]
    fn decodes_chunked_body_with_extensions() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let resp = parse_response(raw).unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(resp.body, "hello, world");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"not http at all").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }

    #[test]
    fn get_talks_to_a_real_socket() {
        let reserved = ports::reserve(1).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, reserved[0].port())).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let mut request = Vec::new();
            while find(&request, b"\r\n\r\n").is_none() {
                let n = conn.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let resp = get(&url, "/health", Duration::from_secs(5), None).unwrap();
        assert_eq!(
            resp,
            Response {
                status: 200,
                body: "ok".into()
            }
        );
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn refused_connection_is_an_error() {
        // A reserved port was free when reserved, and the reservation keeps other tests off it.
        let reserved = ports::reserve(1).unwrap();
        let err = get(
            &format!("http://127.0.0.1:{}", reserved[0].port()),
            "/health",
            Duration::from_secs(1),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Http { .. }), "{err}");
    }
}
