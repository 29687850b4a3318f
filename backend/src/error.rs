use std::io;

/// Errors of the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage engine: {0}")]
    Engine(#[from] redb::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("defragment refused: a read snapshot is still open")]
    SnapshotInUse,
    #[error("backend snapshot is corrupt: {0}")]
    CorruptSnapshot(SnapshotCorruption),
    #[error("backend is closed")]
    Closed,
}

/// What is wrong with a snapshot stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotCorruption {
    #[error("truncated")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unknown table {0}")]
    UnknownTable(u8),
    #[error("entry count mismatch")]
    EntryCount,
    #[error("checksum mismatch")]
    Checksum,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn engine_err(e: impl Into<redb::Error>) -> Error {
    Error::Engine(e.into())
}
