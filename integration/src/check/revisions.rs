//! Revision and value consistency, which a per-key value model cannot see. Cheap (sorting and map
//! look-ups), and it covers leased keys and serializable reads too.
//!
//! - Header revisions of linearizable answers never go backwards in real time: if A returned before B
//!   was invoked, rev(B) >= rev(A), and rev(B) > rev(A) when B is a successful write. Serializable
//!   reads are served from a member's local state and keep-alives from the leader's, so they are left
//!   out.
//! - Successful writes (puts, swaps that succeeded, deletes that deleted) have distinct revisions.
//! - Every value seen (read, failed swap's `current`, watch PUT) was written by a request on that key
//!   that did not fail, was invoked before the sighting, and the sighting reports the write's revision
//!   as `mod_revision` and its lease; all sightings of one value agree on `create_revision` and
//!   `version`.
//! - Every answer that shows a key (reads, serializable ones too; failed swaps; deletes that found
//!   nothing) shows it as it was at the answer's header revision: not a value from a later revision,
//!   not one overwritten at or before that revision by a change the history knows the revision of.

use std::collections::HashMap;

use crate::history::{KeyValue, Nanos, Outcome, Response};

use super::facts::{is_linearizable, Change, Facts, Source};
use super::{describe, CheckerReport, ViolationKind};

pub(super) fn check(facts: &Facts<'_>) -> CheckerReport {
    let mut report = CheckerReport::new("revisions", "answers and sightings");
    for (kind, explanation) in &facts.conflicts {
        report.violation(*kind, explanation.clone());
    }
    if !facts.duplicate_values.is_empty() {
        let mut dups: Vec<String> = facts
            .duplicate_values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        dups.sort();
        dups.truncate(5);
        report.inconclusive.push(format!(
            "{} value(s) written by more than one request (e.g. {}): sightings of them name no single write",
            facts.duplicate_values.len(),
            dups.join(", ")
        ));
    }
    header_revisions(facts, &mut report);
    sightings(facts, &mut report);
    states_at_revision(facts, &mut report);
    report
}

fn is_successful_write(resp: &Response) -> bool {
    match resp {
        Response::Put { .. } => true,
        Response::Delete { deleted, .. } => *deleted > 0,
        Response::CompareAndSwap { succeeded, .. } => *succeeded,
        _ => false,
    }
}

fn header_revisions(facts: &Facts<'_>, report: &mut CheckerReport) {
    let history = facts.history;
    struct Answer {
        index: usize,
        invoke: Nanos,
        complete: Nanos,
        revision: i64,
        write: bool,
    }
    let mut answers: Vec<Answer> = history
        .operations
        .iter()
        .enumerate()
        .filter_map(|(index, op)| {
            let Outcome::Ok(resp) = &op.outcome else {
                return None;
            };
            is_linearizable(&op.request).then(|| Answer {
                index,
                invoke: op.invoke,
                complete: op.complete,
                revision: resp.revision(),
                write: is_successful_write(resp),
            })
        })
        .collect();
    report.checked += answers.len();

    let mut writes_at: HashMap<i64, usize> = HashMap::new();
    for a in answers.iter().filter(|a| a.write) {
        if let Some(&other) = writes_at.get(&a.revision) {
            report.violation(
                ViolationKind::DuplicateRevision,
                format!(
                    "two successful writes answered revision {}: {} and {}",
                    a.revision,
                    describe::op(history, other),
                    describe::op(history, a.index)
                ),
            );
        } else {
            writes_at.insert(a.revision, a.index);
        }
    }

    // Highest revision among answers returned before each moment, by completion order.
    answers.sort_by_key(|a| a.complete);
    let mut highest_before: Vec<(i64, usize)> = Vec::with_capacity(answers.len());
    for a in &answers {
        let best = highest_before.last().copied();
        highest_before.push(match best {
            Some((rev, i)) if rev >= a.revision => (rev, i),
            _ => (a.revision, a.index),
        });
    }
    for a in &answers {
        let returned_before = answers.partition_point(|b| b.complete < a.invoke);
        let Some(&(rev, earlier)) = returned_before
            .checked_sub(1)
            .and_then(|i| highest_before.get(i))
        else {
            continue;
        };
        let backwards = if a.write {
            a.revision <= rev
        } else {
            a.revision < rev
        };
        if backwards {
            report.violation(
                ViolationKind::RevisionWentBackwards,
                format!(
                    "{} answered revision {}, but {} had already returned revision {rev} before it was invoked{}",
                    describe::op(history, a.index),
                    a.revision,
                    describe::op(history, earlier),
                    if a.write { " (a write needs a newer revision)" } else { "" }
                ),
            );
        }
    }
}

fn sightings(facts: &Facts<'_>, report: &mut CheckerReport) {
    let history = facts.history;
    // The first sighting of each value, to compare the others with.
    let mut first: HashMap<(&str, &str), (Source, &KeyValue)> = HashMap::new();
    for o in &facts.observations {
        report.checked += 1;
        let kv = o.kv;
        let key = (kv.key.as_str(), kv.value.as_str());
        let seen = || {
            format!(
                "{} saw {}",
                o.source.describe(history),
                describe::kv(Some(kv))
            )
        };
        let Some(&writer) = facts.writer.get(&key) else {
            report.violation(
                ViolationKind::ValueNeverWritten,
                format!("{}, a value no request wrote to {}", seen(), kv.key),
            );
            continue;
        };
        let write = &history.operations[writer];
        let refused = match &write.outcome {
            Outcome::Failed(_) => true,
            Outcome::Ok(Response::CompareAndSwap { succeeded, .. }) => !succeeded,
            _ => false,
        };
        if refused {
            report.violation(
                ViolationKind::ValueNeverWritten,
                format!(
                    "{}, but its write did not take effect: {}",
                    seen(),
                    describe::op(history, writer)
                ),
            );
            continue;
        }
        if o.time < write.invoke {
            report.violation(
                ViolationKind::VisibleBeforeInvoke,
                format!(
                    "{} at {}, before its write was invoked: {}",
                    seen(),
                    describe::time(o.time),
                    describe::op(history, writer)
                ),
            );
        }
        if let Some(&rev) = facts.write_revision.get(&key) {
            if kv.mod_revision != rev {
                report.violation(
                    ViolationKind::WrongMetadata,
                    format!(
                        "{}, but its write was answered revision {rev}: {}",
                        seen(),
                        describe::op(history, writer)
                    ),
                );
            }
        }
        let lease = facts.lease_of_write(writer);
        if kv.lease != lease {
            report.violation(
                ViolationKind::WrongMetadata,
                format!(
                    "{}, but its write attached lease {lease}: {}",
                    seen(),
                    describe::op(history, writer)
                ),
            );
        }
        match first.get(&key) {
            None => {
                first.insert(key, (o.source, kv));
            }
            Some(&(source, earlier)) => {
                if (
                    earlier.mod_revision,
                    earlier.create_revision,
                    earlier.version,
                ) != (kv.mod_revision, kv.create_revision, kv.version)
                {
                    report.violation(
                        ViolationKind::WrongMetadata,
                        format!(
                            "{}, but {} saw the same write as {}",
                            seen(),
                            source.describe(history),
                            describe::kv(Some(earlier))
                        ),
                    );
                }
            }
        }
    }
}

fn states_at_revision(facts: &Facts<'_>, report: &mut CheckerReport) {
    let history = facts.history;
    for (index, op) in history.operations.iter().enumerate() {
        let Outcome::Ok(resp) = &op.outcome else {
            continue;
        };
        let Some(key) = op.request.key() else {
            continue;
        };
        let (revision, shown) = match resp {
            Response::Get { revision, kv } => (*revision, kv.as_ref()),
            Response::CompareAndSwap {
                revision,
                succeeded: false,
                current,
            } => (*revision, current.as_ref()),
            Response::Delete {
                revision,
                deleted: 0,
            } => (*revision, None),
            _ => continue,
        };
        report.checked += 1;
        let kind = if facts.is_final_read(index) {
            ViolationKind::LostWrite
        } else {
            ViolationKind::StaleRead
        };
        if let Some(kv) = shown {
            if kv.key != key {
                report.violation(
                    ViolationKind::WrongMetadata,
                    format!(
                        "{} shows key {} instead",
                        describe::op(history, index),
                        kv.key
                    ),
                );
                continue;
            }
        }
        let changes = facts.timeline.get(key);
        match shown {
            Some(kv) => {
                if kv.mod_revision > revision {
                    report.violation(
                        kind,
                        format!(
                            "{} shows a value written at revision {}, after its own header revision {revision}",
                            describe::op(history, index),
                            kv.mod_revision
                        ),
                    );
                    continue;
                }
                let later = changes
                    .filter(|_| kv.mod_revision < revision)
                    .and_then(|c| c.range(kv.mod_revision + 1..=revision).next());
                if let Some((&rev, entry)) = later {
                    report.violation(
                        kind,
                        format!(
                            "{} shows {}={} from revision {}, but at revision {rev} <= {revision} the key changed: {}",
                            describe::op(history, index),
                            key,
                            kv.value,
                            kv.mod_revision,
                            entry.source.describe(history)
                        ),
                    );
                }
            }
            None => {
                if facts.may_have_hidden_deletes(key) {
                    continue;
                }
                let last = changes.and_then(|c| c.range(..=revision).next_back());
                if let Some((&rev, entry)) = last {
                    if let Change::Put(value) = entry.change {
                        report.violation(
                            kind,
                            format!(
                                "{} shows {key} absent at revision {revision}, but it holds {value} since revision {rev} (no delete known in between): {}",
                                describe::op(history, index),
                                entry.source.describe(history)
                            ),
                        );
                    }
                }
            }
        }
    }
}
