//! The on-disk frame of one record, byte-compatible with etcd's `encoder.go` / `decoder.go`:
//!
//! ```text
//! | length word: u64 little-endian | walpb.Record protobuf | zero padding to 8 bytes |
//! ```
//!
//! The low 56 bits of the length word hold the protobuf's length; when there is padding, the top byte is
//! `0x80 | pad`. The record's `crc` is CRC32C over its data, continued from the previous record's crc, so the
//! chain runs across the whole log; a crc record at the start of each segment carries the running crc over.
//!
//! One extension, invisible to etcd (its decoder masks the whole top byte off the length): bits 3..=6 of the
//! top byte repeat the record type. etcd's CRC covers only the data, so a corrupted type byte would otherwise
//! turn an entry into a HardState (or back) and be read as valid. A zero there (etcd's own files) skips the check.

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use crate::record::{Record, RecordType};

pub(crate) const LENGTH_WORD_BYTES: usize = 8;
/// etcd's `maxWALEntrySizeLimit`: a longer record can only be a damaged length word, never a tear.
pub(crate) const MAX_RECORD_BYTES: u64 = 10 * 1024 * 1024;
const LENGTH_MASK: u64 = (1 << 56) - 1;
const SECTOR_BYTES: usize = 512;

/// Appends one framed record to `out`, advancing the running `crc` (unchanged by a crc record, which carries it).
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    kind: RecordType,
    data: Option<&[u8]>,
    crc: &mut u32,
) {
    if kind != RecordType::Crc {
        *crc = crc32c::crc32c_append(*crc, data.unwrap_or_default());
    }
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_WORD_BYTES]);
    encode_key(1, WireType::Varint, out);
    encode_varint(kind as u64, out);
    encode_key(2, WireType::Varint, out);
    encode_varint(u64::from(*crc), out);
    if let Some(data) = data {
        encode_key(3, WireType::LengthDelimited, out);
        encode_varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    let record_bytes = out.len() - start - LENGTH_WORD_BYTES;
    let pad = (8 - record_bytes % 8) % 8;
    out.resize(out.len() + pad, 0);
    let mut top = (kind as u8) << 3;
    if pad != 0 {
        top |= 0x80 | pad as u8;
    }
    let word = record_bytes as u64 | u64::from(top) << 56;
    out[start..start + LENGTH_WORD_BYTES].copy_from_slice(&word.to_le_bytes());
}

/// Why a record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The segment ends inside the length word.
    PartialLengthWord,
    /// The length word points past the end of the segment.
    FrameBeyondEnd,
    /// The length word claims more than the largest record the WAL writes.
    OversizedRecord,
    /// The padding after the record is not zero.
    NonZeroPadding,
    /// The record is not a valid `walpb.Record`.
    Malformed,
    /// The record's type is not one the WAL writes.
    UnknownType,
    /// The type in the length word disagrees with the record's type.
    TypeMismatch,
    /// The CRC chain is broken.
    CrcMismatch,
    /// A record that passed its CRC does not decode as the message its type promises.
    BadPayload,
    /// Non-zero bytes follow the end of the records in a segment that is not the last one.
    DataAfterEnd,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Corruption::PartialLengthWord => "segment ends inside a length word",
            Corruption::FrameBeyondEnd => "record extends past the end of the segment",
            Corruption::OversizedRecord => "record length exceeds the 10 MiB limit",
            Corruption::NonZeroPadding => "non-zero padding after a record",
            Corruption::Malformed => "record is not a valid protobuf",
            Corruption::UnknownType => "unknown record type",
            Corruption::TypeMismatch => "record type disagrees with its frame",
            Corruption::CrcMismatch => "crc mismatch",
            Corruption::BadPayload => "record payload does not decode",
            Corruption::DataAfterEnd => "non-zero bytes after the last record of a closed segment",
        })
    }
}

/// One step of reading a segment.
pub(crate) enum Decoded {
    Record {
        kind: RecordType,
        data: Vec<u8>,
        offset: u64,
    },
    /// A zero length word (preallocated space) or the end of the file.
    End { offset: u64 },
    /// The record at `offset` is unreadable. `torn` says it looks like an interrupted write rather than damage:
    /// it runs past the end of the file, or only zeros follow it (it is the last record and its end was never
    /// written), or it contains a whole 512-byte sector of zeros (a sector lost on power failure, etcd's
    /// `isTornEntry`; unlike etcd, a partial chunk at a sector edge does not count, since a few zero bytes
    /// are common in valid data and would let damage in the middle of the log pass for a tear).
    Bad {
        offset: u64,
        reason: Corruption,
        torn: bool,
    },
}

/// Reads the records of one segment held in memory.
pub(crate) struct SegmentDecoder<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> SegmentDecoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        SegmentDecoder { buf, offset: 0 }
    }

    /// Decodes the next record, checking it against and then advancing the running `crc`.
    pub(crate) fn next(&mut self, crc: &mut u32) -> Decoded {
        let offset = self.offset;
        let rest = &self.buf[offset..];
        let at = offset as u64;
        if rest.len() < LENGTH_WORD_BYTES {
            return if rest.iter().all(|&b| b == 0) {
                Decoded::End { offset: at }
            } else {
                Decoded::Bad {
                    offset: at,
                    reason: Corruption::PartialLengthWord,
                    torn: true,
                }
            };
        }
        let mut word_bytes = [0; LENGTH_WORD_BYTES];
        word_bytes.copy_from_slice(&rest[..LENGTH_WORD_BYTES]);
        let word = u64::from_le_bytes(word_bytes);
        if word == 0 {
            return Decoded::End { offset: at };
        }
        let top = (word >> 56) as u8;
        let record_bytes = word & LENGTH_MASK;
        let pad = if top & 0x80 != 0 {
            u64::from(top & 0x7)
        } else {
            0
        };
        let framed_type = (top >> 3) & 0xf;
        if record_bytes >= MAX_RECORD_BYTES {
            return Decoded::Bad {
                offset: at,
                reason: Corruption::OversizedRecord,
                torn: false,
            };
        }
        let available = (rest.len() - LENGTH_WORD_BYTES) as u64;
        if record_bytes > available || pad > available - record_bytes {
            return Decoded::Bad {
                offset: at,
                reason: Corruption::FrameBeyondEnd,
                torn: true,
            };
        }
        let data_start = offset + LENGTH_WORD_BYTES;
        let data_end = data_start + record_bytes as usize;
        let frame_end = data_end + pad as usize;
        let data = &self.buf[data_start..data_end];
        let buf = self.buf;
        let bad = |reason| Decoded::Bad {
            offset: at,
            reason,
            torn: buf[frame_end..].iter().all(|&b| b == 0) || has_zero_sector(data, data_start),
        };
        if self.buf[data_end..frame_end].iter().any(|&b| b != 0) {
            return bad(Corruption::NonZeroPadding);
        }
        let record = match Record::decode(data) {
            Ok(record) => record,
            Err(_) => return bad(Corruption::Malformed),
        };
        let Some(kind) = RecordType::from_wire(record.kind) else {
            return bad(Corruption::UnknownType);
        };
        if framed_type != 0 && framed_type != kind as u8 {
            return bad(Corruption::TypeMismatch);
        }
        let Ok(record_crc) = u32::try_from(record.crc) else {
            return bad(Corruption::Malformed);
        };
        let payload = record.data.unwrap_or_default();
        if kind == RecordType::Crc {
            // A reader that starts mid-log has no running crc yet (zero) and adopts the segment's.
            if *crc != 0 && record_crc != *crc {
                return Decoded::Bad {
                    offset: at,
                    reason: Corruption::CrcMismatch,
                    torn: false,
                };
            }
            *crc = record_crc;
        } else {
            let expected = crc32c::crc32c_append(*crc, &payload);
            if expected != record_crc {
                return bad(Corruption::CrcMismatch);
            }
            *crc = expected;
        }
        self.offset = frame_end;
        Decoded::Record {
            kind,
            data: payload,
            offset: at,
        }
    }
}

/// Whether `data`, which starts at `file_offset`, covers a whole aligned sector of zeros.
fn has_zero_sector(data: &[u8], file_offset: usize) -> bool {
    let first_boundary = file_offset.next_multiple_of(SECTOR_BYTES) - file_offset;
    data.get(first_boundary..).is_some_and(|aligned| {
        aligned
            .chunks_exact(SECTOR_BYTES)
            .any(|sector| sector.iter().all(|&b| b == 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(buf: &[u8]) -> (Vec<(RecordType, Vec<u8>)>, Decoded) {
        let mut decoder = SegmentDecoder::new(buf);
        let mut crc = 0;
        let mut records = Vec::new();
        loop {
            match decoder.next(&mut crc) {
                Decoded::Record { kind, data, .. } => records.push((kind, data)),
                end => return (records, end),
            }
        }
    }

    #[test]
    fn frame_layout_matches_etcd() {
        let mut out = Vec::new();
        let mut crc = 0;
        encode_record(&mut out, RecordType::Entry, Some(b"abc"), &mut crc);
        // Record = 08 02 10 <crc varint> 1a 03 'a' 'b' 'c'; crc32c("abc") = 0x364b3fb7 (5 varint bytes).
        assert_eq!(crc, 0x364b_3fb7);
        let record_bytes = 2 + 1 + 5 + 2 + 3;
        assert_eq!(out.len(), 8 + 16);
        let word = u64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(word & LENGTH_MASK, record_bytes);
        let top = (word >> 56) as u8;
        assert_eq!(
            top & 0x87,
            0x80 | 3,
            "padding flag and count as etcd writes them"
        );
        assert_eq!((top >> 3) & 0xf, RecordType::Entry as u8);
        assert_eq!(&out[8..10], &[0x08, 0x02]);
        assert_eq!(&out[out.len() - 3..], &[0, 0, 0]);
    }

    #[test]
    fn records_round_trip_with_chained_crc() {
        let mut out = Vec::new();
        let mut crc = 0;
        encode_record(&mut out, RecordType::Crc, None, &mut crc);
        encode_record(&mut out, RecordType::Metadata, Some(b"meta"), &mut crc);
        encode_record(&mut out, RecordType::Entry, Some(&[7; 100]), &mut crc);
        out.extend_from_slice(&[0; 64]);
        let (records, end) = decode_all(&out);
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], (RecordType::Entry, vec![7; 100]));
        assert!(matches!(end, Decoded::End { .. }));
    }

    #[test]
    fn a_reordered_record_breaks_the_chain() {
        let mut first = Vec::new();
        let mut second = Vec::new();
        let mut crc = 0;
        encode_record(&mut first, RecordType::Entry, Some(b"one"), &mut crc);
        encode_record(&mut second, RecordType::Entry, Some(b"two"), &mut crc);
        let swapped = [second, first].concat();
        let (records, end) = decode_all(&swapped);
        assert!(records.is_empty());
        assert!(matches!(
            end,
            Decoded::Bad {
                reason: Corruption::CrcMismatch,
                torn: false,
                ..
            }
        ));
    }

    #[test]
    fn a_flipped_type_is_caught_by_the_frame() {
        let mut out = Vec::new();
        let mut crc = 0;
        encode_record(&mut out, RecordType::Entry, Some(b"x"), &mut crc);
        out[9] = RecordType::State as u8;
        let (records, end) = decode_all(&out);
        assert!(records.is_empty());
        assert!(matches!(
            end,
            Decoded::Bad {
                reason: Corruption::TypeMismatch,
                ..
            }
        ));
    }

    #[test]
    fn a_record_cut_short_is_torn() {
        let mut out = Vec::new();
        let mut crc = 0;
        encode_record(&mut out, RecordType::Entry, Some(&[1; 40]), &mut crc);
        for cut in 1..out.len() {
            let (records, end) = decode_all(&out[..cut]);
            assert!(records.is_empty());
            assert!(
                matches!(end, Decoded::Bad { torn: true, .. }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zero_sector_detection_needs_a_whole_aligned_sector() {
        let mut data = vec![1u8; 2048];
        data[100..612].fill(0);
        assert!(!has_zero_sector(&data, 0), "zeros straddle two sectors");
        assert!(
            has_zero_sector(&data, 412),
            "zeros fill the sector at file offset 512"
        );
        assert!(!has_zero_sector(&[0; 100], 0));
        assert!(!has_zero_sector(&[], 0));
    }

    #[test]
    fn a_bad_record_followed_by_data_is_not_torn() {
        let mut out = Vec::new();
        let mut crc = 0;
        encode_record(&mut out, RecordType::Entry, Some(&[1; 40]), &mut crc);
        encode_record(&mut out, RecordType::Entry, Some(&[2; 40]), &mut crc);
        let mut damaged = out.clone();
        damaged[20] ^= 0x10;
        assert!(matches!(
            decode_all(&damaged).1,
            Decoded::Bad {
                torn: false,
                reason: Corruption::CrcMismatch,
                ..
            }
        ));
        // The same damage in the last record, followed only by zeros, reads as a tear.
        let mut damaged = out.clone();
        damaged[out.len() - 20] ^= 0x10;
        damaged.extend_from_slice(&[0; 32]);
        let (records, end) = decode_all(&damaged);
        assert_eq!(records.len(), 1);
        assert!(matches!(end, Decoded::Bad { torn: true, .. }));
    }
}
