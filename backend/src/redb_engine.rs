use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::RwLock;
use redb::{
    CompactionError, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    TableDefinition,
};

use crate::error::engine_err;
use crate::{Batch, Engine, EngineView, Error, Result, Table};

fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// The on-disk engine: one redb database file.
pub struct RedbEngine {
    path: PathBuf,
    // Compaction needs `&mut Database`; commits and views share it.
    db: RwLock<Database>,
}

impl RedbEngine {
    /// Opens (creating when missing) the database at `path` and makes sure every table exists.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(engine_err)?;
        let txn = db.begin_write().map_err(engine_err)?;
        for table in Table::ALL {
            txn.open_table(definition(table)).map_err(engine_err)?;
        }
        txn.commit().map_err(engine_err)?;
        Ok(Self {
            path,
            db: RwLock::new(db),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Engine for RedbEngine {
    fn commit(&self, batch: &Batch) -> Result<()> {
        let db = self.db.read();
        let mut txn = db.begin_write().map_err(engine_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        for table in Table::ALL {
            let changes = batch.table(table);
            if changes.is_empty() {
                continue;
            }
            let mut t = txn.open_table(definition(table)).map_err(engine_err)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(engine_err)?;
                    }
                    None => {
                        t.remove(k.as_slice()).map_err(engine_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(engine_err)
    }

    fn view(&self) -> Result<Box<dyn EngineView>> {
        let txn = self.db.read().begin_read().map_err(engine_err)?;
        Ok(Box::new(RedbView {
            txn,
            tables: Default::default(),
        }))
    }

    fn size(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    fn size_in_use(&self) -> Result<u64> {
        let db = self.db.read();
        let txn = db.begin_write().map_err(engine_err)?;
        let stats = txn.stats().map_err(engine_err)?;
        txn.abort().map_err(engine_err)?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    fn defragment(&self) -> Result<()> {
        let mut db = self.db.write();
        loop {
            match db.compact() {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(CompactionError::TransactionInProgress) => return Err(Error::SnapshotInUse),
                Err(e) => return Err(engine_err(e)),
            }
        }
    }
}

struct RedbView {
    txn: ReadTransaction,
    // Opening a table costs a lookup in redb's table tree; do it once per view.
    tables: [OnceLock<ReadOnlyTable<&'static [u8], &'static [u8]>>; Table::ALL.len()],
}

impl RedbView {
    fn table(&self, table: Table) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let slot = &self.tables[table.index()];
        if let Some(t) = slot.get() {
            return Ok(t);
        }
        let opened = self.txn.open_table(definition(table)).map_err(engine_err)?;
        Ok(slot.get_or_init(|| opened))
    }
}

impl EngineView for RedbView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.table(table)?;
        Ok(t.get(key).map_err(engine_err)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let t = self.table(table)?;
        let iter = match end {
            Some(end) => t.range::<&[u8]>(start..end),
            None => t.range::<&[u8]>(start..),
        }
        .map_err(engine_err)?;
        for entry in iter {
            let (k, v) = entry.map_err(engine_err)?;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }
}
