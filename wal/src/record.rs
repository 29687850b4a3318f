//! The protobuf messages of the WAL, wire-compatible with etcd's `walpb` and `raftpb`.
//!
//! etcd marks the scalar fields `(gogoproto.nullable) = false`, so they are always encoded, even when zero;
//! prost's `required` label does the same, which keeps our bytes identical to etcd's.

use bytes::Bytes;
use prost::Message;

use crate::Error;

/// The kind of a WAL record (etcd's `walpb.Record.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    Metadata = 1,
    Entry = 2,
    State = 3,
    Crc = 4,
    Snapshot = 5,
}

impl RecordType {
    pub(crate) fn from_wire(value: i64) -> Option<Self> {
        Some(match value {
            1 => Self::Metadata,
            2 => Self::Entry,
            3 => Self::State,
            4 => Self::Crc,
            5 => Self::Snapshot,
            _ => return None,
        })
    }
}

/// etcd's `walpb.Record`, used only for decoding (encoding is done in place by the frame writer).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Record {
    #[prost(int64, required, tag = "1")]
    pub kind: i64,
    /// `uint32` on the wire; read as 64 bits so that damage to the varint's high bits, which a 32-bit decode
    /// would silently drop, is caught.
    #[prost(uint64, required, tag = "2")]
    pub crc: u64,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

/// Raft's persistent state (`raftpb.HardState`), byte-compatible with etcd's encoding.
///
/// The server converts its `raftpb::HardState` into this type field by field; keeping a copy here lets the WAL
/// build without the raft crates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Message)]
pub struct HardState {
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

impl HardState {
    /// The all-zero state, which etcd never writes to the WAL.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// Where a raft snapshot was taken (etcd's `walpb.Snapshot`, without the optional `conf_state`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Message)]
pub struct SnapshotMarker {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
}

impl SnapshotMarker {
    pub fn new(index: u64, term: u64) -> Self {
        SnapshotMarker { index, term }
    }
}

/// The two fields of `raftpb.Entry` the WAL needs for ordering; prost skips the others (type, data).
#[derive(Clone, PartialEq, Message)]
struct EntryHeader {
    #[prost(uint64, optional, tag = "2")]
    term: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    index: Option<u64>,
}

/// One raft log entry as the WAL stores it: the encoded `raftpb.Entry`, written verbatim as the record's data
/// (as etcd does), plus its index and term.
///
/// The WAL never interprets the rest of the entry, so it does not depend on the `raftpb` crate. On the write path
/// the server encodes its entries with prost and wraps them with [`WalEntry::new`], giving the index and term raft
/// already knows; on replay [`WalEntry::from_encoded`] reads them back from the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    index: u64,
    term: u64,
    encoded: Bytes,
}

impl WalEntry {
    /// Wraps the encoding of a `raftpb.Entry` whose index and term the caller knows; `encoded` must be that
    /// entry's bytes (the WAL writes them as they are and reads index and term back from them on replay).
    pub fn new(index: u64, term: u64, encoded: Bytes) -> Self {
        WalEntry {
            index,
            term,
            encoded,
        }
    }

    /// Wraps an encoded `raftpb.Entry`, reading its term (field 2) and index (field 3).
    pub fn from_encoded(encoded: Bytes) -> Result<Self, Error> {
        let header = EntryHeader::decode(encoded.as_ref())?;
        let index = header.index.ok_or(Error::EntryWithoutIndex)?;
        Ok(WalEntry {
            index,
            term: header.term.unwrap_or(0),
            encoded,
        })
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The encoded `raftpb.Entry`.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    pub fn into_encoded(self) -> Bytes {
        self.encoded
    }
}

/// Helpers for tests, benches and the crash-test writer: they need well-formed raft entries without depending on
/// the `raftpb` crate.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// The wire layout of `raftpb.Entry` (type 1, term 2, index 3, data 4), as gogoproto encodes it.
    #[derive(Clone, PartialEq, Message)]
    struct RaftEntry {
        #[prost(int32, required, tag = "1")]
        entry_type: i32,
        #[prost(uint64, required, tag = "2")]
        term: u64,
        #[prost(uint64, required, tag = "3")]
        index: u64,
        #[prost(bytes = "vec", optional, tag = "4")]
        data: Option<Vec<u8>>,
    }

    /// A normal raft entry carrying `data`.
    pub fn raft_entry(term: u64, index: u64, data: &[u8]) -> WalEntry {
        let entry = RaftEntry {
            entry_type: 0,
            term,
            index,
            data: Some(data.to_vec()),
        };
        WalEntry::new(index, term, Bytes::from(entry.encode_to_vec()))
    }

    /// A deterministic, never-zero payload for entry `index`, 20 to 319 bytes long, so crash and corruption
    /// tests can check every entry they read back.
    pub fn pattern_payload(index: u64) -> Vec<u8> {
        let len = 20 + (index * 37 % 300) as usize;
        (0..len).map(|i| (index as usize + i) as u8 | 1).collect()
    }

    /// The `data` field of an entry made by [`raft_entry`].
    pub fn raft_entry_data(entry: &WalEntry) -> Option<Vec<u8>> {
        RaftEntry::decode(entry.encoded().as_ref()).ok()?.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_state_encodes_zero_fields_like_gogoproto() {
        let state = HardState {
            term: 0,
            vote: 0,
            commit: 5,
        };
        assert_eq!(state.encode_to_vec(), vec![0x08, 0, 0x10, 0, 0x18, 5]);
    }

    #[test]
    fn snapshot_marker_encodes_like_walpb() {
        assert_eq!(
            SnapshotMarker::default().encode_to_vec(),
            vec![0x08, 0, 0x10, 0]
        );
    }

    #[test]
    fn wal_entry_reads_index_and_term_from_encoded_entry() {
        let made = testing::raft_entry(7, 42, b"payload");
        let parsed = WalEntry::from_encoded(made.encoded().clone()).unwrap();
        assert_eq!((parsed.index(), parsed.term()), (42, 7));
        assert_eq!(
            testing::raft_entry_data(&parsed).unwrap(),
            b"payload".to_vec()
        );
    }

    #[test]
    fn wal_entry_rejects_bytes_that_are_not_an_entry() {
        assert!(WalEntry::from_encoded(Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(WalEntry::from_encoded(Bytes::new()).is_err());
    }
}
