//! Multi-version key-value store (etcd's `server/storage/mvcc`): revisions, a key index with
//! generations, ranges, transactions, compaction, hashing, the consistent index and watchers.
//!
//! Values are stored in the backend's key table under their revision (17 bytes, plus `t` for
//! a deletion) as encoded [`KeyValue`]s, exactly as etcd stores them; the index from keys to
//! revisions lives in memory and is rebuilt from that table at open.

mod error;
mod index;
mod key_index;
mod key_range;
mod kv;
mod request;
mod revision;
mod store;
mod watch;

pub use error::{Error, Result};
pub use key_range::{prefix_range_end, KeyRange};
pub use kv::{Event, EventType, KeyValue};
pub use request::*;
pub use revision::{is_tombstone, Revision};
pub use store::{Compaction, KvHash, Store, StoreConfig, WriteTxn};
pub use watch::{WatchError, WatchId, WatchRequest, WatchResponse, WatchStream};

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
