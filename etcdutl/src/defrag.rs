//! `etcdutl defrag --data-dir`: compacts a stopped member's database file in place.

use std::path::Path;

use backend::{Backend, BackendConfig};

#[derive(Debug, thiserror::Error)]
pub enum DefragError {
    #[error(transparent)]
    Open(#[from] crate::snapshot::OpenError),
    #[error("{0}")]
    Backend(#[from] backend::Error),
}

/// Defragments `<data_dir>/member/snap/db`. The file must exist: a missing one is not created.
pub fn defrag(data_dir: &Path) -> Result<(), DefragError> {
    let db = backend_path(data_dir);
    std::fs::metadata(&db).map_err(|e| crate::snapshot::OpenError::new("open", &db, e))?;
    let backend = Backend::open(&db, BackendConfig::default(), &etcdserver::restore::TABLES)?;
    let before = backend.size()?;
    backend.defragment()?;
    let after = backend.size()?;
    backend.close()?;
    tracing::info!(path = %db.display(), before, after, "defragmented");
    Ok(())
}

/// `<data-dir>/member/snap/db`, the member's backend (etcd's `datadir.ToBackendFileName`).
pub(crate) fn backend_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("member").join("snap").join("db")
}
