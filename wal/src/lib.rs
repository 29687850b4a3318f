//! Write-ahead log: CRC-chained records of raft entries and hard state in fsynced segments, laid out as etcd's
//! `server/storage/wal`.
//!
//! # Layout
//! A WAL directory (etcd's `member/wal/`) holds segments named `<seq>-<index>.wal` (16 hex digits each; `index`
//! is the first entry the segment may hold). Each segment starts with a crc record carrying the running
//! checksum of the previous segment, then the metadata and the last HardState; entries, HardStates and snapshot
//! markers follow. Segments are preallocated to 64 MiB ([`WalOptions`]), so the log ends at the first zero
//! length word; a save that leaves the tail at or past that size starts the next segment. Frames and records
//! are byte-compatible with etcd's (see `frame.rs` for the one invisible extension).
//!
//! # Durability and recovery
//! [`Wal::save`] returns only after one fdatasync (skipped, as in etcd, when only the commit index changed).
//! [`Wal::open`] replays from the segment covering the snapshot marker. A record that cannot be read is taken for
//! a torn write, and the log truncated there, only if it is in the last segment and runs past the end of the
//! file, is followed by nothing but zeros, or holds a whole zero sector. Anything else unreadable is refused as
//! [`Error::Corrupt`] with the file and offset. Every segment in use is flocked, so a second writer fails with
//! [`Error::Locked`]; [`Wal::release_lock_to`] and [`purge_segments`] free and delete segments before a snapshot.
//!
//! # Plugging in `raftpb`
//! Payloads are opaque to this crate, so it builds without the raft crates. An entry is the encoded
//! `raftpb.Entry`, written verbatim as the record's data: the writer gives its index and term along with the
//! bytes (raft knows them; nothing is decoded again), and replay reads them back from the wire bytes.
//! [`HardState`] and [`SnapshotMarker`] are wire-compatible copies. The server converts with prost:
//!
//! ```ignore
//! let entry = wal::WalEntry::new(raft_entry.index, raft_entry.term, raft_entry.encode_to_vec().into());
//! let raft_entry = raftpb::Entry::decode(entry.encoded().clone())?;
//! let state = wal::HardState { term: hs.term, vote: hs.vote, commit: hs.commit };
//! ```
//!
//! # Example
//! ```no_run
//! # fn main() -> Result<(), wal::Error> {
//! use wal::{HardState, SnapshotMarker, Wal};
//! let mut wal = Wal::create("data/member/wal", b"node metadata")?;
//! let entry = wal::testing::raft_entry(1, 1, b"put x=1");
//! wal.save(&HardState { term: 1, vote: 1, commit: 0 }, &[entry])?;
//! wal.close()?;
//! let (wal, contents) = Wal::open("data/member/wal", SnapshotMarker::default())?;
//! assert_eq!(contents.entries.len(), 1);
//! # drop(wal); Ok(()) }
//! ```

mod error;
mod frame;
mod read;
mod record;
mod segment;
mod wal;

pub use error::{Corruption, Error};
pub use record::{testing, HardState, SnapshotMarker, WalEntry};
pub use wal::{
    exists, purge_segments, snapshot_markers, Wal, WalContents, WalOptions, DEFAULT_SEGMENT_SIZE,
    MAX_ENTRY_BYTES,
};

/// Entry points for fuzzing and property tests of the decoder; not part of the stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::read::replay_single_segment;
}
