/// Why a file cannot be read as a bbolt database, or where its pages are inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// bbolt's `ErrInvalid`: neither meta page has the magic number.
    #[error("invalid database")]
    Invalid,
    /// bbolt's `ErrVersionMismatch`.
    #[error("version mismatch")]
    VersionMismatch,
    /// bbolt's `ErrChecksum`: no meta page with a valid checksum.
    #[error("checksum error")]
    Checksum,
    /// Shorter than its two meta pages (bbolt's mmap check).
    #[error("file size too small")]
    FileTooSmall,
    #[error("page {page}: {what}")]
    Page { page: u64, what: String },
    #[error("page {page}: out of bounds: the file holds {pages} pages")]
    OutOfFile { page: u64, pages: u64 },
    #[error("bucket {0:?} not found")]
    NoBucket(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn page_error(page: u64, what: impl Into<String>) -> Error {
    Error::Page {
        page,
        what: what.into(),
    }
}
