use std::collections::BTreeMap;

use crate::{Result, Table};

/// The changes to one table, in key order: `Some(value)` to write, `None` to delete.
pub type TableChanges = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

static NO_CHANGES: TableChanges = BTreeMap::new();

/// Changes to apply atomically, per table. Keys and values are moved in, never copied.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    tables: BTreeMap<Table, TableChanges>,
    writes: usize,
}

impl Batch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.tables
            .entry(table)
            .or_default()
            .insert(key, Some(value));
        self.writes += 1;
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.tables.entry(table).or_default().insert(key, None);
        self.writes += 1;
    }

    /// Number of put/delete calls since the batch was created (not of distinct keys).
    pub fn writes(&self) -> usize {
        self.writes
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(BTreeMap::is_empty)
    }

    /// The changes to one table, in key order.
    pub fn table(&self, table: Table) -> &TableChanges {
        self.tables.get(&table).unwrap_or(&NO_CHANGES)
    }

    /// Every table with changes, with its changes.
    pub fn tables(&self) -> impl Iterator<Item = (Table, &TableChanges)> {
        self.tables.iter().map(|(t, changes)| (*t, changes))
    }

    /// The changes, table by table, moved out.
    pub fn into_tables(self) -> impl Iterator<Item = (Table, TableChanges)> {
        self.tables.into_iter()
    }

    /// Moves `newer` on top of `self`: keys written in both keep `newer`'s change.
    pub(crate) fn absorb(&mut self, newer: Batch) {
        for (table, theirs) in newer.tables {
            self.tables.entry(table).or_default().extend(theirs);
        }
        self.writes += newer.writes;
    }
}

/// A storage engine: durable atomic commits and consistent read snapshots.
///
/// The [`crate::Backend`] does the batching and buffering; an engine only needs to apply a
/// [`Batch`] atomically and durably and to hand out snapshots of committed state.
pub trait Engine: Send + Sync {
    /// Applies `batch` atomically; once this returns, the batch survives a crash.
    fn commit(&self, batch: &Batch) -> Result<()>;
    /// A consistent view of everything committed so far.
    fn view(&self) -> Result<Box<dyn EngineView>>;
    /// Bytes the engine occupies on its medium.
    fn size(&self) -> Result<u64>;
    /// Bytes holding live data (the rest is free space a defragment can return).
    fn size_in_use(&self) -> Result<u64>;
    /// Returns free space to the medium. Fails with [`crate::Error::SnapshotInUse`] while a
    /// view is alive.
    fn defragment(&self) -> Result<()>;
}

/// A read-only snapshot of committed state.
pub trait EngineView: Send + Sync {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Visits `[start, end)` (`end == None`: to the last key) in key order until `visit`
    /// returns false.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
}
