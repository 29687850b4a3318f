//! Database snapshots a member receives from its leader: swapping one in for the store, at
//! start-up (after a crash between receiving and applying it) or as raft hands it over.

/// Replaces the store's contents with the database file at `path` (a snapshot received from the
/// leader).
pub(crate) fn restore_store_from<E>(store: &mvcc::Store, path: &std::path::Path) -> Result<(), E>
where
    E: From<backend::Error> + From<mvcc::Error>,
{
    let engine = backend::RedbEngine::open(path, &crate::server::schema::TABLES)?;
    let view = backend::Engine::view(&engine)?;
    store.restore(view.as_ref())?;
    store.commit()?;
    Ok(())
}
