//! Replaying segments into [`WalContents`], with etcd's `ReadAll` rules. Pure: works on bytes in memory, so the
//! fuzz target and property tests drive exactly what `Wal::open` runs.

use std::path::PathBuf;

use bytes::Bytes;
use prost::Message;

use crate::frame::{Corruption, Decoded, SegmentDecoder};
use crate::record::{HardState, RecordType, SnapshotMarker, WalEntry};
use crate::{Error, WalContents};

pub(crate) struct LoadedSegment {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

pub(crate) struct Replayed {
    pub contents: WalContents,
    /// Running crc after the last valid record.
    pub crc: u32,
    /// Index of the last entry or snapshot marker written (the next entry is at most one past it).
    pub last_index: u64,
    /// Offset just past the last valid record of the last segment.
    pub tail_end: u64,
    /// The last segment holds a torn record or stray bytes after `tail_end` that must be cleared before writing.
    pub tail_needs_repair: bool,
}

/// Replays `segments` (consecutive, the first one covering `start`), keeping the entries after `start`. They
/// are loaded one at a time, so only one segment is in memory at once.
///
/// A record that cannot be read is a torn write, and ends the log, only in the last segment and only when it
/// looks torn (see [`Decoded::Bad`]); anywhere else it is an error naming the file and offset.
pub(crate) fn replay(
    segments: impl ExactSizeIterator<Item = Result<LoadedSegment, Error>>,
    start: SnapshotMarker,
) -> Result<Replayed, Error> {
    let mut crc = 0;
    let mut metadata: Option<Vec<u8>> = None;
    let mut hard_state = HardState::default();
    let mut entries: Vec<WalEntry> = Vec::new();
    let mut matched = false;
    let mut last_index = 0;
    let mut tail_end = 0;
    let mut tail_needs_repair = false;

    let count = segments.len();
    for (position, segment) in segments.enumerate() {
        let segment = segment?;
        let is_last = position + 1 == count;
        let corrupt = |offset, reason| Error::Corrupt {
            file: segment.path.clone(),
            offset,
            reason,
        };
        let mut decoder = SegmentDecoder::new(&segment.bytes);
        loop {
            match decoder.next(&mut crc) {
                Decoded::Record { kind, data, offset } => match kind {
                    RecordType::Entry => {
                        let entry = WalEntry::from_encoded(Bytes::from(data))
                            .map_err(|_| corrupt(offset, Corruption::BadPayload))?;
                        if entry.index() > start.index {
                            let position = entry.index() - start.index - 1;
                            if position > entries.len() as u64 {
                                return Err(Error::EntryGap {
                                    file: segment.path.clone(),
                                    offset,
                                    index: entry.index(),
                                });
                            }
                            // A later entry at the same index replaces the earlier one and everything after it:
                            // a new leader overwrote an uncommitted suffix.
                            entries.truncate(position as usize);
                            last_index = entry.index();
                            entries.push(entry);
                        } else {
                            last_index = entry.index();
                        }
                    }
                    RecordType::State => {
                        hard_state = HardState::decode(data.as_slice())
                            .map_err(|_| corrupt(offset, Corruption::BadPayload))?;
                    }
                    RecordType::Metadata => {
                        if metadata.as_ref().is_some_and(|known| *known != data) {
                            return Err(Error::MetadataConflict {
                                file: segment.path.clone(),
                                offset,
                            });
                        }
                        metadata = Some(data);
                    }
                    RecordType::Snapshot => {
                        let marker = SnapshotMarker::decode(data.as_slice())
                            .map_err(|_| corrupt(offset, Corruption::BadPayload))?;
                        if marker.index == start.index {
                            if marker.term != start.term {
                                return Err(Error::SnapshotMismatch {
                                    index: start.index,
                                    expected: start.term,
                                    found: marker.term,
                                });
                            }
                            matched = true;
                        }
                        last_index = last_index.max(marker.index);
                    }
                    // The decoder checked it against the running crc already.
                    RecordType::Crc => {}
                },
                Decoded::End { offset } => {
                    let stray = segment.bytes[offset as usize..].iter().any(|&b| b != 0);
                    if is_last {
                        tail_end = offset;
                        tail_needs_repair = stray;
                    } else if stray {
                        return Err(corrupt(offset, Corruption::DataAfterEnd));
                    }
                    break;
                }
                Decoded::Bad {
                    offset,
                    reason,
                    torn,
                } => {
                    // Offset 0 is never torn: segments appear only after their header records are synced.
                    if is_last && torn && offset > 0 {
                        tracing::warn!(
                            file = %segment.path.display(),
                            offset,
                            %reason,
                            "torn record at the end of the WAL; truncating it"
                        );
                        tail_end = offset;
                        tail_needs_repair = true;
                        break;
                    }
                    return Err(corrupt(offset, reason));
                }
            }
        }
    }
    if !matched {
        return Err(Error::SnapshotNotFound {
            index: start.index,
            term: start.term,
        });
    }
    Ok(Replayed {
        contents: WalContents {
            metadata: Bytes::from(metadata.unwrap_or_default()),
            hard_state,
            entries,
        },
        crc,
        last_index,
        tail_end,
        tail_needs_repair,
    })
}

/// The decoder entry point for fuzzing: replays `bytes` as the only (and so last) segment of a WAL opened at the
/// zero snapshot marker. Must never panic, whatever the input.
#[doc(hidden)]
pub fn replay_single_segment(bytes: &[u8]) -> Result<WalContents, Error> {
    let segment = LoadedSegment {
        path: PathBuf::from("0000000000000000-0000000000000000.wal"),
        bytes: bytes.to_vec(),
    };
    replay(std::iter::once(Ok(segment)), SnapshotMarker::default()).map(|r| r.contents)
}

/// Every snapshot marker in the segments, in log order (etcd's `ValidSnapshotEntries`), so the
/// server loads only a snapshot file that the WAL can be opened at. Reading stops at the first
/// record that does not decode: the open that follows repairs or reports it.
pub(crate) fn snapshot_markers(
    segments: impl Iterator<Item = Result<LoadedSegment, Error>>,
) -> Result<Vec<SnapshotMarker>, Error> {
    let mut crc = 0;
    let mut markers = Vec::new();
    for segment in segments {
        let segment = segment?;
        let mut decoder = SegmentDecoder::new(&segment.bytes);
        loop {
            match decoder.next(&mut crc) {
                Decoded::Record {
                    kind: RecordType::Snapshot,
                    data,
                    ..
                } => {
                    if let Ok(marker) = SnapshotMarker::decode(data.as_slice()) {
                        markers.push(marker);
                    }
                }
                Decoded::Record { .. } => {}
                Decoded::End { .. } => break,
                Decoded::Bad { .. } => return Ok(markers),
            }
        }
    }
    Ok(markers)
}
