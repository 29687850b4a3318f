//! Where the server core reports to the prometheus metrics (see `metrics.rs`).

use std::time::Duration;

pub(crate) fn leader(has_leader: bool, is_leader: bool, changed: bool) {
    let _ = (has_leader, is_leader, changed);
}

pub(crate) fn wal_fsync(took: Duration) {
    let _ = took;
}

pub(crate) fn applied(index: u64) {
    let _ = index;
}

pub(crate) fn proposal_result(ok: bool) {
    let _ = ok;
}

pub(crate) fn snapshot_received(from: u64) {
    let _ = from;
}

pub(crate) fn snapshot_applied() {}
