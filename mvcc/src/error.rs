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
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// The backend holds something the store did not write.
    #[error("corrupt key table: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
