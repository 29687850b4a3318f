//! All keys' histories in key order (etcd's `treeIndex`, a B-tree of key indexes).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use parking_lot::RwLock;

use crate::key_index::{Found, KeyIndex};
use crate::{KeyRange, Revision};

#[derive(Default)]
pub(crate) struct TreeIndex {
    tree: RwLock<BTreeMap<Vec<u8>, KeyIndex>>,
}

fn visit<'a>(
    tree: &'a BTreeMap<Vec<u8>, KeyIndex>,
    range: &KeyRange,
    mut f: impl FnMut(&'a [u8], &'a KeyIndex) -> bool,
) {
    match range {
        KeyRange::Single(key) => {
            if let Some((k, ki)) = tree.get_key_value(key.as_slice()) {
                f(k, ki);
            }
        }
        KeyRange::Span { start, end } => {
            if range.is_empty() {
                return;
            }
            let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            for (k, ki) in tree.range::<[u8], _>((Bound::Included(start.as_slice()), upper)) {
                if !f(k, ki) {
                    break;
                }
            }
        }
    }
}

impl TreeIndex {
    pub fn put(&self, key: &[u8], rev: Revision) {
        let mut tree = self.tree.write();
        match tree.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev);
                tree.insert(key.to_vec(), ki);
            }
        }
    }

    /// Records a deletion; false when the key is not live.
    pub fn tombstone(&self, key: &[u8], rev: Revision) -> bool {
        self.tree
            .write()
            .get_mut(key)
            .is_some_and(|ki| ki.tombstone(rev))
    }

    /// Takes over `other`'s keys, dropping its own.
    pub fn replace(&self, other: TreeIndex) {
        *self.tree.write() = other.tree.into_inner();
    }

    /// Inserts a key index rebuilt from the backend (used at open).
    pub fn restore(&self, key: Vec<u8>, ki: KeyIndex) {
        self.tree.write().insert(key, ki);
    }

    pub fn with_key_mut<R>(&self, key: &[u8], f: impl FnOnce(Option<&mut KeyIndex>) -> R) -> R {
        f(self.tree.write().get_mut(key))
    }

    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<Found> {
        self.tree.read().get(key).and_then(|ki| ki.get(at_rev))
    }

    /// The live keys of `range` at `at_rev` with the revision of their value, at most `limit`
    /// of them (0: all), and how many there are in total.
    pub fn revisions(&self, range: &KeyRange, at_rev: i64, limit: usize) -> (Vec<Revision>, usize) {
        let tree = self.tree.read();
        let mut revs = Vec::new();
        let mut total = 0;
        visit(&tree, range, |_, ki| {
            if let Some(found) = ki.get(at_rev) {
                if limit == 0 || revs.len() < limit {
                    revs.push(found.modified);
                }
                total += 1;
            }
            true
        });
        (revs, total)
    }

    /// The live keys of `range` at `at_rev`.
    pub fn keys(&self, range: &KeyRange, at_rev: i64) -> Vec<Vec<u8>> {
        let tree = self.tree.read();
        let mut keys = Vec::new();
        visit(&tree, range, |k, ki| {
            if ki.get(at_rev).is_some() {
                keys.push(k.to_vec());
            }
            true
        });
        keys
    }

    /// Compacts every key at `rev`; returns the revisions the backend must keep.
    pub fn compact(&self, rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        let mut tree = self.tree.write();
        tree.retain(|_, ki| {
            ki.compact(rev, &mut available);
            !ki.is_empty()
        });
        available
    }

    /// The revisions a compaction at `rev` would keep, tombstones excluded.
    pub fn keep(&self, rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.tree.read().values() {
            ki.keep(rev, &mut available);
        }
        available
    }
}
