//! Multi-version key-value store (etcd's `server/storage/mvcc`): revisions, a key index with
//! generations, ranges, transactions, compaction, hashing, the consistent index and watchers.
//!
//! Values are stored in the backend's key table under their revision (17 bytes, plus `t` for
//! a deletion) as encoded [`KeyValue`]s, exactly as etcd stores them; the index from keys to
//! revisions lives in memory and is rebuilt from that table at open.

mod error;
mod hash;
mod index;
mod key_index;
mod key_range;
mod kv;
mod kvstore;
mod kvstore_compaction;
mod kvstore_txn;
/// Offline changes to a store's tables (`snapshot restore`).
pub mod offline;
mod request;
mod revision;
mod schema;
mod watch;
mod watch_channel;
mod watch_stream;
mod watchable_store;
mod watcher_group;

pub use error::{Corruption, Error, Result};
pub use hash::KvHash;
pub use key_range::{prefix_range_end, KeyRange};
pub use kv::{Event, EventType, KeyValue};
pub use kvstore::StoreConfig;
pub use kvstore_compaction::Compaction;
pub use kvstore_txn::WriteTxn;
pub use request::*;
pub use revision::{is_tombstone, Revision};
pub use schema::{HASH_IGNORED_KEYS, KEY_TABLE, META_TABLE, TABLES};
pub use watch::{WatchError, WatchId, WatchRequest, WatchResponse};
pub use watch_stream::WatchStream;
pub use watchable_store::Store;

#[cfg(test)]
mod tests {
    /// The server shares the store across threads and moves watch streams into tasks.
    #[test]
    fn handles_cross_threads() {
        fn shared<T: Send + Sync>() {}
        fn movable<T: Send>() {}
        shared::<super::Store>();
        movable::<super::WatchStream>();
        shared::<backend::Backend>();
    }
}
