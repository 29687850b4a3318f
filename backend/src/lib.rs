//! Durable, batched, transactional storage tables (etcd's `server/storage/backend`).
//!
//! Writers go through one [`BatchTx`] at a time; their changes land in an in-memory *pending*
//! buffer that is committed to the [`Engine`] as one transaction every `batch_interval`, every
//! `batch_limit` writes, or on [`Backend::force_commit`]. Readers ([`ReadTx`]) overlay the
//! pending and in-flight buffers on the last committed engine snapshot, so they see every
//! write the apply loop has made without waiting for an fsync (see `README.md` for the
//! measurement behind that choice).
//!
//! Invariants:
//! - a `BatchTx` excludes commits for its whole life, so the writes of one apply (mvcc changes
//!   plus the consistent index) are committed together or not at all;
//! - the pending buffer is moved to the in-flight slot and the in-flight slot is cleared only
//!   under the buffer write lock, and the committed snapshot is replaced in the same critical
//!   section that clears the in-flight slot, so a reader never sees a write disappear.

mod backend;
mod engine;
mod error;
mod memory;
mod redb_engine;
mod snapshot;
mod table;

pub use backend::{Backend, BackendConfig, BatchTx, ReadTx};
pub use engine::{Batch, Engine, EngineView, TableChanges};
pub use error::{Error, Result, SnapshotCorruption};
pub use memory::MemoryEngine;
pub use redb_engine::RedbEngine;
pub use snapshot::{read_snapshot, restore_snapshot, SnapshotInfo};
pub use table::Table;
