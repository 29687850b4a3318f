//! Buckets and their B+trees (bbolt's `bucket.go`, `cursor.go`): a bucket is either a tree of
//! pages under a root page or, when small, one leaf page stored inline in its parent's value.

use crate::db::Db;
use crate::error::{page_error, Error, Result};
use crate::page::{
    u64_at, Page, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, HEADER_SIZE, LEAF_PAGE,
};

/// Deeper trees than this are loops in a damaged file (a real one with 4 KiB pages would need
/// more keys than fit in a file to get there).
const MAX_DEPTH: usize = 64;

impl Db {
    /// The root bucket, whose keys are the top-level buckets' names.
    pub fn root(&self) -> Bucket<'_> {
        Bucket::on_page(self, self.meta().root)
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>> {
        self.root().bucket(name)
    }
}

/// A bucket of a [`Db`].
#[derive(Clone, Copy)]
pub struct Bucket<'a> {
    db: &'a Db,
    /// The root page; 0 for an inline bucket.
    root: u64,
    inline: Option<&'a [u8]>,
}

/// What a key of a bucket holds.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Data(&'a [u8]),
    Bucket(Bucket<'a>),
}

impl<'a> Bucket<'a> {
    pub(crate) fn on_page(db: &'a Db, root: u64) -> Self {
        Self {
            db,
            root,
            inline: None,
        }
    }

    /// The bucket whose header and (for an inline bucket) page are `value`.
    fn from_value(db: &'a Db, at_page: u64, value: &'a [u8]) -> Result<Self> {
        if value.len() < BUCKET_HEADER_SIZE {
            return Err(page_error(at_page, "bucket value shorter than its header"));
        }
        let root = u64_at(value, 0);
        if root != 0 {
            return Ok(Self::on_page(db, root));
        }
        let page = &value[BUCKET_HEADER_SIZE..];
        if page.len() < HEADER_SIZE {
            return Err(page_error(
                at_page,
                "inline bucket shorter than a page header",
            ));
        }
        Ok(Self {
            db,
            root: 0,
            inline: Some(page),
        })
    }

    /// The root page id (0 for an inline bucket).
    pub fn root_page(&self) -> u64 {
        self.root
    }

    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }

    pub(crate) fn root(&self) -> Result<Page<'a>> {
        match self.inline {
            Some(bytes) => Page::new(0, bytes),
            None => self.db.page(self.root),
        }
    }

    pub(crate) fn db(&self) -> &'a Db {
        self.db
    }

    /// Calls `visit` with every key of the bucket in key order (bbolt's `ForEach`); a nested
    /// bucket's key comes with [`Value::Bucket`].
    pub fn for_each<E: From<Error>>(
        &self,
        mut visit: impl FnMut(&'a [u8], Value<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.walk(self.root()?, 0, &mut visit)
    }

    fn walk<E: From<Error>>(
        &self,
        page: Page<'a>,
        depth: usize,
        visit: &mut impl FnMut(&'a [u8], Value<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(page_error(page.pgid, "tree deeper than any real file's").into());
        }
        let count = usize::from(page.count());
        if page.flags() & BRANCH_PAGE != 0 {
            for i in 0..count {
                let (_, child) = page.branch_element(i)?;
                self.walk(self.db.page(child)?, depth + 1, visit)?;
            }
        } else if page.flags() & LEAF_PAGE != 0 {
            for i in 0..count {
                let elem = page.leaf_element(i)?;
                let value = if elem.flags & BUCKET_LEAF_FLAG != 0 {
                    Value::Bucket(Bucket::from_value(self.db, page.pgid, elem.value)?)
                } else {
                    Value::Data(elem.value)
                };
                visit(elem.key, value)?;
            }
        } else {
            let what = format!("invalid type: {}", page.type_name());
            return Err(page_error(page.pgid, what).into());
        }
        Ok(())
    }

    /// What `key` holds, if anything (bbolt's cursor seek).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Value<'a>>> {
        let mut page = self.root()?;
        for _ in 0..=MAX_DEPTH {
            let count = usize::from(page.count());
            if page.flags() & BRANCH_PAGE != 0 {
                if count == 0 {
                    return Err(page_error(page.pgid, "empty branch page"));
                }
                // The last child whose first key is not after `key`.
                let mut child = page.branch_element(0)?.1;
                for i in 1..count {
                    let (first, pgid) = page.branch_element(i)?;
                    if first > key {
                        break;
                    }
                    child = pgid;
                }
                page = self.db.page(child)?;
            } else if page.flags() & LEAF_PAGE != 0 {
                for i in 0..count {
                    let elem = page.leaf_element(i)?;
                    if elem.key == key {
                        return Ok(Some(if elem.flags & BUCKET_LEAF_FLAG != 0 {
                            Value::Bucket(Bucket::from_value(self.db, page.pgid, elem.value)?)
                        } else {
                            Value::Data(elem.value)
                        }));
                    }
                }
                return Ok(None);
            } else {
                let what = format!("invalid type: {}", page.type_name());
                return Err(page_error(page.pgid, what));
            }
        }
        Err(page_error(page.pgid, "tree deeper than any real file's"))
    }

    /// The nested bucket `name` (`None` if absent or if `name` holds a plain value, as bbolt's
    /// `Bucket()`).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>> {
        Ok(match self.lookup(name)? {
            Some(Value::Bucket(b)) => Some(b),
            _ => None,
        })
    }

    /// The value of `key` (`None` if absent or a nested bucket, as bbolt's `Get`).
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        Ok(match self.lookup(key)? {
            Some(Value::Data(v)) => Some(v),
            _ => None,
        })
    }
}
