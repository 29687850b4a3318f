//! In-process test support: a [`ServerCore`] that applies each proposal at once on a store in
//! a temporary directory (one member, its own leader); `crate::TestServer` serves the gRPC
//! services over it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::InternalRaftRequest;
use parking_lot::Mutex;

use crate::core::{Applied, Limits, ServerCore};
use crate::error::ServerError;
use crate::server::apply::KvApplier;
use crate::server::apply_auth::{is_auth_request, AuthApplier};

pub const CLUSTER_ID: u64 = 0xc1;
pub const MEMBER_ID: u64 = 0x1d;
pub const TERM: u64 = 2;

/// A single member that applies proposals as they come, in order.
pub struct DirectCore {
    applier: KvApplier,
    auth: Arc<auth::AuthStore>,
    auth_applier: AuthApplier,
    /// The last raft index handed out; held while applying so entries apply in index order.
    last_index: Mutex<u64>,
    has_leader: AtomicBool,
    read_barriers: AtomicU64,
    limits: Limits,
    // Dropped after the store (fields drop in order), which closes the database first.
    _dir: tempfile::TempDir,
}

impl DirectCore {
    pub fn new(limits: Limits) -> std::io::Result<Arc<Self>> {
        Self::with_lease_check(limits, |_| false)
    }

    /// `lease_exists` answers for the leases a put names.
    pub fn with_lease_check(
        limits: Limits,
        lease_exists: impl Fn(i64) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let dir = tempfile::tempdir()?;
        let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let backend = backend::Backend::open(
            dir.path().join("db"),
            Default::default(),
            &crate::server::schema::TABLES,
        )
        .map_err(|e| io(&e))?;
        let config = mvcc::StoreConfig {
            watch_sync_interval: Duration::from_millis(10),
            compaction_batch_limit: 100,
            compaction_batch_pause: Duration::ZERO,
            ..Default::default()
        };
        let store = mvcc::Store::open(Arc::new(backend), config).map_err(|e| io(&e))?;
        // bcrypt's lowest cost: the tests hash many passwords.
        let auth = Arc::new(auth::AuthStore::new(
            auth::TokenOptions::Simple {
                ttl: Duration::from_secs(300),
            },
            4,
        ));
        auth.recover(store.backend()).map_err(|e| io(&e))?;
        Ok(Arc::new(Self {
            applier: KvApplier::with_lease_check(Arc::new(store), lease_exists)
                .with_auth(auth.clone()),
            auth_applier: AuthApplier::new(auth.clone()),
            auth,
            last_index: Mutex::new(0),
            has_leader: AtomicBool::new(true),
            read_barriers: AtomicU64::new(0),
            limits,
            _dir: dir,
        }))
    }

    /// Whether this member knows a leader (it is its own); proposals still apply without one.
    pub fn set_leader(&self, has_leader: bool) {
        self.has_leader.store(has_leader, Ordering::SeqCst);
    }

    /// Runs `f` as the next raft entry, straight on the store (no request to convert).
    pub fn apply_direct<R>(&self, f: impl FnOnce(&mut mvcc::WriteTxn<'_>) -> R) -> R {
        let mut last = self.last_index.lock();
        *last += 1;
        self.store()
            .apply(*last, TERM, f)
            .expect("the store is only written through this core")
    }

    /// How many linearizable read barriers were asked for.
    pub fn read_barriers(&self) -> u64 {
        self.read_barriers.load(Ordering::SeqCst)
    }
}

impl ServerCore for DirectCore {
    fn store(&self) -> &Arc<mvcc::Store> {
        self.applier.store()
    }

    fn cluster_id(&self) -> u64 {
        CLUSTER_ID
    }

    fn member_id(&self) -> u64 {
        MEMBER_ID
    }

    fn term(&self) -> u64 {
        TERM
    }

    fn leader_id(&self) -> Option<u64> {
        self.has_leader.load(Ordering::SeqCst).then_some(MEMBER_ID)
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn auth_store(&self) -> &Arc<auth::AuthStore> {
        &self.auth
    }

    async fn propose(&self, req: InternalRaftRequest) -> Result<Applied, ServerError> {
        let mut last = self.last_index.lock();
        *last += 1;
        if is_auth_request(&req) {
            return match self.auth_applier.apply(self.store(), *last, TERM, req) {
                Some(applied) => applied.map_err(ServerError::from),
                None => Err(ServerError::Internal("entry applied twice".into())),
            };
        }
        match self.applier.apply(*last, TERM, req) {
            Some(applied) => applied.map_err(ServerError::from),
            None => Err(ServerError::Internal("entry applied twice".into())),
        }
    }

    async fn read_barrier(&self) -> Result<(), ServerError> {
        self.read_barriers.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Every proposal is applied before `propose` returns.
    async fn wait_applied(&self, _index: u64) -> Result<(), ServerError> {
        Ok(())
    }
}
