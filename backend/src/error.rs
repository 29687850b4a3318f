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
    CorruptSnapshot(String),
    #[error("backend is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn engine_err(e: impl Into<redb::Error>) -> Error {
    Error::Engine(e.into())
}
