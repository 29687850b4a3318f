//! Framing of raft messages on a stream: `[u64 big-endian length][protobuf raftpb.Message]`, as etcd's
//! messageEncoder writes them. A frame of length 0 carries nothing: it is the link heartbeat that keeps an idle
//! stream provably alive.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use raftpb::Message;

use crate::error::FrameError;

/// The length prefix of every frame.
pub(crate) const HEADER_LEN: usize = 8;

/// Largest message accepted on a stream. Entries may be ~2 MiB each (etcd's max request bytes plus overhead) and a
/// MsgApp carries several, so leave ample room while still refusing absurd lengths from garbage.
pub(crate) const MAX_STREAM_FRAME: u64 = 64 << 20;

/// Largest snapshot message (the raft snapshot carries the membership and, in etcd v3, a small store dump).
pub(crate) const MAX_SNAPSHOT_FRAME: u64 = 512 << 20;

/// Appends `msg` as one frame.
pub(crate) fn encode_into(msg: &Message, buf: &mut BytesMut) {
    let len = msg.encoded_len();
    buf.reserve(HEADER_LEN + len);
    buf.put_u64(len as u64);
    // Cannot fail: the buffer has been reserved to the encoded length.
    let _ = msg.encode(buf);
}

/// Encodes one message as a standalone frame.
pub(crate) fn encode(msg: &Message) -> Bytes {
    let mut buf = BytesMut::new();
    encode_into(msg, &mut buf);
    buf.freeze()
}

/// The link heartbeat frame.
pub(crate) fn keepalive() -> Bytes {
    Bytes::from_static(&[0u8; HEADER_LEN])
}

/// What the decoder found at the front of its buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Message(Box<Message>),
    Keepalive,
}

/// Incremental decoder: feed body chunks as they arrive, take out whole frames.
pub(crate) struct FrameDecoder {
    buf: BytesMut,
    limit: u64,
}

impl FrameDecoder {
    pub(crate) fn new(limit: u64) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            limit,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Decoded>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.buf[..HEADER_LEN]);
        let len = u64::from_be_bytes(header);
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        let len = len as usize;
        if self.buf.len() < HEADER_LEN + len {
            // No reservation for the announced length: a peer could announce 64 MiB and send 8 bytes. The buffer
            // grows geometrically as the bytes really arrive.
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(len).freeze();
        if len == 0 {
            return Ok(Some(Decoded::Keepalive));
        }
        let msg = Message::decode(body)?;
        Ok(Some(Decoded::Message(Box::new(msg))))
    }

    /// Whatever follows the frames taken so far (for the snapshot body, the database bytes).
    pub(crate) fn into_remainder(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftpb::{Entry, MessageType};

    fn app(index: u64, payload: usize) -> Message {
        Message {
            index,
            entries: vec![Entry::normal(1, index + 1, vec![7u8; payload])],
            ..Message::new(MessageType::MsgApp)
        }
    }

    #[test]
    fn frames_round_trip_when_split_at_every_byte() {
        let mut wire = BytesMut::new();
        encode_into(&app(1, 10), &mut wire);
        wire.extend_from_slice(&keepalive());
        encode_into(&app(2, 3000), &mut wire);
        let mut dec = FrameDecoder::new(MAX_STREAM_FRAME);
        let mut got = Vec::new();
        for b in wire.iter() {
            dec.push(&[*b]);
            while let Some(frame) = dec.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(
            got,
            vec![
                Decoded::Message(Box::new(app(1, 10))),
                Decoded::Keepalive,
                Decoded::Message(Box::new(app(2, 3000)))
            ]
        );
        assert!(dec.into_remainder().is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut dec = FrameDecoder::new(MAX_STREAM_FRAME);
        dec.push(&u64::MAX.to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let mut dec = FrameDecoder::new(MAX_STREAM_FRAME);
        dec.push(&4u64.to_be_bytes());
        dec.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(dec.next_frame(), Err(FrameError::Decode(_))));
    }

    #[test]
    fn a_three_mib_entry_fits_in_a_frame() {
        let msg = app(9, 3 << 20);
        let mut dec = FrameDecoder::new(MAX_STREAM_FRAME);
        dec.push(&encode(&msg));
        assert_eq!(
            dec.next_frame().unwrap(),
            Some(Decoded::Message(Box::new(msg)))
        );
    }
}
