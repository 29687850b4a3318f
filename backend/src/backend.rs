use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::snapshot::write_snapshot;
use crate::{Batch, Engine, EngineView, MemoryEngine, RedbEngine, Result, SnapshotInfo, Table};

/// When the pending batch is committed.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Commit whatever is pending at least this often (etcd: `--backend-batch-interval`, 100 ms).
    pub batch_interval: Duration,
    /// Commit as soon as this many writes are pending (etcd: `--backend-batch-limit`, 10 000).
    pub batch_limit: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
        }
    }
}

struct Buffers {
    pending: Batch,
    /// The batch being committed right now: no longer pending, not yet in `view`.
    in_flight: Option<Arc<Batch>>,
    /// Everything committed so far.
    view: Arc<dyn EngineView>,
}

struct Shared {
    engine: Box<dyn Engine>,
    /// Every table, in the order hashes and snapshots visit them.
    tables: &'static [Table],
    config: BackendConfig,
    /// Held by the single [`BatchTx`]; a commit takes it to cut the pending batch, so a commit
    /// never splits the writes of one `BatchTx`.
    batch: Mutex<()>,
    /// Serializes commits, so at most one batch is in flight.
    commit: Mutex<()>,
    buffers: RwLock<Buffers>,
    commits: AtomicU64,
}

/// Batched, buffered access to an [`Engine`]. Share it with `Arc<Backend>`.
pub struct Backend {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    committer: Option<JoinHandle<()>>,
}

impl Backend {
    /// Wraps `engine`, which holds `tables` (see [`Table`] on their order), and starts the
    /// committer thread (stopped by [`Backend::close`] or drop).
    pub fn new(
        engine: Box<dyn Engine>,
        config: BackendConfig,
        tables: &'static [Table],
    ) -> Result<Self> {
        let view: Arc<dyn EngineView> = Arc::from(engine.view()?);
        let shared = Arc::new(Shared {
            engine,
            tables,
            config,
            batch: Mutex::new(()),
            commit: Mutex::new(()),
            buffers: RwLock::new(Buffers {
                pending: Batch::default(),
                in_flight: None,
                view,
            }),
            commits: AtomicU64::new(0),
        });
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let committer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("backend-commit".into())
                .spawn(move || loop {
                    match stopped.recv_timeout(shared.config.batch_interval) {
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = shared.commit() {
                                tracing::error!(error = %e, "periodic backend commit failed");
                            }
                        }
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                })?
        };
        Ok(Self {
            shared,
            stop: Some(stop),
            committer: Some(committer),
        })
    }

    /// Opens the redb database file at `path`.
    pub fn open(
        path: impl AsRef<Path>,
        config: BackendConfig,
        tables: &'static [Table],
    ) -> Result<Self> {
        Self::new(Box::new(RedbEngine::open(path, tables)?), config, tables)
    }

    /// A backend that forgets everything when dropped.
    pub fn in_memory(config: BackendConfig, tables: &'static [Table]) -> Result<Self> {
        Self::new(Box::new(MemoryEngine::new()), config, tables)
    }

    /// Every table of this backend, in the order hashes and snapshots visit them.
    pub fn tables(&self) -> &'static [Table] {
        self.shared.tables
    }

    /// Starts the (single) write transaction; waits while another one is alive.
    ///
    /// Do not hold a [`ReadTx`] of this backend while writing through it.
    pub fn batch_tx(&self) -> BatchTx<'_> {
        BatchTx {
            shared: &self.shared,
            guard: Some(self.shared.batch.lock()),
        }
    }

    /// A read view of every write made so far, committed or not. Hold it briefly: writers wait
    /// for it when they touch the buffers.
    pub fn read(&self) -> ReadTx<'_> {
        ReadTx {
            buffers: self.shared.buffers.read(),
        }
    }

    /// Commits everything written so far; when this returns it survives a crash.
    pub fn force_commit(&self) -> Result<()> {
        self.shared.commit()
    }

    /// Number of engine commits so far.
    pub fn commit_count(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Bytes the database occupies on disk.
    pub fn size(&self) -> Result<u64> {
        self.shared.engine.size()
    }

    /// Bytes of the database holding live data.
    pub fn size_in_use(&self) -> Result<u64> {
        self.shared.engine.size_in_use()
    }

    /// Commits, then returns free space to the file system. Readers and writers wait meanwhile.
    pub fn defragment(&self) -> Result<()> {
        let shared = &self.shared;
        let _commit = shared.commit.lock();
        let _batch = shared.batch.lock();
        let mut buffers = shared.buffers.write();
        if !buffers.pending.is_empty() {
            shared.engine.commit(&buffers.pending)?;
            buffers.pending = Batch::default();
            shared.commits.fetch_add(1, Ordering::Relaxed);
        }
        // Our own snapshot would keep the engine from moving pages.
        buffers.view = Arc::new(NoView);
        let before = shared.engine.size().ok();
        let result = shared.engine.defragment();
        buffers.view = Arc::from(shared.engine.view()?);
        tracing::info!(?before, after = ?shared.engine.size().ok(), ok = result.is_ok(), "defragmented backend");
        result
    }

    /// Replaces every table's contents with `source`'s (e.g. a received snapshot restored with
    /// [`crate::restore_snapshot`] and opened as a backend) in one engine commit, so a crash
    /// leaves either the old or the new contents. Readers and writers wait meanwhile; the whole
    /// difference is held in memory.
    pub fn replace_contents(&self, source: &dyn EngineView) -> Result<()> {
        let shared = &self.shared;
        let _commit = shared.commit.lock();
        let _batch = shared.batch.lock();
        let mut buffers = shared.buffers.write();
        let mut batch = Batch::default();
        for &table in shared.tables {
            buffers.view.scan(table, &[], None, &mut |k, _| {
                batch.delete(table, k.to_vec());
                true
            })?;
            for k in buffers.pending.table(table).keys() {
                batch.delete(table, k.clone());
            }
            source.scan(table, &[], None, &mut |k, v| {
                batch.put(table, k.to_vec(), v.to_vec());
                true
            })?;
        }
        shared.engine.commit(&batch)?;
        buffers.view = Arc::from(shared.engine.view()?);
        buffers.pending = Batch::default();
        shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// crc32c over every table's name, then its keys and values in key order, of the
    /// committed state (everything pending is committed first), leaving out the `ignored`
    /// keys (etcd's `schema.DefaultIgnores`: keys that differ between members holding the
    /// same data).
    pub fn hash(&self, ignored: &[(Table, &[u8])]) -> Result<u32> {
        let view = self.committed_view()?;
        let mut crc = 0u32;
        for &table in self.shared.tables {
            crc = crc32c::crc32c_append(crc, table.name().as_bytes());
            view.scan(table, &[], None, &mut |k, v| {
                if ignored.contains(&(table, k)) {
                    return true;
                }
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, v);
                true
            })?;
        }
        Ok(crc)
    }

    /// Streams a consistent copy of every table to `out` (see [`crate::restore_snapshot`]).
    /// Writers keep going meanwhile; the copy holds what was written before the call.
    pub fn snapshot_to(&self, out: &mut dyn Write) -> Result<SnapshotInfo> {
        let view = self.committed_view()?;
        write_snapshot(view.as_ref(), self.shared.tables, out)
    }

    /// Commits what is pending and returns a snapshot of it that lives outside the buffer lock.
    pub fn committed_view(&self) -> Result<Arc<dyn EngineView>> {
        let _commit = self.shared.commit.lock();
        self.shared.commit_locked()?;
        Ok(self.shared.buffers.read().view.clone())
    }

    /// Stops the committer thread and commits what is pending.
    pub fn close(mut self) -> Result<()> {
        self.stop_committer();
        self.shared.commit()
    }

    fn stop_committer(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.committer.take() {
            if handle.join().is_err() {
                tracing::error!("backend committer thread panicked");
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.committer.is_some() {
            self.stop_committer();
            if let Err(e) = self.shared.commit() {
                tracing::error!(error = %e, "final backend commit failed");
            }
        }
    }
}

impl Shared {
    fn commit(&self) -> Result<()> {
        let _commit = self.commit.lock();
        self.commit_locked()
    }

    /// Caller holds `self.commit`.
    fn commit_locked(&self) -> Result<()> {
        let batch = {
            let _batch = self.batch.lock();
            let mut buffers = self.buffers.write();
            if buffers.pending.is_empty() {
                return Ok(());
            }
            let batch = Arc::new(std::mem::take(&mut buffers.pending));
            buffers.in_flight = Some(batch.clone());
            batch
        };
        // No buffer lock is held here: writers fill the next batch and readers keep reading
        // while the engine syncs.
        let result = self.engine.commit(&batch).and_then(|()| self.engine.view());
        let mut buffers = self.buffers.write();
        buffers.in_flight = None;
        match result {
            Ok(view) => {
                buffers.view = Arc::from(view);
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Keep the writes visible and retry them with the next commit.
                let mut restored =
                    Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                restored.absorb(std::mem::take(&mut buffers.pending));
                buffers.pending = restored;
                Err(e)
            }
        }
    }
}

/// The write transaction: changes become visible to readers at once and durable at the next
/// commit, all of them in the same commit.
pub struct BatchTx<'a> {
    shared: &'a Shared,
    guard: Option<MutexGuard<'a, ()>>,
}

impl BatchTx<'_> {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.debug_assert_known(table);
        self.shared.buffers.write().pending.put(table, key, value);
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.debug_assert_known(table);
        self.shared.buffers.write().pending.delete(table, key);
    }

    fn debug_assert_known(&self, table: Table) {
        debug_assert!(
            self.shared.tables.contains(&table),
            "table {} was not declared when the backend was opened",
            table.name()
        );
    }
}

impl Drop for BatchTx<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let pending = self.shared.buffers.read().pending.writes();
        if pending >= self.shared.config.batch_limit {
            if let Err(e) = self.shared.commit() {
                tracing::error!(error = %e, "backend commit at batch limit failed");
            }
        }
    }
}

/// A read view: pending and in-flight writes over the committed snapshot.
pub struct ReadTx<'a> {
    buffers: RwLockReadGuard<'a, Buffers>,
}

impl ReadTx<'_> {
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(change) = self.buffers.pending.table(table).get(key) {
            return Ok(change.clone());
        }
        if let Some(in_flight) = &self.buffers.in_flight {
            if let Some(change) = in_flight.table(table).get(key) {
                return Ok(change.clone());
            }
        }
        self.buffers.view.get(table, key)
    }

    /// Visits `[start, end)` (`end == None`: to the last key) in key order until `visit`
    /// returns false.
    pub fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let bounds = (
            Bound::Included(start),
            end.map_or(Bound::Unbounded, Bound::Excluded),
        );
        let mut overlay: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        if let Some(in_flight) = &self.buffers.in_flight {
            for (k, v) in in_flight.table(table).range::<[u8], _>(bounds) {
                overlay.insert(k, v.as_deref());
            }
        }
        for (k, v) in self.buffers.pending.table(table).range::<[u8], _>(bounds) {
            overlay.insert(k, v.as_deref());
        }
        let mut overlay = overlay.into_iter().peekable();
        let mut stopped = false;
        self.buffers.view.scan(table, start, end, &mut |k, v| {
            while let Some(&(ok, ov)) = overlay.peek() {
                if ok > k {
                    break;
                }
                overlay.next();
                if ok == k {
                    // The buffered change replaces the committed value.
                    return match ov {
                        Some(ov) => {
                            stopped = !visit(k, ov);
                            !stopped
                        }
                        None => true,
                    };
                }
                if let Some(ov) = ov {
                    if !visit(ok, ov) {
                        stopped = true;
                        return false;
                    }
                }
            }
            stopped = !visit(k, v);
            !stopped
        })?;
        if !stopped {
            for (k, v) in overlay {
                if let Some(v) = v {
                    if !visit(k, v) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Stands in for the committed view while a defragment needs every snapshot released.
struct NoView;

impl EngineView for NoView {
    fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>> {
        Err(crate::Error::Closed)
    }

    fn scan(
        &self,
        _: Table,
        _: &[u8],
        _: Option<&[u8]>,
        _: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        Err(crate::Error::Closed)
    }
}
