#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendConfig, Table};
use mvcc::*;

/// A table the store does not own, as the server's are.
pub const OTHER_TABLE: Table = Table::new("alarm");
pub const TEST_TABLES: &[Table] = &[KEY_TABLE, META_TABLE, OTHER_TABLE];

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
    let backend = Arc::new(Backend::in_memory(BackendConfig::default(), TEST_TABLES).unwrap());
    Store::open(backend, fast_config()).unwrap()
}

pub fn open_redb(path: &std::path::Path) -> Store {
    let backend = Arc::new(Backend::open(path, BackendConfig::default(), TEST_TABLES).unwrap());
    Store::open(backend, fast_config()).unwrap()
}

pub fn no_leases(_: i64) -> bool {
    false
}

pub fn any_lease(_: i64) -> bool {
    true
}

/// Writes as the server's apply loop makes them: each call applies the next raft entry.
pub trait ApplyNext {
    fn apply_next<R>(&self, f: impl FnOnce(&mut WriteTxn<'_>) -> R) -> R;

    fn put(&self, req: &PutRequest) -> Result<PutResponse> {
        self.apply_next(|t| t.put(req.clone()))
    }

    fn delete_range(&self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.apply_next(|t| t.delete_range(req))
    }

    fn txn(&self, req: &TxnRequest, lease_exists: &dyn Fn(i64) -> bool) -> Result<TxnResponse> {
        self.apply_next(|t| t.txn(req.clone(), lease_exists))
    }
}

impl ApplyNext for Store {
    fn apply_next<R>(&self, f: impl FnOnce(&mut WriteTxn<'_>) -> R) -> R {
        let (index, term) = self.consistent_index();
        self.apply(index + 1, term.max(1), f)
            .expect("the entry after the consistent index applies")
    }
}
