//! How the lessor persists leases: the record it writes, and the two traits the server
//! implements over its storage.

/// A persisted lease: etcd's `leasepb.Lease`, in its protobuf encoding.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining TTL of the last checkpoint, 0 when none.
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// The writes of lease requests, made inside the batch of the raft entry being applied.
pub trait LeaseTxn {
    type Error;
    /// Stores `lease`, replacing the record of the same id.
    fn put_lease(&mut self, lease: &LeaseRecord);
    fn delete_lease(&mut self, id: i64);
    /// Deletes `key` from the key space (a key of a lease being revoked). All deletes of one
    /// revoke belong to the same revision, as etcd's `RangeDeleter` does them.
    fn delete_key(&mut self, key: &[u8]) -> Result<(), Self::Error>;
}

/// What the lessor reloads at start-up and after a snapshot restore.
pub trait LeaseStore {
    type Error;
    /// Every persisted lease.
    fn leases(&self) -> Result<Vec<LeaseRecord>, Self::Error>;
    /// Every live key that names a lease, with that lease's id.
    fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>, Self::Error>;
}
