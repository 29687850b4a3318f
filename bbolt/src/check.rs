//! bbolt's `tx.Check()`: every page below the high water mark is reachable from the root
//! exactly once or free, and reachable pages are branches or leaves. The messages are bbolt's,
//! as `etcdctl snapshot status` prints them.

use std::collections::{HashMap, HashSet};

use crate::bucket::{Bucket, Value};
use crate::db::Db;
use crate::page::{BRANCH_PAGE, LEAF_PAGE, NO_FREELIST};

impl Db {
    /// The inconsistencies bbolt's `tx.Check()` reports, in its order and words; empty for a
    /// sound file. A file without a stored freelist has its free pages computed as the
    /// unreachable ones (bbolt does so), so those are never reported unreachable.
    pub fn check(&self) -> Vec<String> {
        let meta = *self.meta();
        let mut errors = Vec::new();
        let synced_freelist = meta.freelist != NO_FREELIST;
        let mut freed = HashSet::new();
        let mut reachable = HashMap::from([(0, ()), (1, ())]);
        if synced_freelist {
            match self
                .page(meta.freelist)
                .and_then(|p| Ok((p.overflow(), p.freelist_ids()?)))
            {
                Ok((overflow, ids)) => {
                    for id in ids {
                        if !freed.insert(id) {
                            errors.push(format!("page {id}: already freed"));
                        }
                    }
                    for i in 0..=u64::from(overflow) {
                        reachable.insert(meta.freelist + i, ());
                    }
                }
                Err(e) => errors.push(format!("freelist: {e}")),
            }
        }
        let mut checker = Checker {
            high_water: meta.pgid,
            freed: &freed,
            reachable,
            errors,
        };
        checker.bucket(&self.root());
        let Checker {
            reachable,
            mut errors,
            ..
        } = checker;
        if synced_freelist {
            for id in 0..meta.pgid {
                if !reachable.contains_key(&id) && !freed.contains(&id) {
                    errors.push(format!("page {id}: unreachable unfreed"));
                }
            }
        }
        errors
    }
}

struct Checker<'f> {
    high_water: u64,
    freed: &'f HashSet<u64>,
    reachable: HashMap<u64, ()>,
    errors: Vec<String>,
}

impl Checker<'_> {
    /// bbolt's `checkBucket`: the bucket's own pages, then its nested buckets in key order.
    fn bucket(&mut self, bucket: &Bucket<'_>) {
        if bucket.is_inline() {
            return;
        }
        self.pages(bucket.db(), bucket.root_page(), 0);
        let mut children = Vec::new();
        let walked = bucket.for_each(|_, value| {
            if let Value::Bucket(child) = value {
                children.push(child);
            }
            Ok::<(), crate::Error>(())
        });
        if let Err(e) = walked {
            self.errors.push(e.to_string());
        }
        for child in children {
            self.bucket(&child);
        }
    }

    /// bbolt's `forEachPage` with `checkBucket`'s visitor.
    fn pages(&mut self, db: &Db, pgid: u64, depth: usize) {
        let page = match db.page(pgid) {
            Ok(page) => page,
            Err(e) => {
                self.errors.push(e.to_string());
                return;
            }
        };
        let id = page.id();
        if id > self.high_water {
            self.errors
                .push(format!("page {id}: out of bounds: {}", self.high_water));
        }
        for i in 0..=u64::from(page.overflow()) {
            if self.reachable.insert(id + i, ()).is_some() {
                self.errors
                    .push(format!("page {}: multiple references", id + i));
            }
        }
        if self.freed.contains(&id) {
            self.errors.push(format!("page {id}: reachable freed"));
        } else if page.flags() & (BRANCH_PAGE | LEAF_PAGE) == 0 {
            self.errors
                .push(format!("page {id}: invalid type: {}", page.type_name()));
        }
        if page.flags() & BRANCH_PAGE != 0 {
            if depth >= 64 {
                self.errors
                    .push(format!("page {id}: tree deeper than any real file's"));
                return;
            }
            for i in 0..usize::from(page.count()) {
                match page.branch_element(i) {
                    Ok((_, child)) => self.pages(db, child, depth + 1),
                    Err(e) => self.errors.push(e.to_string()),
                }
            }
        }
    }
}
