use std::io;
use std::path::PathBuf;

pub use crate::frame::Corruption;

/// Everything that can go wrong with a WAL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("WAL directory {0} already holds segments")]
    AlreadyExists(PathBuf),
    #[error("no WAL segment in {0} covers the requested snapshot")]
    NoSegment(PathBuf),
    #[error(
        "WAL segments in {dir} are not consecutive: expected sequence {expected}, found {found}"
    )]
    SequenceGap {
        dir: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("WAL segment {0} is locked by another writer")]
    Locked(PathBuf),
    #[error("corrupt WAL record in {file} at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: Corruption,
    },
    #[error("metadata in {file} at offset {offset} differs from earlier metadata")]
    MetadataConflict { file: PathBuf, offset: u64 },
    #[error(
        "entry {index} in {file} at offset {offset} leaves a gap after the entries read so far"
    )]
    EntryGap {
        file: PathBuf,
        offset: u64,
        index: u64,
    },
    #[error("snapshot marker at index {index} has term {found} in the WAL, not {expected}")]
    SnapshotMismatch {
        index: u64,
        expected: u64,
        found: u64,
    },
    #[error("snapshot marker (index {index}, term {term}) is not in the WAL")]
    SnapshotNotFound { index: u64, term: u64 },
    #[error("invalid raft entry: {0}")]
    InvalidEntry(#[from] prost::DecodeError),
    #[error("invalid raft entry: entry has no index")]
    EntryWithoutIndex,
    #[error("entries to save are not contiguous: index {found} where at most {max_expected} was allowed")]
    NonContiguous { found: u64, max_expected: u64 },
    #[error("entry {index} is {len} bytes, more than a WAL record may hold")]
    EntryTooLarge { index: u64, len: usize },
    #[error("the WAL stopped accepting writes after an earlier I/O failure")]
    Poisoned,
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
