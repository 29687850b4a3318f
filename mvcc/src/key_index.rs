//! The history of one key: generations of revisions (etcd's `key_index.go`).
//!
//! A generation runs from the put that created the key to the tombstone that deleted it; the
//! last generation is the live one (empty when the key is currently deleted). E.g.
//! `put(1) put(2) del(3) put(4) del(5)` gives `{1, 2, 3t} {4, 5t} {}`.
//! Compacting at `r` drops every revision `<= r` except the largest one, and generations that
//! end (tombstone) before `r`; a key whose last generation is empty and alone is removed.

use std::collections::HashSet;

use crate::Revision;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Version of the key at the last revision of the generation.
    ver: i64,
    created: Revision,
    revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the last revision with `main <= at_rev`.
    fn find_revision_index(&self, at_rev: i64) -> Option<usize> {
        let n = self.revs.partition_point(|r| r.main <= at_rev);
        n.checked_sub(1)
    }

    fn tombstone(&self) -> Option<Revision> {
        self.revs.last().copied()
    }
}

/// What [`KeyIndex::get`] finds: the revision of the value, its creation and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
}

impl KeyIndex {
    pub fn new() -> Self {
        Self {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }

    /// Records a put at `rev`, which must be newer than every revision seen so far.
    pub fn put(&mut self, rev: Revision) {
        debug_assert!(rev > self.modified, "put {rev} after {}", self.modified);
        let g = self.live_generation();
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuilds the live generation from a stored value whose earlier revisions were compacted.
    pub fn restore(created: Revision, modified: Revision, version: i64) -> Self {
        Self {
            modified,
            generations: vec![Generation {
                ver: version,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// Records a deletion at `rev`; false (and no change) when the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.live_generation().is_empty() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    fn live_generation(&mut self) -> &mut Generation {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        &mut self.generations[last]
    }

    /// The key's state as of `at_rev`, `None` when it did not exist then.
    pub fn get(&self, at_rev: i64) -> Option<Found> {
        let g = self.find_generation(at_rev)?;
        let n = g.find_revision_index(at_rev)?;
        Some(Found {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// The generation `rev` falls in; `None` when the key was deleted (or not yet created)
    /// at `rev`.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(tomb) = g.tombstone() else { continue };
            if i != last && tomb.main <= rev {
                return None;
            }
            if g.revs[0].main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// Drops history that a compaction at `at_rev` makes unreachable and adds the revisions
    /// that must stay in the backend to `available`.
    pub fn compact(&mut self, at_rev: i64, available: &mut HashSet<Revision>) {
        let (gen_idx, rev_idx) = self.do_compact(at_rev, available);
        if let Some(rev_idx) = rev_idx {
            let g = &mut self.generations[gen_idx];
            g.revs.drain(..rev_idx);
        }
        self.generations.drain(..gen_idx);
    }

    /// Adds to `available` what [`KeyIndex::compact`] would keep, except a tombstone: a key
    /// deleted at or before `at_rev` contributes nothing (so the hash of a revision is the
    /// same before and after it is compacted).
    pub fn keep(&self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let mut scratch = HashSet::new();
        let (gen_idx, rev_idx) = self.do_compact(at_rev, &mut scratch);
        let g = &self.generations[gen_idx];
        if let Some(rev_idx) = rev_idx {
            let is_tombstone = rev_idx == g.revs.len() - 1 && gen_idx != self.generations.len() - 1;
            if !is_tombstone {
                available.insert(g.revs[rev_idx]);
            }
        }
    }

    fn do_compact(&self, at_rev: i64, available: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        // The first generation that ends at or after at_rev (or the live one). A generation
        // ending exactly at at_rev does not count when the next one also starts there (a
        // delete and a put of the key in one transaction): the key is live at at_rev.
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let ends = self.generations[gen_idx].tombstone().map_or(0, |t| t.main);
            let next_starts = self.generations[gen_idx + 1]
                .revs
                .first()
                .is_some_and(|r| r.main <= at_rev);
            if ends > at_rev || (ends == at_rev && !next_starts) {
                break;
            }
            gen_idx += 1;
        }
        let rev_idx = self.generations[gen_idx].find_revision_index(at_rev);
        if let Some(i) = rev_idx {
            available.insert(self.generations[gen_idx].revs[i]);
        }
        (gen_idx, rev_idx)
    }

    /// Nothing left: one empty generation.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(2) put(4) del(6) put(8) put(10) del(12) put(14) put(16)
    fn sample() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        ki.put(r(10));
        assert!(ki.tombstone(r(12)));
        ki.put(r(14));
        ki.put(r(16));
        ki
    }

    #[test]
    fn get_finds_the_generation_and_version() {
        let ki = sample();
        assert_eq!(ki.get(1), None);
        let f = ki.get(5).unwrap();
        assert_eq!((f.modified, f.created, f.version), (r(4), r(2), 2));
        assert_eq!(ki.get(6), None, "deleted at 6");
        assert_eq!(ki.get(7), None);
        let f = ki.get(11).unwrap();
        assert_eq!((f.modified, f.created, f.version), (r(10), r(8), 2));
        assert_eq!(ki.get(13), None);
        let f = ki.get(100).unwrap();
        assert_eq!((f.modified, f.created, f.version), (r(16), r(14), 2));
    }

    #[test]
    fn tombstone_on_deleted_key_is_refused() {
        let mut ki = KeyIndex::new();
        assert!(!ki.tombstone(r(1)));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        assert!(!ki.tombstone(r(4)));
    }

    #[test]
    fn compact_keeps_the_latest_revision_at_or_below() {
        let mut ki = sample();
        let mut avail = HashSet::new();
        ki.compact(5, &mut avail);
        assert_eq!(avail, HashSet::from([r(4)]));
        assert_eq!(ki.get(5).unwrap().modified, r(4));
        assert_eq!(ki.get(5).unwrap().version, 2);

        let mut avail = HashSet::new();
        ki.compact(6, &mut avail);
        // The tombstone stays until a compaction passes it.
        assert_eq!(avail, HashSet::from([r(6)]));
        assert_eq!(ki.get(6), None);

        let mut avail = HashSet::new();
        ki.compact(7, &mut avail);
        assert!(avail.is_empty());
        assert_eq!(ki.get(9).unwrap().modified, r(8));

        let mut avail = HashSet::new();
        ki.compact(16, &mut avail);
        assert_eq!(avail, HashSet::from([r(16)]));
        assert_eq!(ki.get(16).unwrap().version, 2);
    }

    #[test]
    fn compacting_past_a_final_tombstone_empties_the_key() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.tombstone(r(3));
        let mut avail = HashSet::new();
        ki.compact(3, &mut avail);
        assert!(!ki.is_empty());
        ki.compact(4, &mut avail);
        assert!(ki.is_empty());
    }

    #[test]
    fn delete_and_put_in_one_revision_compacts_to_the_put() {
        let mut ki = KeyIndex::new();
        ki.put(r(6));
        ki.tombstone(r(7));
        ki.put(Revision::new(7, 1));
        ki.put(r(12));
        let mut avail = HashSet::new();
        ki.keep(7, &mut avail);
        assert_eq!(avail, HashSet::from([Revision::new(7, 1)]));
        let mut avail = HashSet::new();
        ki.compact(7, &mut avail);
        assert_eq!(avail, HashSet::from([Revision::new(7, 1)]));
        assert_eq!(ki.get(7).unwrap().modified, Revision::new(7, 1));
        assert_eq!(ki.get(12).unwrap().version, 2);
    }

    #[test]
    fn keep_skips_tombstones_and_does_not_modify() {
        let ki = sample();
        let before = ki.clone();
        let mut avail = HashSet::new();
        ki.keep(6, &mut avail);
        assert!(avail.is_empty(), "deleted at 6: nothing to keep");
        ki.keep(11, &mut avail);
        assert_eq!(avail, HashSet::from([r(10)]));
        assert_eq!(ki, before);
    }
}
