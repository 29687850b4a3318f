//! The backend tables the store owns and the meta keys it keeps in them (etcd's
//! `server/storage/schema` for the key and meta buckets).

use backend::Table;

/// Every revision's value, keyed by the encoded revision.
pub const KEY_TABLE: Table = Table::new("key");
/// The consistent index, its term and the compaction progress.
pub const META_TABLE: Table = Table::new("meta");
/// The tables of the store, in the order a backend lists them.
pub const TABLES: [Table; 2] = [KEY_TABLE, META_TABLE];

pub(crate) const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub(crate) const META_TERM: &[u8] = b"term";
pub(crate) const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub(crate) const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// Keys [`backend::Backend::hash`] leaves out (etcd's `schema.DefaultIgnores`): they differ
/// between members holding the same data.
pub const HASH_IGNORED_KEYS: [(Table, &[u8]); 2] =
    [(META_TABLE, META_CONSISTENT_INDEX), (META_TABLE, META_TERM)];
