//! The on-disk layout of bbolt's pages (go.etcd.io/bbolt `page.go`): a 16-byte header, then
//! an array of 16-byte elements whose keys and values live further on in the same page (or in
//! the page's overflow pages, which follow it contiguously).

use crate::error::{page_error, Result};

pub(crate) const HEADER_SIZE: usize = 16;
pub(crate) const ELEMENT_SIZE: usize = 16;
/// A bucket's header in its parent's value: root page id, sequence.
pub(crate) const BUCKET_HEADER_SIZE: usize = 16;

pub(crate) const BRANCH_PAGE: u16 = 0x01;
pub(crate) const LEAF_PAGE: u16 = 0x02;
pub(crate) const META_PAGE: u16 = 0x04;
pub(crate) const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a nested bucket.
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One page (with its overflow) as stored: `bytes` starts at its header and ends where the
/// page's span ends (for an inline bucket's page, where the parent's value ends).
#[derive(Clone, Copy)]
pub(crate) struct Page<'a> {
    /// The id the page was reached by (0 for an inline page).
    pub(crate) pgid: u64,
    pub(crate) bytes: &'a [u8],
}

/// A leaf element: a key and either a value or a nested bucket's header and inline page.
pub(crate) struct LeafElement<'a> {
    pub(crate) flags: u32,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl<'a> Page<'a> {
    /// `bytes` must hold at least the header (the callers check).
    pub(crate) fn new(pgid: u64, bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < HEADER_SIZE {
            return Err(page_error(pgid, "shorter than a page header"));
        }
        Ok(Self { pgid, bytes })
    }

    /// The id written in the page's header.
    pub(crate) fn id(&self) -> u64 {
        u64_at(self.bytes, 0)
    }

    pub(crate) fn flags(&self) -> u16 {
        u16_at(self.bytes, 8)
    }

    pub(crate) fn count(&self) -> u16 {
        u16_at(self.bytes, 10)
    }

    pub(crate) fn overflow(&self) -> u32 {
        u32_at(self.bytes, 12)
    }

    /// bbolt's `page.typ()`, as `tx.Check` names a page.
    pub(crate) fn type_name(&self) -> String {
        match self.flags() {
            f if f & BRANCH_PAGE != 0 => "branch".into(),
            f if f & LEAF_PAGE != 0 => "leaf".into(),
            f if f & META_PAGE != 0 => "meta".into(),
            f if f & FREELIST_PAGE != 0 => "freelist".into(),
            f => format!("unknown<{f:02x}>"),
        }
    }

    fn element(&self, i: usize) -> Result<(usize, &'a [u8])> {
        let at = HEADER_SIZE + i * ELEMENT_SIZE;
        let elem = self
            .bytes
            .get(at..at + ELEMENT_SIZE)
            .ok_or_else(|| page_error(self.pgid, format!("element {i} past the page's end")))?;
        Ok((at, elem))
    }

    fn slice(&self, from: usize, len: usize, what: &str) -> Result<&'a [u8]> {
        from.checked_add(len)
            .and_then(|end| self.bytes.get(from..end))
            .ok_or_else(|| page_error(self.pgid, format!("{what} past the page's end")))
    }

    /// The `i`th element of a branch page: its first key and its child's page id.
    pub(crate) fn branch_element(&self, i: usize) -> Result<(&'a [u8], u64)> {
        let (at, elem) = self.element(i)?;
        let pos = u32_at(elem, 0) as usize;
        let ksize = u32_at(elem, 4) as usize;
        let child = u64_at(elem, 8);
        Ok((self.slice(at + pos, ksize, "branch key")?, child))
    }

    pub(crate) fn leaf_element(&self, i: usize) -> Result<LeafElement<'a>> {
        let (at, elem) = self.element(i)?;
        let flags = u32_at(elem, 0);
        let pos = u32_at(elem, 4) as usize;
        let ksize = u32_at(elem, 8) as usize;
        let vsize = u32_at(elem, 12) as usize;
        let key = self.slice(at + pos, ksize, "leaf key")?;
        let value = self.slice(at + pos + ksize, vsize, "leaf value")?;
        Ok(LeafElement { flags, key, value })
    }

    /// The page ids a freelist page lists (a count of 0xFFFF means the real count is the first
    /// id slot's value).
    pub(crate) fn freelist_ids(&self) -> Result<Vec<u64>> {
        let (skip, count) = match self.count() {
            0xFFFF => (
                1,
                self.slice(HEADER_SIZE, 8, "freelist count")
                    .map(|b| u64_at(b, 0))?,
            ),
            n => (0, u64::from(n)),
        };
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .ok_or_else(|| page_error(self.pgid, "freelist count overflows"))?;
        let ids = self.slice(HEADER_SIZE + skip * 8, len, "freelist")?;
        Ok(ids.chunks_exact(8).map(|c| u64_at(c, 0)).collect())
    }
}

/// The header of a database (bbolt's `meta`), stored at the start of pages 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) magic: u32,
    pub(crate) version: u32,
    pub(crate) page_size: u32,
    pub(crate) root: u64,
    pub(crate) freelist: u64,
    /// The high water mark: pages at and past it are unused.
    pub(crate) pgid: u64,
    pub(crate) txid: u64,
    pub(crate) checksum: u64,
    /// FNV-1a 64 of the fields before the checksum.
    pub(crate) computed_checksum: u64,
}

pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
pub(crate) const META_SIZE: usize = 64;
const CHECKSUMMED_LEN: usize = 56;
/// A meta's freelist id when the freelist is not written (bbolt's `NoFreelistSync`).
pub(crate) const NO_FREELIST: u64 = u64::MAX;

impl Meta {
    /// Reads the meta stored in the page that starts at `page[0]`; `None` if too short.
    pub(crate) fn read(page: &[u8]) -> Option<Meta> {
        let b = page.get(HEADER_SIZE..HEADER_SIZE + META_SIZE)?;
        Some(Meta {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            page_size: u32_at(b, 8),
            root: u64_at(b, 16),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
            checksum: u64_at(b, 56),
            computed_checksum: fnv1a64(&b[..CHECKSUMMED_LEN]),
        })
    }

    /// bbolt's `meta.validate`, in its order.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        if self.magic != MAGIC {
            Err(crate::Error::Invalid)
        } else if self.version != VERSION {
            Err(crate::Error::VersionMismatch)
        } else if self.checksum != self.computed_checksum {
            Err(crate::Error::Checksum)
        } else {
            Ok(())
        }
    }
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
