//! Changes to a store's tables made while no store has them open (etcd's `cindex` and
//! `etcdutl` helpers): what `snapshot restore` does to a database before a member boots it.

use backend::{Backend, BatchTx};

use crate::error::Result;
use crate::revision::Revision;
use crate::schema::{
    KEY_TABLE, META_CONSISTENT_INDEX, META_SCHEDULED_COMPACT, META_TABLE, META_TERM,
};

/// Records raft entry `index` of `term` as the last one applied (etcd's
/// `UpdateConsistentIndex`).
pub fn write_consistent_index(tx: &mut BatchTx<'_>, index: u64, term: u64) {
    tx.put(
        META_TABLE,
        META_CONSISTENT_INDEX.to_vec(),
        index.to_be_bytes().to_vec(),
    );
    tx.put(META_TABLE, META_TERM.to_vec(), term.to_be_bytes().to_vec());
}

/// The highest revision in the key table (0.0 when it is empty).
pub fn latest_revision(backend: &Backend) -> Result<Revision> {
    let mut latest = Revision::default();
    backend.read().scan(KEY_TABLE, &[], None, |k, _| {
        if let Some(rev) = Revision::from_bytes(k) {
            latest = latest.max(rev);
        }
        true
    })?;
    Ok(latest)
}

/// etcd 3.5's `--bump-revision N --mark-compacted`: an empty entry at (latest + `amount`, 0)
/// makes that the current revision, and a compaction scheduled there makes every older
/// revision read as compacted once a member opens the store. Returns the new revision.
pub fn bump_revision_and_mark_compacted(backend: &Backend, amount: i64) -> Result<i64> {
    let latest = latest_revision(backend)?.main + amount;
    let mut tx = backend.batch_tx();
    tx.put(
        KEY_TABLE,
        Revision::new(latest, 0).to_bytes().to_vec(),
        Vec::new(),
    );
    tx.put(
        META_TABLE,
        META_SCHEDULED_COMPACT.to_vec(),
        Revision::new(latest, 0).to_bytes().to_vec(),
    );
    drop(tx);
    backend.force_commit()?;
    Ok(latest)
}
