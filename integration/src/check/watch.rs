//! Watch guarantees (https://etcd.io/docs/v3.5/learning/api_guarantees/#watch-apis), per watch stream:
//!
//! - in range: every event is for a key the watch covers, at or after its start revision;
//! - unique: no (key, revision) twice;
//! - ordered: revisions never decrease within a response and strictly increase across responses;
//! - atomic: a revision's events come in one response (a response starting at the previous one's last
//!   revision splits it; missing some of a revision's in-range events, known from other watchers or the
//!   KV history, too);
//! - reliable and resumable: every change in the watched range whose revision is known (from write
//!   answers, reads, other watchers) and lies between the stream's start and the revision it is known to
//!   have caught up to (its last event, or a progress notification) was delivered, so a watch opened at
//!   any revision gets exactly what others saw from there;
//! - valid: PUT events carry values really written (checked with every sighting by the revisions
//!   checker) and DELETE events keys some delete or lease could have removed; two watchers reporting
//!   different changes at one (key, revision) are reported there too;
//! - progress notifications: after one with header revision R, no event at or below R (unless
//!   `Options::trust_progress_notifications` is off, for servers with etcd-io/etcd#15220).
//!
//! A stream's start is its `start_revision`; for 0 ("from now") it is the lowest of its first event's
//! revision and one past its `created` response's header revision, both at or after the real start.
//! Responses after a cancel (compaction, error) are not judged; the stream's guarantees hold up to it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::history::EventKind;

use super::facts::{in_range, Change, Facts};
use super::{describe, CheckerReport, Options, ViolationKind};

pub(super) fn check(facts: &Facts<'_>, options: &Options) -> CheckerReport {
    let mut report = CheckerReport::new("watch", "events and progress notifications");
    if !options.trust_progress_notifications {
        report.notes.push(
            "progress notifications not trusted (etcd-io/etcd#15220): neither judged nor taken as proof of catching up"
                .to_owned(),
        );
    }
    if options.tombstone_at_start_may_be_dropped {
        report.notes.push(
            "a delete at a stream's start revision is not required (etcd-io/etcd#18089)".to_owned(),
        );
    }
    for r in 0..facts.history.watches.len() {
        check_stream(facts, r, options, &mut report);
    }
    report
}

fn check_stream(facts: &Facts<'_>, r: usize, options: &Options, report: &mut CheckerReport) {
    let trust_progress = options.trust_progress_notifications;
    let history = facts.history;
    let w = &history.watches[r];
    let at = |p: usize| describe::watch_response(history, r, p);

    // (key, revision) delivered, with the response it came in.
    let mut delivered: BTreeMap<(&str, i64), usize> = BTreeMap::new();
    let mut last_revision: Option<i64> = None;
    let mut progress_revision: Option<i64> = None;
    for (p, resp) in w.responses.iter().enumerate() {
        if resp.canceled {
            break;
        }
        if resp.progress_notify && resp.events.is_empty() {
            if trust_progress {
                report.checked += 1;
                progress_revision = Some(resp.header_revision);
            }
            continue;
        }
        let mut previous_in_response: Option<i64> = None;
        for e in &resp.events {
            report.checked += 1;
            let key = e.kv.key.as_str();
            let rev = e.kv.mod_revision;
            let what = || format!("{} delivered {}", at(p), describe::event(e));
            if !in_range(w, key) {
                report.violation(
                    ViolationKind::WatchOutOfRange,
                    format!("{}, outside the watched range", what()),
                );
            }
            if w.start_revision > 0 && rev < w.start_revision {
                report.violation(
                    ViolationKind::WatchBeforeStart,
                    format!("{}, before the start revision {}", what(), w.start_revision),
                );
            }
            if let Some(earlier) = delivered.get(&(key, rev)) {
                report.violation(
                    ViolationKind::WatchDuplicate,
                    format!("{}, already delivered in response {earlier}", what()),
                );
                continue;
            }
            delivered.insert((key, rev), p);
            if let Some(progress) = progress_revision {
                if rev <= progress {
                    report.violation(
                        ViolationKind::WatchProgressNotify,
                        format!(
                            "{}, after a progress notification at revision {progress} promised every event up to it was delivered",
                            what()
                        ),
                    );
                }
            }
            match (previous_in_response, last_revision) {
                (Some(prev), _) if rev < prev => report.violation(
                    ViolationKind::WatchReordered,
                    format!("{}, after an event at revision {prev} in the same response", what()),
                ),
                (None, Some(last)) if rev < last => report.violation(
                    ViolationKind::WatchReordered,
                    format!("{}, after a previous response's event at revision {last}", what()),
                ),
                (None, Some(last)) if rev == last => report.violation(
                    ViolationKind::WatchSplitRevision,
                    format!(
                        "{}, but the previous response already had events of revision {last}: a revision split over two responses",
                        what()
                    ),
                ),
                _ => {}
            }
            if e.kind == EventKind::Delete
                && !facts.deleted_keys.contains(key)
                && !facts.leased_keys.contains(key)
            {
                report.violation(
                    ViolationKind::WatchDeleteNeverIssued,
                    format!(
                        "{}, but no request deleted {key} and no lease held it",
                        what()
                    ),
                );
            }
            previous_in_response = Some(previous_in_response.map_or(rev, |p| p.max(rev)));
        }
        if let Some(high) = previous_in_response {
            last_revision = Some(last_revision.map_or(high, |l| l.max(high)));
        }
    }

    // Reliability: every known change in range and in the stream's span was delivered.
    let Some((start, caught_up)) = facts.stream_spans[r] else {
        return;
    };
    let revisions_delivered: HashSet<i64> = delivered.keys().map(|&(_, rev)| rev).collect();
    let keys: Box<dyn Iterator<Item = (&&str, _)>> = if w.range_end.is_empty() {
        Box::new(facts.timeline.get_key_value(w.key.as_str()).into_iter())
    } else if w.range_end == "\0" {
        Box::new(
            facts
                .timeline
                .range::<str, _>((Bound::Included(w.key.as_str()), Bound::Unbounded)),
        )
    } else if w.key < w.range_end {
        Box::new(facts.timeline.range::<str, _>((
            Bound::Included(w.key.as_str()),
            Bound::Excluded(w.range_end.as_str()),
        )))
    } else {
        Box::new(std::iter::empty())
    };
    for (&key, changes) in keys {
        for (&rev, entry) in changes.range(start..=caught_up) {
            if delivered.contains_key(&(key, rev)) {
                continue;
            }
            if options.tombstone_at_start_may_be_dropped
                && rev == w.start_revision
                && matches!(entry.change, Change::Delete)
            {
                continue;
            }
            let (kind, how) = if revisions_delivered.contains(&rev) {
                (
                    ViolationKind::WatchSplitRevision,
                    "delivered other events of that revision but not this one",
                )
            } else {
                (ViolationKind::WatchGap, "never delivered it")
            };
            report.violation(
                kind,
                format!(
                    "watch#{r} (watcher {}, {}, from rev {}) is known to have caught up to revision {caught_up}, but {how}: the change of {key} at revision {rev} known from {}",
                    w.watcher,
                    describe::range(&w.key, &w.range_end),
                    w.start_revision,
                    entry.source.describe(history)
                ),
            );
        }
    }
}
