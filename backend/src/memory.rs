use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{Batch, Engine, EngineView, Result, Table};

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// An engine that keeps everything in memory, for tests.
///
/// Views are `Arc`s of immutable tables; a commit while a view is alive copies the tables
/// (copy-on-write), which is fine at test sizes and would not be at production sizes.
#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<Arc<Tables>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn commit(&self, batch: &Batch) -> Result<()> {
        let mut guard = self.tables.write();
        let tables = Arc::make_mut(&mut guard);
        for (table, changes) in batch.tables() {
            let t = tables.entry(table).or_default();
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(k.clone(), v.clone());
                    }
                    None => {
                        t.remove(k);
                    }
                }
            }
        }
        Ok(())
    }

    fn view(&self) -> Result<Box<dyn EngineView>> {
        Ok(Box::new(MemoryView(self.tables.read().clone())))
    }

    fn size(&self) -> Result<u64> {
        self.size_in_use()
    }

    fn size_in_use(&self) -> Result<u64> {
        let tables = self.tables.read();
        Ok(tables
            .values()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }

    fn defragment(&self) -> Result<()> {
        Ok(())
    }
}

struct MemoryView(Arc<Tables>);

impl EngineView for MemoryView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let Some(t) = self.0.get(&table) else {
            return Ok(());
        };
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in t.range::<[u8], _>((Bound::Included(start), upper)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}
