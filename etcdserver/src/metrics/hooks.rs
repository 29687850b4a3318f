//! Where the server core reports to the prometheus metrics ([`crate::metrics`]), so the raft and
//! apply loops name what happened rather than which gauge moves.

use std::time::Duration;

use crate::metrics::metrics;

pub(crate) fn leader(member_id: u64, leader: u64, changed: bool) {
    let m = metrics();
    m.set_leader(member_id, (leader != 0).then_some(leader));
    if changed {
        m.leader_changes_seen_total.inc();
    }
}

pub(crate) fn wal_fsync(took: Duration) {
    metrics()
        .wal_fsync_duration_seconds
        .observe(took.as_secs_f64());
}

pub(crate) fn committed(index: u64) {
    metrics().proposals_committed_total.set(index as i64);
}

pub(crate) fn applied(index: u64) {
    metrics().proposals_applied_total.set(index as i64);
}

pub(crate) fn proposals_pending(count: usize) {
    metrics().proposals_pending.set(count as i64);
}

pub(crate) fn proposal_result(ok: bool) {
    if !ok {
        metrics().proposals_failed_total.inc();
    }
}

pub(crate) fn snapshot_received(from: u64) {
    metrics()
        .snapshot_receive_success
        .with_label_values(&[&format!("{from:x}")])
        .inc();
}

pub(crate) fn snapshot_sent(to: u64, ok: bool) {
    let m = metrics();
    let counter = if ok {
        &m.snapshot_send_success
    } else {
        &m.snapshot_send_failures
    };
    counter.with_label_values(&[&format!("{to:x}")]).inc();
}

pub(crate) fn backend_size(total: u64, in_use: u64) {
    let m = metrics();
    m.db_total_size_in_bytes.set(total as i64);
    m.db_total_size_in_use_in_bytes.set(in_use as i64);
}

pub(crate) fn auth_revision(revision: u64) {
    metrics().auth_revision.set(revision as i64);
}
