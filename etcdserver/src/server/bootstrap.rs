//! Opening a member's data dir (etcd's `bootstrap.go`): the backend and the mvcc store, then
//! either the WAL and snapshots of a restart, a new cluster's first WAL from the flags, or a
//! join of a running cluster whose members tell this one its ids; then the raft node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendConfig};
use bytes::Bytes;
use raft::{Config as RaftConfig, MemoryStorage, Peer, RawNode};

use super::join::{self, JoinError, RemoteCluster};
use super::membership::{cluster_id, Member, Membership, MembershipError};
use super::snapshot::restore_store_from;
use super::storage::{Dirs, DiskStorage, StorageError, WalMetadata};
use crate::core::Limits;
use lease::Lessor;

use super::lease_store::{LeaseStoreError, StoreLeases};

/// Everything the server core needs to start a member.
#[derive(Debug, Clone)]
pub struct ServerParams {
    pub name: String,
    pub data_dir: PathBuf,
    /// This member's advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// This member's advertised client URLs.
    pub client_urls: Vec<String>,
    /// `--initial-cluster`: every founding member's name and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state new`.
    pub new_cluster: bool,
    pub token: String,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catch_up_entries: u64,
    /// The corruption checks (`--experimental-*corrupt-check*`, `--experimental-compact-hash-check-*`).
    pub corrupt_check: crate::config::CorruptCheckConfig,
    pub limits: Limits,
    pub auto_compaction: Option<crate::config::AutoCompaction>,
    /// How often the leader checkpoints long leases' remaining TTLs; None: never.
    pub lease_checkpoint_interval: Option<Duration>,
    /// `--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`.
    pub auth: crate::config::AuthConfig,
    // quota
    /// `--quota-backend-bytes` as resolved: 0 given means 2 GiB, `u64::MAX` no quota.
    pub quota_backend_bytes: u64,
    // downgrade
    /// `--experimental-downgrade-check-time`; None (0) turns the leader's check off.
    pub downgrade_check_time: Option<Duration>,
    /// Tests only: the apply thread sleeps this long before each request (hidden
    /// `--test-only-apply-delay`), to build etcd's apply backlog.
    pub test_only_apply_delay: Option<Duration>,
}

impl ServerParams {
    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the backend is at index {backend_index}, behind snapshot {snapshot_index}, and its database is missing: {source}")]
    SnapshotDbMissing {
        backend_index: u64,
        snapshot_index: u64,
        source: snap::Error,
    },
    #[error("data dir {} belongs to member {member:x} of cluster {cluster:x}, but --name, --initial-cluster and --initial-cluster-token describe member {flag_member:x} of cluster {flag_cluster:x}; give this member its own data dir", data_dir.display())]
    DataDirMismatch {
        data_dir: PathBuf,
        member: u64,
        cluster: u64,
        flag_member: u64,
        flag_cluster: u64,
    },
    /// `--auth-token` names no usable token provider: etcd's one message whatever the cause
    /// (a malformed value, an unknown sign method, an unreadable key file), which is logged.
    #[error("auth: invalid auth options")]
    TokenProvider(#[source] auth::AuthError),
    /// The auth state in the backend cannot be read.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("couldn't find local name {name:?} with peer URLs {peer_urls:?} in the initial cluster configuration")]
    NotInInitialCluster {
        name: String,
        peer_urls: Vec<String>,
    },
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("the member has been permanently removed from the cluster (member {0:x})")]
    Removed(u64),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("{0}")]
    Leases(#[from] LeaseStoreError),
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the data dir: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot open the backend: {0}")]
    Backend(#[from] backend::Error),
    #[error("cannot open the mvcc store: {0}")]
    Mvcc(#[from] mvcc::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("snap: {0}")]
    Snap(#[from] snap::Error),
    /// `--experimental-initial-corrupt-check` found this member's data diverged (or could not
    /// hash it).
    #[error(transparent)]
    Corrupt(#[from] super::corrupt::CorruptCheckError),
    // downgrade
    #[error("cannot read the cluster version: {0}")]
    Versions(#[from] super::version::VersionsError),
    #[error(transparent)]
    Downgrade(#[from] super::version::DowngradeCheckError),
}

/// A member's state as found on (or first written to) disk.
pub(crate) struct Bootstrapped {
    pub(super) snapshotter: snap::Snapshotter,
    pub(super) store: Arc<mvcc::Store>,
    pub(super) storage: DiskStorage,
    pub(super) member_id: u64,
    pub(super) cluster_id: u64,
    /// The last raft snapshot (empty for a new member).
    pub(super) snapshot: raftpb::Snapshot,
    /// A new cluster's founding members, for raft's bootstrap (empty otherwise).
    pub(super) bootstrap_peers: Vec<Peer>,
    /// A joining member's view of the running cluster, to reach its peers at once.
    pub(super) remote_members: Option<Vec<Member>>,
    pub(super) membership: Membership,
    pub(super) lessor: Arc<Lessor>,
}

/// Opens or creates the member's data dir as `params` describe it.
pub(crate) fn open(
    params: &ServerParams,
    dialer: &rafthttp::Dialer,
) -> Result<Bootstrapped, StartError> {
    let dirs = Dirs::new(&params.data_dir);
    std::fs::create_dir_all(&dirs.snap).map_err(|source| StartError::CreateDir {
        path: dirs.snap.clone(),
        source,
    })?;
    let restarting = DiskStorage::exists(&dirs);
    // Joining a running cluster: its members tell us the cluster id and our member id.
    let joining = if !restarting && !params.new_cluster {
        Some(join_existing(params, dialer)?)
    } else {
        None
    };

    let backend = Arc::new(Backend::open(
        &dirs.db,
        BackendConfig::default(),
        &crate::server::schema::TABLES,
    )?);
    let store = Arc::new(mvcc::Store::open(
        backend.clone(),
        mvcc::StoreConfig::default(),
    )?);

    let (storage, member_id, cluster_id, snapshot, bootstrap_peers) = if restarting {
        let rec = DiskStorage::open(&dirs)?;
        let (ci, _) = store.consistent_index();
        if rec.snapshot.index() > ci {
            // A snapshot's database was received but not yet swapped in before a crash.
            let db = rec
                .storage
                .snapshotter
                .db_path(rec.snapshot.index())
                .map_err(|source| StartError::SnapshotDbMissing {
                    backend_index: ci,
                    snapshot_index: rec.snapshot.index(),
                    source,
                })?;
            restore_store_from::<StartError>(&store, &db)?;
        }
        if params.new_cluster {
            if let Ok((_, me, cid)) = identity_from_flags(params) {
                // Only when both differ: a member whose cluster changed at runtime still
                // matches by its own id, and one whose URLs changed by its cluster's.
                if me != rec.metadata.node_id && cid != rec.metadata.cluster_id {
                    return Err(StartError::DataDirMismatch {
                        data_dir: params.data_dir.clone(),
                        member: rec.metadata.node_id,
                        cluster: rec.metadata.cluster_id,
                        flag_member: me,
                        flag_cluster: cid,
                    });
                }
            }
        }
        tracing::info!(
            member = format!("{:x}", rec.metadata.node_id),
            cluster = format!("{:x}", rec.metadata.cluster_id),
            snapshot = rec.snapshot.index(),
            "restarting member from its data dir"
        );
        (
            rec.storage,
            rec.metadata.node_id,
            rec.metadata.cluster_id,
            rec.snapshot,
            Vec::new(),
        )
    } else if let Some((remote, me)) = &joining {
        let storage = DiskStorage::create(
            &dirs,
            &WalMetadata {
                node_id: *me,
                cluster_id: remote.cluster_id,
            },
        )?;
        tracing::info!(
            member = format!("{me:x}"),
            cluster = format!("{:x}", remote.cluster_id),
            "joining an existing cluster; catching up from its leader"
        );
        (
            storage,
            *me,
            remote.cluster_id,
            raftpb::Snapshot::default(),
            Vec::new(),
        )
    } else {
        let (members, me, cid) = identity_from_flags(params)?;
        let storage = DiskStorage::create(
            &dirs,
            &WalMetadata {
                node_id: me,
                cluster_id: cid,
            },
        )?;
        let peers = members
            .iter()
            .map(|m| Peer {
                id: m.id,
                context: Bytes::from(serde_json::to_vec(m).expect("member serializes")),
            })
            .collect::<Vec<_>>();
        tracing::info!(
            member = format!("{me:x}"),
            cluster = format!("{cid:x}"),
            "starting a new member of a new cluster"
        );
        (storage, me, cid, raftpb::Snapshot::default(), peers)
    };

    let membership = Membership::load(&backend)?;
    let lessor = Arc::new(Lessor::new(
        Lessor::min_ttl_for(params.election_timeout),
        params.lease_checkpoint_interval,
    ));
    lessor.recover(&StoreLeases(&store))?;
    if membership.removed.contains(&member_id) {
        return Err(StartError::Removed(member_id));
    }
    Ok(Bootstrapped {
        snapshotter: snap::Snapshotter::new(&dirs.snap)?,
        store,
        storage,
        member_id,
        cluster_id,
        snapshot,
        bootstrap_peers,
        remote_members: joining.map(|(remote, _)| remote.members),
        membership,
        lessor,
    })
}

/// The raft node of a bootstrapped member, configured as etcd configures it.
pub(crate) fn raft_node(
    params: &ServerParams,
    boot: &Bootstrapped,
) -> Result<RawNode<MemoryStorage>, StartError> {
    let heartbeat_ms = params.heartbeat.as_millis().max(1) as u64;
    let config = RaftConfig {
        id: boot.member_id,
        election_tick: (params.election_timeout.as_millis() as u64 / heartbeat_ms).max(2) as usize,
        heartbeat_tick: 1,
        applied: boot.snapshot.index(),
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 4096 / 8,
        max_uncommitted_entries_size: 1 << 30,
        check_quorum: true,
        pre_vote: true,
        ..RaftConfig::default()
    };
    let mut node = RawNode::new(&config, boot.storage.mem.clone())?;
    if !boot.bootstrap_peers.is_empty() {
        node.bootstrap(&boot.bootstrap_peers)?;
    }
    Ok(node)
}

/// The founding members, this member's id and the cluster id that `--initial-cluster`,
/// `--initial-advertise-peer-urls` and `--initial-cluster-token` give, computed as etcd does.
fn identity_from_flags(params: &ServerParams) -> Result<(Vec<Member>, u64, u64), StartError> {
    let members: Vec<Member> = params
        .initial_cluster
        .iter()
        .map(|(name, urls)| Member::new(name, urls, &params.token, None))
        .collect();
    let mut local_urls = params.peer_urls.clone();
    local_urls.sort();
    let me = members
        .iter()
        .zip(&params.initial_cluster)
        .find(|(m, (name, _))| *name == params.name && m.peer_urls == local_urls)
        .map(|(m, _)| m.id)
        .ok_or_else(|| StartError::NotInInitialCluster {
            name: params.name.clone(),
            peer_urls: params.peer_urls.clone(),
        })?;
    let cid = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    Ok((members, me, cid))
}

/// The running cluster and this member's id in it, from the peers `--initial-cluster` lists.
fn join_existing(
    params: &ServerParams,
    dialer: &rafthttp::Dialer,
) -> Result<(RemoteCluster, u64), StartError> {
    let mut own = params.peer_urls.clone();
    own.sort();
    let urls: Vec<String> = params
        .initial_cluster
        .iter()
        .flat_map(|(_, urls)| urls.iter().cloned())
        .filter(|u| !own.contains(u))
        .collect();
    let remote = join::cluster_from_peers(&urls, dialer)?;
    let me = join::local_id(&remote, &params.peer_urls)?;
    Ok((remote, me))
}
