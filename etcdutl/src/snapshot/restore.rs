//! `snapshot restore` (etcd's `v3Manager.Restore`): a snapshot file becomes the data dir of
//! one member of a new cluster, with the data kept and the membership replaced. Everything is
//! built in a hidden staging dir next to the target and renamed into place at the end, so a
//! failed restore leaves nothing behind.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use backend::{Backend, BackendConfig};
use etcdserver::restore as server;

use super::file::{go_bytes, Format, OpenError, SnapshotFile};
use crate::migrate::{self, MigrateError};

/// What to restore and as which member (etcd's `snapshot.RestoreConfig`).
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub snapshot: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `<name>.etcd` when not given.
    pub data_dir: Option<PathBuf>,
    /// `<data-dir>/member/wal` when not given.
    pub wal_dir: Option<PathBuf>,
    pub skip_hash_check: bool,
    pub bump_revision: u64,
    pub mark_compacted: bool,
}

/// Why a restore failed; the texts are etcd's where etcd has the case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{}", cluster_message(.0))]
    Cluster(#[from] server::ClusterError),
    #[error("--mark-compacted required if --revision-bump > 0")]
    BumpNeedsMarkCompacted,
    #[error("data-dir {:?} not empty or could not be read", .0.display().to_string())]
    DataDirExists(PathBuf),
    #[error("wal-dir {:?} exists", .0.display().to_string())]
    WalDirExists(PathBuf),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {}, got {}", go_bytes(expected), go_bytes(got))]
    HashMismatch { expected: [u8; 32], got: [u8; 32] },
    /// Neither our snapshot format nor a bbolt file (bbolt's own text for that).
    #[error("invalid database")]
    NotADatabase,
    #[error("invalid database: {0}")]
    Corrupt(#[source] backend::Error),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Backend(#[from] backend::Error),
    #[error("{0}")]
    Mvcc(#[from] mvcc::Error),
    #[error("{0}")]
    Storage(#[from] server::StorageError),
}

/// etcd prints a URL error of `--initial-cluster` without the server's "error setting up
/// initial cluster" prefix here.
fn cluster_message(e: &server::ClusterError) -> String {
    match e {
        server::ClusterError::Url(url) => url.to_string(),
        other => other.to_string(),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { what, source }
}

/// Restores `cfg.snapshot` into a new data dir (see the module comment).
pub fn restore(cfg: &RestoreConfig) -> Result<(), RestoreError> {
    if (cfg.bump_revision == 0) == cfg.mark_compacted {
        return Err(RestoreError::BumpNeedsMarkCompacted);
    }
    let initial = server::initial_cluster_for(
        &cfg.name,
        &cfg.initial_cluster,
        &cfg.initial_advertise_peer_urls,
    )?;
    let (members, cluster_id) = server::new_cluster(&initial, &cfg.initial_cluster_token);
    let member_id = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .expect("initial_cluster_for checked that the name is a member");

    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", cfg.name)));
    if data_dir.exists() && !dir_is_empty(&data_dir) {
        return Err(RestoreError::DataDirExists(data_dir));
    }
    if let Some(wal) = &cfg.wal_dir {
        if wal.exists() {
            return Err(RestoreError::WalDirExists(wal.clone()));
        }
    }
    let wal_dir = cfg
        .wal_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("member").join("wal"));
    let snap_dir = data_dir.join("member").join("snap");
    tracing::info!(
        path = %cfg.snapshot.display(),
        wal_dir = %wal_dir.display(),
        data_dir = %data_dir.display(),
        snap_dir = %snap_dir.display(),
        "restoring snapshot"
    );

    let stage = Staging::new(&data_dir, cfg.wal_dir.as_deref())?;
    let built = build(cfg, &stage, &members, member_id, cluster_id);
    match built {
        Ok(()) => stage.commit(&data_dir, cfg.wal_dir.as_deref())?,
        Err(e) => {
            stage.discard();
            return Err(e);
        }
    }
    tracing::info!(
        path = %cfg.snapshot.display(),
        wal_dir = %wal_dir.display(),
        data_dir = %data_dir.display(),
        snap_dir = %snap_dir.display(),
        member = format!("{member_id:x}"),
        cluster = format!("{cluster_id:x}"),
        "restored snapshot"
    );
    Ok(())
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// The database, membership, revision bump, WAL and raft snapshot, all in the staging dirs.
fn build(
    cfg: &RestoreConfig,
    stage: &Staging,
    members: &[server::Member],
    member_id: u64,
    cluster_id: u64,
) -> Result<(), RestoreError> {
    let mut snapshot = SnapshotFile::open(&cfg.snapshot, "open")?;
    if snapshot.sha256.is_none() && !cfg.skip_hash_check {
        return Err(RestoreError::MissingHash);
    }
    let db = stage.snap_dir().join("db");
    match snapshot.format {
        Format::Ours => restore_ours(&mut snapshot, &db, cfg.skip_hash_check)?,
        Format::Other => {
            if !cfg.skip_hash_check {
                check_hash(&mut snapshot)?;
            }
            if !migrate::is_bbolt(&cfg.snapshot)
                .map_err(|e| OpenError::new("read", &cfg.snapshot, e))?
            {
                return Err(RestoreError::NotADatabase);
            }
            let backend = Backend::open(&db, BackendConfig::default(), &server::TABLES)?;
            let summary = migrate::import_bbolt(&cfg.snapshot, &backend)?;
            tracing::info!(
                keys = summary.keys,
                revision = summary.revision,
                "imported an etcd database"
            );
            backend.close()?;
        }
    }
    let backend = Backend::open(&db, BackendConfig::default(), &server::TABLES)?;
    server::replace_membership(&backend, members)?;
    if cfg.mark_compacted && cfg.bump_revision > 0 {
        let amount = i64::try_from(cfg.bump_revision).unwrap_or(i64::MAX);
        let latest = mvcc::offline::bump_revision_and_mark_compacted(&backend, amount)?;
        tracing::info!(
            revision = latest,
            "bumped the latest revision and marked it compacted"
        );
    }
    let (commit, term) = server::write_raft_state(
        &stage.wal_dir(),
        &stage.snap_dir(),
        members,
        member_id,
        cluster_id,
    )?;
    let mut tx = backend.batch_tx();
    mvcc::offline::write_consistent_index(&mut tx, commit, term);
    drop(tx);
    backend.force_commit()?;
    backend.close()?;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod {}", db.display())))?;
    Ok(())
}

/// Restores our stream into `db` while hashing it, then checks the hash. A stream that does
/// not parse is reported as a hash mismatch when the hash is wrong too, as etcd checks the
/// hash first.
fn restore_ours(
    snapshot: &mut SnapshotFile,
    db: &Path,
    skip_hash_check: bool,
) -> Result<(), RestoreError> {
    let expected = snapshot.sha256;
    let mut reader = snapshot.hashing_reader();
    let restored = backend::restore_snapshot(&mut reader, db, &server::TABLES);
    let got = reader.finish().map_err(io_err("reading the snapshot"))?;
    if let (Some(expected), false) = (expected, skip_hash_check) {
        if expected != got {
            return Err(RestoreError::HashMismatch { expected, got });
        }
    }
    restored.map_err(|e| match e {
        backend::Error::CorruptSnapshot(_) => RestoreError::Corrupt(e),
        other => RestoreError::Backend(other),
    })?;
    Ok(())
}

fn check_hash(snapshot: &mut SnapshotFile) -> Result<(), RestoreError> {
    let Some(expected) = snapshot.sha256 else {
        return Ok(());
    };
    let got = snapshot
        .hashing_reader()
        .finish()
        .map_err(io_err("reading the snapshot"))?;
    if expected != got {
        return Err(RestoreError::HashMismatch { expected, got });
    }
    Ok(())
}

/// Hidden dirs next to the targets that become them in one rename each.
struct Staging {
    root: PathBuf,
    /// A separate WAL staging dir when `--wal-dir` is given.
    wal: Option<PathBuf>,
}

impl Staging {
    fn new(data_dir: &Path, wal_dir: Option<&Path>) -> Result<Staging, RestoreError> {
        let root = staging_path(data_dir);
        let wal = wal_dir.map(staging_path);
        let stage = Staging { root, wal };
        stage.discard();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(stage.snap_dir())
            .map_err(io_err(format!("mkdir {}", stage.snap_dir().display())))?;
        if let Some(parent) = stage.wal_dir().parent() {
            builder
                .create(parent)
                .map_err(io_err(format!("mkdir {}", parent.display())))?;
        }
        Ok(stage)
    }

    fn snap_dir(&self) -> PathBuf {
        self.root.join("member").join("snap")
    }

    fn wal_dir(&self) -> PathBuf {
        match &self.wal {
            Some(wal) => wal.clone(),
            None => self.root.join("member").join("wal"),
        }
    }

    fn commit(&self, data_dir: &Path, wal_dir: Option<&Path>) -> Result<(), RestoreError> {
        let result = (|| {
            if let (Some(staged), Some(target)) = (&self.wal, wal_dir) {
                std::fs::rename(staged, target)
                    .map_err(io_err(format!("rename to {}", target.display())))?;
            }
            if data_dir.exists() {
                // Empty, as checked: etcd 3.5 restores into an empty dir.
                std::fs::remove_dir(data_dir)
                    .map_err(io_err(format!("remove {}", data_dir.display())))?;
            }
            std::fs::rename(&self.root, data_dir)
                .map_err(io_err(format!("rename to {}", data_dir.display())))
        })();
        if result.is_err() {
            self.discard();
        }
        result
    }

    fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(wal) = &self.wal {
            let _ = std::fs::remove_dir_all(wal);
        }
    }
}

/// `<parent>/.<name>.restoring`: same filesystem as the target, so the rename is atomic.
fn staging_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(format!(".{name}.restoring"))
}
