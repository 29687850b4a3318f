#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendConfig};
use mvcc::{Store, StoreConfig};

pub fn fast_config() -> StoreConfig {
    StoreConfig {
        compaction_batch_limit: 7,
        compaction_batch_pause: Duration::ZERO,
        watch_sync_interval: Duration::from_millis(5),
        watch_sync_batch: 50,
        watch_stream_capacity: 16,
    }
}

pub fn memory_store() -> Store {
    let backend = Arc::new(Backend::in_memory(BackendConfig::default()).unwrap());
    Store::open(backend, fast_config()).unwrap()
}

pub fn open_redb(path: &std::path::Path) -> Store {
    let backend = Arc::new(Backend::open(path, BackendConfig::default()).unwrap());
    Store::open(backend, fast_config()).unwrap()
}

pub fn no_leases(_: i64) -> bool {
    false
}

pub fn any_lease(_: i64) -> bool {
    true
}
