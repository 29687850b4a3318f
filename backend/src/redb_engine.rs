use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::RwLock;
use redb::{
    CompactionError, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    TableDefinition, TableError,
};

use crate::error::engine_err;
use crate::{Batch, Engine, EngineView, Error, Result, Table};

type RedbTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// The on-disk engine: one redb database file.
pub struct RedbEngine {
    path: PathBuf,
    tables: &'static [Table],
    // Compaction needs `&mut Database`; commits and views share it.
    db: RwLock<Database>,
}

impl RedbEngine {
    /// Opens (creating when missing) the database at `path` and makes sure each of `tables`
    /// exists.
    pub fn open(path: impl AsRef<Path>, tables: &'static [Table]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(engine_err)?;
        let txn = db.begin_write().map_err(engine_err)?;
        for &table in tables {
            txn.open_table(definition(table)).map_err(engine_err)?;
        }
        txn.commit().map_err(engine_err)?;
        Ok(Self {
            path,
            tables,
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
            .map_err(engine_err)?;
        for (table, changes) in batch.tables() {
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
            schema: self.tables,
            tables: self.tables.iter().map(|_| OnceLock::new()).collect(),
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
    schema: &'static [Table],
    // Opening a table costs a lookup in redb's table tree; do it once per view. `None`: the
    // table does not exist in this database, which reads as empty.
    tables: Box<[OnceLock<Option<RedbTable>>]>,
}

impl RedbView {
    fn open(&self, table: Table) -> Result<Option<RedbTable>> {
        match self.txn.open_table(definition(table)) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(engine_err(e)),
        }
    }

    /// Runs `read` on the table, or returns `absent` when the database has no such table.
    fn with_table<R>(
        &self,
        table: Table,
        absent: R,
        read: impl FnOnce(&RedbTable) -> Result<R>,
    ) -> Result<R> {
        let Some(slot) = self
            .schema
            .iter()
            .position(|t| *t == table)
            .map(|i| &self.tables[i])
        else {
            return match self.open(table)? {
                Some(t) => read(&t),
                None => Ok(absent),
            };
        };
        let opened = match slot.get() {
            Some(t) => t,
            None => {
                let opened = self.open(table)?;
                slot.get_or_init(|| opened)
            }
        };
        match opened {
            Some(t) => read(t),
            None => Ok(absent),
        }
    }
}

impl EngineView for RedbView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_table(table, None, |t| {
            Ok(t.get(key).map_err(engine_err)?.map(|v| v.value().to_vec()))
        })
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.with_table(table, (), |t| {
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
        })
    }
}
