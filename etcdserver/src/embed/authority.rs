//! Accepting the `:authority` that Go's etcd clients send.
//!
//! etcd's clientv3 puts whatever names the endpoint into HTTP/2's `:authority`: clientv3 3.4
//! sends `http://127.0.0.1:2379` for `--endpoints=http://127.0.0.1:2379`, 3.5 sends
//! `#initially=[...]` (etcd-io/etcd#13192). grpc-go's server ignores it; the `h2` crate under
//! tonic refuses the stream with PROTOCOL_ERROR. So every client connection that speaks HTTP/2
//! goes through this filter, which decodes each header block (HPACK, keeping the client's
//! dynamic table), drops an `:authority` that is not a valid authority, and re-encodes the block
//! as literals that never touch the server's dynamic table. All other frames, and HTTP/1
//! connections, pass through byte for byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::{Accepted, ConnInfo, ServerStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest frame payload the server accepts unless it says otherwise (RFC 9113's minimum
/// SETTINGS_MAX_FRAME_SIZE): re-encoded blocks are split at it.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this is refused (h2's default max header list size is 16 MiB).
const MAX_HEADER_BLOCK: usize = 16 << 20;

enum Mode {
    /// Not yet known whether the client speaks HTTP/2.
    Sniffing,
    Passthrough,
    Http2 {
        decoder: Box<loona_hpack::Decoder<'static>>,
        /// A header block being collected across CONTINUATION frames.
        pending: Option<PendingBlock>,
    },
}

struct PendingBlock {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// A client connection with the `:authority` filter on its inbound side.
pub(crate) struct ClientConn {
    inner: ServerStream,
    info: ConnInfo,
    mode: Mode,
    /// Bytes read from the socket and not yet filtered.
    raw: Vec<u8>,
    /// Filtered bytes not yet handed to the server.
    ready: Vec<u8>,
    ready_pos: usize,
    eof: bool,
}

impl ClientConn {
    pub(crate) fn new(accepted: Accepted) -> ClientConn {
        ClientConn {
            inner: accepted.stream,
            info: accepted.info,
            mode: Mode::Sniffing,
            raw: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            eof: false,
        }
    }

    /// Moves what can be filtered from `raw` to `ready`.
    fn filter(&mut self) -> io::Result<()> {
        loop {
            match &mut self.mode {
                Mode::Sniffing => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n == PREFACE.len() {
                        self.ready.extend_from_slice(PREFACE);
                        self.raw.drain(..PREFACE.len());
                        self.mode = Mode::Http2 {
                            decoder: Box::new(loona_hpack::Decoder::new()),
                            pending: None,
                        };
                    } else {
                        return Ok(());
                    }
                }
                Mode::Passthrough => {
                    self.ready.append(&mut self.raw);
                    return Ok(());
                }
                Mode::Http2 { decoder, pending } => {
                    // Whole frames are consumed through a cursor and removed at once: no copy
                    // or shift per frame on the path of every request.
                    let consumed = filter_frames(&self.raw, &mut self.ready, decoder, pending)?;
                    self.raw.drain(..consumed);
                    return Ok(());
                }
            }
        }
    }
}

/// Moves every whole frame at the start of `raw` to `ready`, re-encoding header blocks; returns
/// how many bytes of `raw` it consumed (an incomplete frame stays for the next read).
fn filter_frames(
    raw: &[u8],
    ready: &mut Vec<u8>,
    decoder: &mut loona_hpack::Decoder<'static>,
    pending: &mut Option<PendingBlock>,
) -> io::Result<usize> {
    let mut pos = 0;
    loop {
        let rest = &raw[pos..];
        if rest.len() < FRAME_HEADER_LEN {
            return Ok(pos);
        }
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < FRAME_HEADER_LEN + len {
            return Ok(pos);
        }
        let kind = rest[3];
        let flags = rest[4];
        let stream_id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        let frame = &rest[..FRAME_HEADER_LEN + len];
        let payload = &frame[FRAME_HEADER_LEN..];
        pos += frame.len();
        match kind {
            FRAME_HEADERS => {
                let (priority, fragment) = split_headers_payload(flags, payload)?;
                *pending = Some(PendingBlock {
                    stream_id,
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                });
            }
            FRAME_CONTINUATION if pending.is_some() => {
                let block = pending.as_mut().expect("checked");
                block.fragment.extend_from_slice(payload);
                block.flags |= flags & FLAG_END_HEADERS;
                if block.fragment.len() > MAX_HEADER_BLOCK {
                    return Err(io::Error::other("header block too large"));
                }
            }
            _ => {
                // Anything else, or a CONTINUATION out of place (the server reports that
                // protocol error itself).
                ready.extend_from_slice(frame);
                continue;
            }
        }
        if pending
            .as_ref()
            .is_some_and(|b| b.flags & FLAG_END_HEADERS != 0)
        {
            let block = pending.take().expect("checked");
            let headers = decoder
                .decode(&block.fragment)
                .map_err(|e| io::Error::other(format!("undecodable header block: {e:?}")))?;
            write_headers(ready, &block, &headers);
        }
    }
}

/// The priority fields and the header block fragment of a HEADERS payload.
fn split_headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let malformed = || io::Error::other("malformed HEADERS frame");
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&p, rest) = body.split_first().ok_or_else(malformed)?;
        pad = p as usize;
        body = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        if body.len() < 5 {
            return Err(malformed());
        }
        let mut p = [0u8; 5];
        p.copy_from_slice(&body[..5]);
        priority = Some(p);
        body = &body[5..];
    }
    if pad > body.len() {
        return Err(malformed());
    }
    Ok((priority, &body[..body.len() - pad]))
}

/// Whether the server's HTTP stack accepts `value` as an `:authority`.
fn valid_authority(value: &[u8]) -> bool {
    axum::http::uri::Authority::try_from(value).is_ok()
}

/// Re-encodes a header block as HEADERS (+ CONTINUATION) frames, every field a literal without
/// indexing, leaving out an invalid `:authority`.
fn write_headers(out: &mut Vec<u8>, block: &PendingBlock, headers: &[(Vec<u8>, Vec<u8>)]) {
    let mut encoded = Vec::new();
    for (name, value) in headers {
        if name.as_slice() == b":authority" && !valid_authority(value) {
            continue;
        }
        encoded.push(0x00);
        encode_string(&mut encoded, name);
        encode_string(&mut encoded, value);
    }
    let mut first = Vec::with_capacity(encoded.len() + 5);
    let mut flags = block.flags & FLAG_END_STREAM;
    if let Some(p) = block.priority {
        flags |= FLAG_PRIORITY;
        first.extend_from_slice(&p);
    }
    let room = MAX_FRAME_PAYLOAD - first.len();
    let (head, mut rest) = encoded.split_at(encoded.len().min(room));
    first.extend_from_slice(head);
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame(out, FRAME_HEADERS, flags, block.stream_id, &first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame(out, FRAME_CONTINUATION, flags, block.stream_id, chunk);
    }
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 §5.1).
fn encode_integer(out: &mut Vec<u8>, mut value: usize, prefix_bits: u8, first_byte_flags: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first_byte_flags | value as u8);
        return;
    }
    out.push(first_byte_flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever is left is an incomplete frame: hand it over and let the server
                // see the truncation.
                if !this.raw.is_empty() {
                    this.ready.append(&mut this.raw);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(read.filled());
                        this.filter()?;
                    }
                }
            }
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for ClientConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, kind, flags, stream, payload);
        out
    }

    /// Runs `input` through the filter in pieces of `step` bytes.
    fn filtered(input: &[u8], step: usize) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let input = input.to_vec();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                for piece in input.chunks(step) {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            });
            let (sock, _) = listener.accept().await.unwrap();
            let mut conn = ClientConn::new(Accepted {
                stream: ServerStream::Plain(rafthttp::PlainStream::Tcp(sock)),
                info: ConnInfo::default(),
            });
            let mut out = Vec::new();
            use tokio::io::AsyncReadExt;
            conn.read_to_end(&mut out).await.unwrap();
            writer.await.unwrap();
            out
        })
    }

    fn decode_blocks(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &bytes[PREFACE.len()..];
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            if kind == FRAME_HEADERS || kind == FRAME_CONTINUATION {
                let (_, frag) = if kind == FRAME_HEADERS {
                    split_headers_payload(flags, payload).unwrap()
                } else {
                    (None, payload)
                };
                block.extend_from_slice(frag);
                if flags & FLAG_END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        blocks
    }

    #[test]
    fn invalid_authority_is_dropped_and_the_dynamic_table_kept() {
        let mut enc = loona_hpack::Encoder::new();
        let req = |authority: &'static [u8]| -> Vec<(&'static [u8], &'static [u8])> {
            vec![
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/etcdserverpb.KV/Range"),
                (b":authority", authority),
                (b"content-type", b"application/grpc"),
            ]
        };
        let first = enc.encode(req(b"http://127.0.0.1:2379"));
        // The second block refers to the first one's entries in the dynamic table.
        let second = enc.encode(req(b"http://127.0.0.1:2379"));
        let third = enc.encode(req(b"127.0.0.1:2379"));
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS passes through
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first));
        input.extend(frame(0x0, FLAG_END_STREAM, 1, b"data"));
        // A block split over a CONTINUATION frame, padded.
        let (a, b) = second.split_at(second.len() / 2);
        let mut padded = vec![3u8];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(FRAME_HEADERS, FLAG_PADDED, 3, &padded));
        input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, b));
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            5,
            &third,
        ));
        for step in [1, 7, 4096] {
            let out = filtered(&input, step);
            let blocks = decode_blocks(&out);
            assert_eq!(blocks.len(), 3, "step {step}");
            for b in &blocks[..2] {
                assert!(
                    b.iter().all(|(n, _)| n != b":authority"),
                    "step {step}: {b:?}"
                );
                assert!(b.contains(&(b":path".to_vec(), b"/etcdserverpb.KV/Range".to_vec())));
            }
            assert!(blocks[2].contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())));
            assert!(out.windows(4).any(|w| w == b"data"));
        }
    }

    #[test]
    fn http1_passes_through_untouched() {
        for req in [
            &b"GET /health HTTP/1.1\r\n\r\n"[..],
            b"PUT /x HTTP/1.1\r\n\r\n",
            b"P",
        ] {
            assert_eq!(filtered(req, 1), req);
        }
    }

    #[test]
    fn integers_encode_as_rfc7541_examples() {
        let mut out = Vec::new();
        encode_integer(&mut out, 10, 5, 0);
        assert_eq!(out, [10]);
        out.clear();
        encode_integer(&mut out, 1337, 5, 0);
        assert_eq!(out, [31, 154, 10]);
    }
}
