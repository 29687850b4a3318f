//! Leases (etcd's `server/lease`): which leases exist, their TTLs and attached keys, and, on
//! the leader only, when each expires and when it is checkpointed.
//!
//! The [`Lessor`] holds the leases in memory. Whatever changes the set of leases or their keys
//! (grant, revoke, checkpoint, a put naming a lease, a delete) is applied from committed raft
//! entries, and the lessor persists it through the [`LeaseTxn`] it is handed: the server
//! implements that trait over the write transaction of the entry being applied, so a lease
//! and the keys it deletes change in the same batch as everything else of that entry.
//! [`LeaseStore`] reads the persisted leases back at start-up and after a snapshot restore.
//! This crate does not know where or how the server stores them.

mod error;
mod lessor;
mod store;

pub use error::LeaseError;
pub use lessor::{
    LeaseStatus, Lessor, Renewed, DEFAULT_CHECKPOINT_INTERVAL, LEASE_CHECKPOINT_RATE,
    LEASE_REVOKE_RATE, MAX_LEASE_TTL,
};
pub use store::{LeaseRecord, LeaseStore, LeaseTxn};
