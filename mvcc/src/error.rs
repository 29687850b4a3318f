use crate::Revision;

/// Errors of the mvcc store. The first two carry etcd's exact text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put with `ignore_value` or `ignore_lease` on a missing key.
    #[error("key not found")]
    KeyNotFound,
    /// A put naming a lease the server's lessor does not know.
    #[error("requested lease not found: {0}")]
    LeaseNotFound(i64),
    /// [`crate::Store::read_txn`] was given a txn that writes.
    #[error("a read-only txn may not put or delete")]
    WriteInReadTxn,
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error("starting the watch sync thread: {0}")]
    SyncThread(std::io::Error),
    /// The backend holds something the store did not write.
    #[error("corrupt key table: {0}")]
    Corrupt(#[from] Corruption),
}

/// What the store found in the backend that it did not write.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    #[error("meta integer is not 8 bytes")]
    MetaInteger,
    #[error("meta revision is malformed")]
    MetaRevision,
    #[error("key table row {0:?} is not a revision")]
    NotARevision(Vec<u8>),
    #[error("value at {revision}: {source}")]
    Value {
        revision: Revision,
        source: prost::DecodeError,
    },
    #[error("revision {0} is in the index only")]
    IndexOnly(Revision),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
