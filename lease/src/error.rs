use std::convert::Infallible;

/// Why the lessor refused a lease request, or (`Store`) why persisting it failed. `E` is the
/// error of the [`crate::LeaseTxn`] the request was applied to; requests that cannot fail in
/// storage return `LeaseError<Infallible>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError<E = Infallible> {
    /// No lease has this id (or the id is 0, which names no lease).
    #[error("lease not found")]
    NotFound,
    /// A grant named an id that is already granted.
    #[error("lease already exists")]
    Exists,
    /// A grant asked for more than [`crate::MAX_LEASE_TTL`] seconds.
    #[error("lease TTL too large")]
    TtlTooLarge,
    #[error(transparent)]
    Store(E),
}
