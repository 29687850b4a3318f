//! Write-ahead log: CRC-chained records of raft entries and hard state in fsynced segments, laid out as etcd's
//! `server/storage/wal`.
//!
//! A WAL directory (etcd's `member/wal/`) holds segments named `<seq>-<index>.wal` (16 hex digits each). Each
//! segment starts with a crc record carrying the running checksum of the previous segment, then the metadata
//! and the last HardState; entries, HardStates and snapshot markers follow. Segments are preallocated, so the
//! log ends at the first zero length word. Frames and records are byte-compatible with etcd (see `frame.rs`).
//!
//! Payloads are opaque to this crate: an entry is the encoded `raftpb.Entry` ([`WalEntry`]) and the HardState
//! is a wire-compatible copy ([`HardState`]), so the server plugs `raftpb` in by encoding/decoding with prost.
//!
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
    purge_segments, Wal, WalContents, WalOptions, DEFAULT_SEGMENT_SIZE, MAX_ENTRY_BYTES,
};

/// Entry points for fuzzing and property tests of the decoder; not part of the stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::read::replay_single_segment;
}
