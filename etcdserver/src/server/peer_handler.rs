//! What the peer transport (`rafthttp`) calls into: raft messages and snapshots from peers,
//! and reports about them, all handed to the raft thread (etcd's `EtcdServer.Process`,
//! `ReportUnreachable`, `ReportSnapshot`, `IsIDRemoved`).

use std::sync::Arc;

use super::cluster::Cluster;
use super::proposer::{Proposer, RaftInput};

/// What the peer transport calls into. It holds no store: a stopped member must release its
/// backend even while the transport lingers.
pub(crate) struct PeerHandler {
    pub(super) proposer: Arc<Proposer>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) snapshotter: snap::Snapshotter,
}

impl PeerHandler {
    fn to_raft(&self, input: RaftInput) {
        self.proposer.send(input);
    }
}

impl rafthttp::Raft for PeerHandler {
    fn process(&self, msg: raftpb::Message) {
        self.to_raft(RaftInput::Step(msg));
    }

    fn receive_snapshot(
        &self,
        msg: raftpb::Message,
        db: &mut dyn std::io::Read,
    ) -> Result<(), rafthttp::SaveSnapshotError> {
        let index = msg.snapshot.as_ref().map_or(0, |s| s.index());
        let dest = self.snapshotter.dir().join(format!("{index:016x}.snap.db"));
        let info = backend::restore_snapshot(db, &dest, &crate::server::schema::TABLES)?;
        tracing::info!(index, bytes = info.bytes, "received a database snapshot");
        crate::metrics::hooks::snapshot_received(msg.from);
        self.to_raft(RaftInput::Step(msg));
        Ok(())
    }

    fn report_unreachable(&self, id: u64) {
        self.to_raft(RaftInput::Unreachable(id));
    }

    fn report_snapshot(&self, id: u64, status: rafthttp::SnapshotStatus) {
        crate::metrics::hooks::snapshot_sent(id, status == rafthttp::SnapshotStatus::Finish);
        let status = match status {
            rafthttp::SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
            rafthttp::SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
        };
        self.to_raft(RaftInput::SnapshotStatus(id, status));
    }

    fn is_removed(&self, id: u64) -> bool {
        self.cluster.is_removed(id)
    }

    fn removed_from_cluster(&self) {
        self.proposer
            .fatal("the member has been permanently removed from the cluster");
    }
}
