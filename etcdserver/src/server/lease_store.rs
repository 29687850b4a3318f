//! Where the server keeps the lessor's leases: etcd's `lease` table (each lease's
//! `leasepb.Lease` record keyed by its id's 8 big-endian bytes) and the mvcc key space.

use backend::Table;
use lease::LeaseRecord;
use prost::Message;

/// The leases, by id (etcd's `lease` bucket): etcd's `leasepb.Lease` records.
pub(crate) const LEASE_TABLE: Table = Table::new("lease");

/// The lease writes of the raft entry being applied, in that entry's mvcc write txn.
pub struct TxnLeases<'t, 'a>(pub &'t mut mvcc::WriteTxn<'a>);

impl lease::LeaseTxn for TxnLeases<'_, '_> {
    type Error = mvcc::Error;

    fn put_lease(&mut self, lease: &LeaseRecord) {
        self.0.backend_tx().put(
            LEASE_TABLE,
            lease.id.to_be_bytes().to_vec(),
            lease.encode_to_vec(),
        );
    }

    fn delete_lease(&mut self, id: i64) {
        self.0
            .backend_tx()
            .delete(LEASE_TABLE, id.to_be_bytes().to_vec());
    }

    fn delete_key(&mut self, key: &[u8]) -> Result<(), mvcc::Error> {
        self.0
            .delete_range(&mvcc::DeleteRangeRequest::new(key.to_vec(), Vec::new()))
            .map(|_| ())
    }
}

/// The persisted leases and leased keys of a store, for the lessor to reload.
pub struct StoreLeases<'s>(pub &'s mvcc::Store);

#[derive(Debug, thiserror::Error)]
pub enum LeaseStoreError {
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Mvcc(#[from] mvcc::Error),
    #[error("corrupt lease record: {0}")]
    Corrupt(#[from] prost::DecodeError),
}

impl lease::LeaseStore for StoreLeases<'_> {
    type Error = LeaseStoreError;

    fn leases(&self) -> Result<Vec<LeaseRecord>, LeaseStoreError> {
        let mut records = Vec::new();
        let mut corrupt = None;
        self.0
            .backend()
            .read()
            .scan(LEASE_TABLE, &[], None, |_: &[u8], v: &[u8]| {
                match LeaseRecord::decode(v) {
                    Ok(r) => records.push(r),
                    Err(e) => corrupt = Some(e),
                }
                true
            })?;
        match corrupt {
            Some(e) => Err(e.into()),
            None => Ok(records),
        }
    }

    fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>, LeaseStoreError> {
        Ok(self.0.leased_keys()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lease::Lessor;

    use super::*;

    fn store() -> Arc<mvcc::Store> {
        let backend = Arc::new(
            backend::Backend::in_memory(
                backend::BackendConfig::default(),
                &crate::server::schema::TABLES,
            )
            .unwrap(),
        );
        Arc::new(mvcc::Store::open(backend, mvcc::StoreConfig::default()).unwrap())
    }

    fn put(txn: &mut mvcc::WriteTxn<'_>, key: &str, lease: i64) {
        let mut req = mvcc::PutRequest::new(key, "v");
        req.lease = lease;
        txn.put(req).unwrap();
    }

    #[test]
    fn revoke_deletes_keys_in_one_revision_and_recovery_reloads_the_rest() {
        let s = store();
        let l = Lessor::new(1, None);
        s.apply(1, 1, |txn| {
            l.grant(&mut TxnLeases(txn), 5, 30).unwrap();
            l.grant(&mut TxnLeases(txn), 6, 40).unwrap();
        })
        .unwrap();
        s.apply(2, 1, |txn| {
            for (key, lease) in [("x", 5), ("y", 5), ("z", 5), ("w", 6)] {
                put(txn, key, lease);
                l.attach(key.as_bytes(), lease);
            }
        })
        .unwrap();
        let before = s.current_revision();
        s.apply(3, 1, |txn| l.revoke(&mut TxnLeases(txn), 5))
            .unwrap()
            .unwrap();
        assert_eq!(s.current_revision(), before + 1);
        let all = s
            .range(&mvcc::RangeRequest::range(vec![0u8], vec![0u8]))
            .unwrap();
        let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, vec![b"w".as_slice()]);

        let recovered = Lessor::new(1, None);
        recovered.recover(&StoreLeases(&s)).unwrap();
        assert_eq!(recovered.leases(), vec![6]);
        let status = recovered.time_to_live(6, true).unwrap();
        assert_eq!(status.granted_ttl, 40);
        assert_eq!(status.keys, vec![b"w".to_vec()]);
    }

    #[test]
    fn a_corrupt_record_fails_recovery() {
        let s = store();
        s.apply(1, 1, |txn| {
            txn.backend_tx().put(
                LEASE_TABLE,
                7i64.to_be_bytes().to_vec(),
                b"\xff\xff".to_vec(),
            );
        })
        .unwrap();
        let err = Lessor::new(1, None).recover(&StoreLeases(&s)).unwrap_err();
        assert!(
            err.to_string().starts_with("corrupt lease record: "),
            "{err}"
        );
    }
}
