//! The copy of a real etcd's buckets into our tables. Our tables keep etcd's bucket names and
//! encodings (mvcc's 17-byte revision keys with the `t` tombstone mark and `mvccpb.KeyValue`
//! values, `leasepb.Lease` by big-endian id, `authpb.User`/`authpb.Role` by name, the
//! `authEnabled`/`authRevision` flags, marshalled `AlarmMember`s), so entries are copied as
//! they are; each is decoded first, so a file we would misread is refused rather than copied.

use std::path::Path;

use api::{authpb, etcdserverpb};
use backend::{Backend, Table};
use bbolt::Value;
use prost::Message;

use super::{open_checked, ImportSummary, MigrateError};

/// Entries written per backend transaction, so an import of a large file is committed in
/// batches rather than held in memory.
const ROWS_PER_TXN: usize = 1000;

/// The `meta` keys copied: the compaction points. The consistent index and term are the
/// restored cluster's (restore writes them); 3.5's `confState` and `storageVersion` describe
/// the old cluster.
const META_KEYS: [&[u8]; 2] = [b"scheduledCompactRev", b"finishedCompactRev"];

/// How the entries of one bucket are checked before they are copied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Key,
    Meta,
    Lease,
    Auth,
    AuthUsers,
    AuthRoles,
    Alarm,
}

/// The buckets imported, by etcd's name (which is also our table's). `members`,
/// `members_removed` and `cluster` belong to the old cluster and are left out.
const BUCKETS: [(&str, Bucket); 7] = [
    ("key", Bucket::Key),
    ("meta", Bucket::Meta),
    ("lease", Bucket::Lease),
    ("auth", Bucket::Auth),
    ("authUsers", Bucket::AuthUsers),
    ("authRoles", Bucket::AuthRoles),
    ("alarm", Bucket::Alarm),
];

/// Copies every key revision, the compaction point, leases, users, roles, auth state and alarms
/// of the bbolt file at `src` into `dst`, in our encoding; membership is left out (restore
/// writes the new cluster's).
pub fn import_bbolt(src: &Path, dst: &Backend) -> Result<ImportSummary, MigrateError> {
    let db = open_checked(src)?;
    let mut summary = ImportSummary::default();
    for (name, kind) in BUCKETS {
        let Some(bucket) = db.bucket(name.as_bytes())? else {
            continue;
        };
        let table = table_named(dst, name)?;
        let mut copier = Copier::new(dst, table);
        bucket.for_each(|key, value| {
            let Value::Data(value) = value else {
                return Err(bad(name, key, "a nested bucket, which etcd never writes"));
            };
            if kind == Bucket::Meta && !META_KEYS.contains(&key) {
                return Ok(());
            }
            check_entry(kind, name, key, value, &mut summary)?;
            copier.put(key, value);
            Ok(())
        })?;
    }
    dst.force_commit()?;
    tracing::info!(
        keys = summary.keys,
        revision = summary.revision,
        leases = summary.leases,
        users = summary.users,
        roles = summary.roles,
        "imported a bbolt database"
    );
    Ok(summary)
}

fn table_named(dst: &Backend, name: &'static str) -> Result<Table, MigrateError> {
    dst.tables()
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or(MigrateError::NoTable(name))
}

/// Writes rows into one table, a bounded number per backend transaction.
struct Copier<'b> {
    dst: &'b Backend,
    table: Table,
    tx: Option<backend::BatchTx<'b>>,
    in_tx: usize,
}

impl<'b> Copier<'b> {
    fn new(dst: &'b Backend, table: Table) -> Self {
        Self {
            dst,
            table,
            tx: None,
            in_tx: 0,
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        if self.in_tx == ROWS_PER_TXN {
            // Dropping the transaction lets the backend commit at its batch limit.
            self.tx = None;
            self.in_tx = 0;
        }
        let tx = self.tx.get_or_insert_with(|| self.dst.batch_tx());
        tx.put(self.table, key.to_vec(), value.to_vec());
        self.in_tx += 1;
    }
}

fn bad(bucket: &'static str, key: &[u8], what: impl Into<String>) -> MigrateError {
    MigrateError::BadEntry {
        bucket,
        key: String::from_utf8_lossy(key).into_owned(),
        what: what.into(),
    }
}

fn decode<M: Message + Default>(
    bucket: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<M, MigrateError> {
    M::decode(value).map_err(|e| bad(bucket, key, format!("cannot decode: {e}")))
}

/// Checks that an entry is what etcd writes there, and counts it.
fn check_entry(
    kind: Bucket,
    bucket: &'static str,
    key: &[u8],
    value: &[u8],
    summary: &mut ImportSummary,
) -> Result<(), MigrateError> {
    match kind {
        Bucket::Key => {
            let rev = mvcc::Revision::from_bytes(key)
                .ok_or_else(|| bad(bucket, key, "not a revision"))?;
            let kv: api::mvccpb::KeyValue = decode(bucket, key, value)?;
            // A tombstone holds only its key.
            if !mvcc::is_tombstone(key) && kv.mod_revision != rev.main {
                return Err(bad(
                    bucket,
                    key,
                    format!("mod_revision {} at revision {rev}", kv.mod_revision),
                ));
            }
            summary.keys += 1;
            summary.revision = rev.main;
        }
        Bucket::Meta => {
            if mvcc::Revision::from_bytes(value).is_none() {
                return Err(bad(bucket, key, "not a revision"));
            }
        }
        Bucket::Lease => {
            if key.len() != 8 {
                return Err(bad(bucket, key, "a lease id is 8 bytes"));
            }
            let lease: lease::LeaseRecord = decode(bucket, key, value)?;
            if lease.id.to_be_bytes() != key {
                return Err(bad(bucket, key, format!("holds lease {:x}", lease.id)));
            }
            summary.leases += 1;
        }
        // authEnabled (one byte) and authRevision (8 bytes); etcd reads nothing else here.
        Bucket::Auth => {}
        Bucket::AuthUsers => {
            decode::<authpb::User>(bucket, key, value)?;
            summary.users += 1;
        }
        Bucket::AuthRoles => {
            decode::<authpb::Role>(bucket, key, value)?;
            summary.roles += 1;
        }
        Bucket::Alarm => {
            decode::<etcdserverpb::AlarmMember>(bucket, key, value)?;
        }
    }
    Ok(())
}
