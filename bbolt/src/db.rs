//! Opening a database file and picking its current meta page (bbolt's `db.go`).

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::page::{Meta, Page, HEADER_SIZE};

/// bbolt's default page size (the OS page size), used when meta page 0 is unreadable.
const DEFAULT_PAGE_SIZE: usize = 4096;

enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A bbolt database opened read-only: the view of its last committed transaction.
pub struct Db {
    data: Data,
    page_size: usize,
    meta: Meta,
}

impl Db {
    /// Maps the file at `path` (a trailer after the last page, as `etcdctl snapshot save`
    /// appends, is ignored).
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private to this process; etcd's tools likewise
        // assume nobody truncates a database file while it is being read.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Self::from_data(Data::Mapped(map))
    }

    /// A database held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Db> {
        Self::from_data(Data::Owned(bytes))
    }

    fn from_data(data: Data) -> Result<Db> {
        let bytes = match &data {
            Data::Mapped(m) => &m[..],
            Data::Owned(v) => &v[..],
        };
        // bbolt reads the first 4 KiB and takes the page size from meta 0 when it is valid.
        if bytes.len() < DEFAULT_PAGE_SIZE {
            return Err(Error::Invalid);
        }
        let meta0 = Meta::read(bytes).ok_or(Error::Invalid)?;
        let page_size = match meta0.validate() {
            Ok(()) => meta0.page_size as usize,
            Err(_) => DEFAULT_PAGE_SIZE,
        };
        if page_size < HEADER_SIZE + crate::page::META_SIZE {
            return Err(Error::Invalid);
        }
        if bytes.len() < 2 * page_size {
            return Err(Error::FileTooSmall);
        }
        let meta1 = Meta::read(&bytes[page_size..]).ok_or(Error::Invalid)?;
        let meta = pick_meta(meta0, meta1)?;
        Ok(Db {
            data,
            page_size,
            meta,
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The id of the transaction the file was last committed by.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// bbolt's `tx.Size()`: the bytes up to the high water mark, what `snapshot status`
    /// reports as the total size.
    pub fn size(&self) -> u64 {
        self.meta.pgid.saturating_mul(self.page_size as u64)
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Page `pgid` with its overflow pages.
    pub(crate) fn page(&self, pgid: u64) -> Result<Page<'_>> {
        let bytes = self.bytes();
        let pages = (bytes.len() / self.page_size) as u64;
        let out_of_file = || Error::OutOfFile { page: pgid, pages };
        let start = usize::try_from(pgid)
            .ok()
            .and_then(|p| p.checked_mul(self.page_size))
            .filter(|&s| s + self.page_size <= bytes.len())
            .ok_or_else(out_of_file)?;
        let head = Page::new(pgid, &bytes[start..start + self.page_size])?;
        let span = (head.overflow() as usize + 1)
            .checked_mul(self.page_size)
            .filter(|&len| start + len <= bytes.len())
            .ok_or_else(out_of_file)?;
        Page::new(pgid, &bytes[start..start + span])
    }
}

/// bbolt's `db.meta()`: the meta with the higher txid unless it is invalid, then the other;
/// with neither valid, meta 0's error (as `Open` reports it).
fn pick_meta(meta0: Meta, meta1: Meta) -> Result<Meta> {
    let (newer, older) = if meta1.txid > meta0.txid {
        (meta1, meta0)
    } else {
        (meta0, meta1)
    };
    if newer.validate().is_ok() {
        Ok(newer)
    } else if older.validate().is_ok() {
        Ok(older)
    } else {
        Err(meta0.validate().expect_err("both metas are invalid"))
    }
}
