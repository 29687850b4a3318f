//! The Maintenance service (etcd's `v3rpc/maintenance.go`).

use std::pin::Pin;

use api::etcdserverpb::maintenance_server::Maintenance;
use api::etcdserverpb::*;
use futures::Stream;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::config::SERVER_VERSION;
use crate::core::ServerCore;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::v3rpc::permission::{identity, require_admin, require_admin_raw, require_user};

/// Bytes per Snapshot response message (etcd: 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;
/// What the database part of a snapshot stream is padded to (see `snapshot`).
const SNAPSHOT_ALIGN: u64 = 512;

pub struct MaintenanceService {
    pub server: EtcdServer,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // etcd 3.5.28+: listing needs a user, raising or clearing needs admin.
        let who = identity(&self.server, &req).await?;
        let req = req.into_inner();
        if req.action == alarm_request::AlarmAction::Get as i32 {
            require_user(self.server.auth_store(), &who)?;
        } else {
            require_admin(self.server.auth_store(), &who)?;
        }
        // Every action goes through raft, as etcd's: a GET answers the alarms as applied.
        let alarms = self.server.alarm_request(req).await?;
        Ok(Response::new(AlarmResponse {
            header: Some(self.server.header()),
            alarms,
        }))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        // Any authenticated user (etcd 3.5.28+).
        require_user(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let s = &self.server;
        let backend = s.store().backend().clone();
        // The space in use is measured in a write transaction: off the async workers.
        let (db_size, db_size_in_use) = tokio::task::spawn_blocking(move || {
            Ok::<_, backend::Error>((backend.size()?, backend.size_in_use()?))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let (db_size, db_size_in_use) = (db_size as i64, db_size_in_use as i64);
        let is_learner = s
            .membership()
            .members
            .get(&s.member_id())
            .is_some_and(|m| m.is_learner);
        // etcd: "no leader" first, then each alarm as its protobuf text.
        let leader = s.leader_id().unwrap_or(0);
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        errors.extend(s.active_alarms().iter().map(alarm_text));
        Ok(Response::new(StatusResponse {
            header: Some(self.server.header()),
            version: SERVER_VERSION.to_owned(),
            db_size,
            leader,
            raft_index: s.committed_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use,
            is_learner,
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        require_admin_raw(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let backend = self.server.store().backend().clone();
        let defragmented = tokio::task::spawn_blocking(move || backend.defragment())
            .await
            .map_err(|e| internal(e.to_string()));
        // The file shrank without a commit: the quota reads its size again.
        self.server.refresh_quota();
        defragmented?.map_err(internal)?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.server.header()),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        require_admin_raw(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let hash = self
            .server
            .store()
            .backend()
            .hash(&mvcc::HASH_IGNORED_KEYS)
            .map_err(internal)?;
        Ok(Response::new(HashResponse {
            header: Some(self.server.header()),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        require_admin_raw(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let rev = req.into_inner().revision;
        let store = self.server.store().clone();
        let h = tokio::task::spawn_blocking(move || store.hash_kv(rev))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(ServerError::from)?;
        let mut header = self.server.header();
        header.revision = h.current_revision;
        Ok(Response::new(HashKvResponse {
            header: Some(header),
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require_admin_raw(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let backend = self.server.store().backend().clone();
        let header = self.server.header();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // Spooled to a file first, since etcd tells the client how many bytes remain in each
        // message; the stream is answered at once and the spooling happens behind it, so a
        // client's deadline for the call's start is not spent on copying a large database.
        tokio::task::spawn_blocking(move || {
            let (mut file, total) = match spool_snapshot(&backend) {
                Ok(spooled) => spooled,
                Err(e) => {
                    let _ = tx.blocking_send(Err(internal(e)));
                    return;
                }
            };
            let mut hasher = Sha256::new();
            let mut sent = 0u64;
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let n = match std::io::Read::read(&mut file, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(internal(e)));
                        return;
                    }
                };
                buf.truncate(n);
                hasher.update(&buf);
                sent += n as u64;
                let resp = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: total - sent,
                    blob: buf,
                };
                if tx.blocking_send(Ok(resp)).is_err() {
                    return;
                }
            }
            // etcd ends the stream with the SHA-256 of the database, which `snapshot restore`
            // verifies.
            let _ = tx.blocking_send(Ok(SnapshotResponse {
                header: Some(header),
                remaining_bytes: 0,
                blob: hasher.finalize().to_vec(),
            }));
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        // Admin only since etcd 3.5.28.
        require_admin(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let target = req.into_inner().target_id;
        if !self.server.is_leader() {
            return Err(ServerError::NotLeader.into());
        }
        let voter = self
            .server
            .membership()
            .members
            .get(&target)
            .is_some_and(|m| !m.is_learner);
        if !voter {
            return Err(ServerError::BadLeaderTransferee.into());
        }
        self.server.transfer_leadership(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.server.header()),
        }))
    }

    async fn downgrade(
        &self,
        req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        // Admin only since etcd 3.5.28.
        require_admin(
            self.server.auth_store(),
            &identity(&self.server, &req).await?,
        )?;
        let req = req.into_inner();
        let version = self
            .server
            .downgrade_action(req.action, &req.version)
            .await?;
        Ok(Response::new(DowngradeResponse {
            header: Some(self.server.header()),
            version,
        }))
    }
}

/// An alarm as etcd prints it (gogo protobuf's compact text, which etcdctl's `alarm list` and
/// `Status.errors` show): `memberID:<decimal> alarm:<KIND> `, zero fields left out.
pub(crate) fn alarm_text(m: &AlarmMember) -> String {
    let mut text = String::new();
    if m.member_id != 0 {
        text.push_str(&format!("memberID:{} ", m.member_id));
    }
    if m.alarm != 0 {
        text.push_str(&format!(
            "alarm:{} ",
            crate::server::alarms::kind_name(m.alarm)
        ));
    }
    text
}

fn internal(e: impl ToString) -> Status {
    Status::from(ServerError::Internal(e.to_string()))
}

/// The backend's snapshot in a temporary file, padded as etcdctl expects, rewound; and its size.
fn spool_snapshot(backend: &backend::Backend) -> Result<(std::fs::File, u64), String> {
    use std::io::{Seek, Write};
    let mut file = tempfile::tempfile().map_err(|e| e.to_string())?;
    let info = backend.snapshot_to(&mut file).map_err(|e| e.to_string())?;
    // etcdctl recognises the SHA-256 trailer by the size: a bbolt file is a whole number of
    // 512-byte pages, plus 32. Our format ignores bytes after its trailer.
    let padding = (SNAPSHOT_ALIGN - info.bytes % SNAPSHOT_ALIGN) % SNAPSHOT_ALIGN;
    file.write_all(&vec![0u8; padding as usize])
        .map_err(|e| e.to_string())?;
    let total = info.bytes + padding;
    file.rewind().map_err(|e| e.to_string())?;
    Ok((file, total))
}
