//! Lease guarantees. A lease is gone once a revoke of it was answered (a revoke goes through raft, so
//! its answer is linearizable). From the moment that answer returned:
//! - the final state holds no key attached to it;
//! - no linearizable read invoked later shows a key attached to it;
//! - no put attached to it invoked later succeeds (the put's apply must find the lease gone).
//!
//! Keep-alive answers prove nothing either way: they come from the leader's local lessor, and a deposed
//! leader that has not stepped down yet may answer ttl 0 for a lease granted after it lost touch, or a
//! ttl for one revoked since. Expiry by time is not judged either: etcd extends lease deadlines on
//! leader changes. Expired leases are still covered where their deletes show up: watch events and reads
//! are judged by the other checkers. The final state is the final reader's Gets (see
//! `Options::final_read_client`); lost acknowledged writes in it are judged by the other checkers.

use std::collections::HashMap;

use crate::history::{Nanos, Outcome, Request, Response};

use super::facts::Facts;
use super::{describe, CheckerReport, ViolationKind};

pub(super) fn check(facts: &Facts<'_>) -> CheckerReport {
    let history = facts.history;
    let mut report = CheckerReport::new("leases", "lease operations and leased keys");

    // Each lease's earliest proof of being gone: (when it returned, the operation).
    let mut gone: HashMap<i64, (Nanos, usize)> = HashMap::new();
    for (i, op) in history.operations.iter().enumerate() {
        let (Request::LeaseRevoke { id }, Outcome::Ok(_)) = (&op.request, &op.outcome) else {
            continue;
        };
        report.checked += 1;
        let proof = gone.entry(*id).or_insert((op.complete, i));
        if op.complete < proof.0 {
            *proof = (op.complete, i);
        }
    }
    let gone_before = |lease: i64, t: Nanos| gone.get(&lease).filter(|(at, _)| *at < t);

    let mut final_kvs = Vec::new();
    for (i, op) in history.operations.iter().enumerate() {
        let Outcome::Ok(resp) = &op.outcome else {
            continue;
        };
        let (lease, what) = match (&op.request, resp) {
            (Request::Put { lease, .. }, _) if *lease != 0 => (*lease, "succeeded"),
            (
                Request::Get {
                    serializable: false,
                    ..
                },
                Response::Get { kv: Some(kv), .. },
            ) if kv.lease != 0 => {
                if facts.is_final_read(i) {
                    final_kvs.push((i, kv));
                    continue;
                }
                (kv.lease, "shows a key still attached to it")
            }
            _ => continue,
        };
        report.checked += 1;
        if let Some(&(_, proof)) = gone_before(lease, op.invoke) {
            report.violation(
                ViolationKind::RevokedLeaseUsed,
                format!(
                    "lease {lease} was gone ({}), yet {} invoked later {what}",
                    describe::op(history, proof),
                    describe::op(history, i)
                ),
            );
        }
    }

    for (i, kv) in final_kvs {
        report.checked += 1;
        if let Some(&(_, proof)) = gone_before(kv.lease, history.operations[i].invoke) {
            report.violation(
                ViolationKind::LeaseKeyNotDeleted,
                format!(
                    "{} holds a key of lease {}, which was gone: {}",
                    describe::op(history, i),
                    kv.lease,
                    describe::op(history, proof)
                ),
            );
        }
    }
    report
}
