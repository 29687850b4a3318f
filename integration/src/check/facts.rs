//! Indexes over a history that several checkers share: who wrote each value, which keys have writes
//! the KV history cannot place (leases, unknown deletes), what every read and watch event saw, and the
//! per-key timeline of changes whose revision is known.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{
    EventKind, History, KeyValue, Nanos, Outcome, Request, Response, WatchRecord,
};

use super::{describe, Options, ViolationKind, FINAL_READ_CLIENT};

/// Where a fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Op(usize),
    Watch { record: usize, response: usize },
}

impl Source {
    pub(super) fn describe(self, history: &History) -> String {
        match self {
            Source::Op(i) => describe::op(history, i),
            Source::Watch { record, response } => {
                describe::watch_response(history, record, response)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change<'h> {
    Put(&'h str),
    Delete,
}

impl Change<'_> {
    fn describe(self, key: &str) -> String {
        match self {
            Change::Put(v) => format!("put {key}={v}"),
            Change::Delete => format!("delete {key}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct TimelineEntry<'h> {
    pub change: Change<'h>,
    pub source: Source,
}

/// A key as something showed it: a read's answer, a failed swap's `current`, a watch PUT event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Observation<'h> {
    pub source: Source,
    /// When the observer learned it: the read's return, the watch response's arrival.
    pub time: Nanos,
    pub kv: &'h KeyValue,
}

pub(super) struct Facts<'h> {
    pub history: &'h History,
    /// Clients whose reads are the final state.
    final_clients: [Option<u32>; 2],
    /// (key, value) to the operation whose request writes it (a put, or a swap's new value).
    pub writer: HashMap<(&'h str, &'h str), usize>,
    /// Revisions answered to successful writes, by (key, value).
    pub write_revision: HashMap<(&'h str, &'h str), i64>,
    /// Keys a put with a lease may have written: revokes and expiries delete them unseen.
    pub leased_keys: HashSet<&'h str>,
    /// Keys a delete of unknown outcome may have deleted at an unknown revision.
    pub keys_with_unknown_delete: HashSet<&'h str>,
    /// Keys some request (not failed) deleted.
    pub deleted_keys: HashSet<&'h str>,
    pub observations: Vec<Observation<'h>>,
    /// Every change whose key and revision are known, from write answers, reads and watch events.
    pub timeline: BTreeMap<&'h str, BTreeMap<i64, TimelineEntry<'h>>>,
    /// Problems found while gathering: two changes at one (key, revision), values written twice.
    pub conflicts: Vec<(ViolationKind, String)>,
    /// (key, value) pairs more than one request writes: the value-based reasoning skips them.
    pub duplicate_values: HashSet<(&'h str, &'h str)>,
    /// Header revisions of linearizable answers, by return time, each with the highest so far.
    returned_revisions: Vec<(Nanos, i64)>,
    /// (header revision, earliest return of a linearizable answer with at least that revision), by
    /// revision.
    first_reached: Vec<(i64, Nanos)>,
    /// Per watch stream, the revisions it is known to have delivered everything in range for.
    pub stream_spans: Vec<Option<(i64, i64)>>,
}

/// Whether a watch on `w`'s range covers `key`.
pub(super) fn in_range(w: &WatchRecord, key: &str) -> bool {
    if w.range_end.is_empty() {
        key == w.key
    } else if w.range_end == "\0" {
        key >= w.key.as_str()
    } else {
        key >= w.key.as_str() && key < w.range_end.as_str()
    }
}

/// The revisions a stream must have delivered every in-range change of: from its start (for
/// `start_revision` 0, the lowest of its first event and one past its `created` header, both at or after
/// the real start) to the highest of its last event and (if trusted) its last progress notification,
/// before any cancel. None when either end is unknown.
pub(super) fn stream_span(w: &WatchRecord, trust_progress: bool) -> Option<(i64, i64)> {
    let mut caught_up: Option<i64> = None;
    let mut first_event: Option<i64> = None;
    let mut created_header: Option<i64> = None;
    for resp in &w.responses {
        if resp.canceled {
            break;
        }
        if resp.created && created_header.is_none() {
            created_header = Some(resp.header_revision);
        }
        if trust_progress && resp.progress_notify && resp.events.is_empty() {
            caught_up = caught_up.max(Some(resp.header_revision));
        }
        for e in &resp.events {
            first_event.get_or_insert(e.kv.mod_revision);
            caught_up = caught_up.max(Some(e.kv.mod_revision));
        }
    }
    let start = if w.start_revision > 0 {
        Some(w.start_revision)
    } else {
        match (first_event, created_header.map(|h| h.saturating_add(1))) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };
    Some((start?, caught_up?)).filter(|(s, c)| s <= c)
}

impl<'h> Facts<'h> {
    pub(super) fn gather(history: &'h History, options: &Options) -> Self {
        let trust_progress = options.trust_progress_notifications;
        let mut facts = Facts {
            history,
            final_clients: [Some(FINAL_READ_CLIENT), options.final_read_client],
            writer: HashMap::new(),
            write_revision: HashMap::new(),
            leased_keys: HashSet::new(),
            keys_with_unknown_delete: HashSet::new(),
            deleted_keys: HashSet::new(),
            observations: Vec::new(),
            timeline: BTreeMap::new(),
            conflicts: Vec::new(),
            duplicate_values: HashSet::new(),
            returned_revisions: Vec::new(),
            first_reached: Vec::new(),
            stream_spans: history
                .watches
                .iter()
                .map(|w| stream_span(w, trust_progress))
                .collect(),
        };
        for (i, op) in history.operations.iter().enumerate() {
            facts.gather_operation(i);
            if let Outcome::Ok(resp) = &op.outcome {
                facts.gather_answer(i, &op.request, resp);
                if is_linearizable(&op.request) {
                    facts
                        .returned_revisions
                        .push((op.complete, resp.revision()));
                }
            }
        }
        for (r, record) in history.watches.iter().enumerate() {
            for (p, resp) in record.responses.iter().enumerate() {
                let source = Source::Watch {
                    record: r,
                    response: p,
                };
                for e in &resp.events {
                    match e.kind {
                        EventKind::Put => {
                            facts.observations.push(Observation {
                                source,
                                time: resp.received,
                                kv: &e.kv,
                            });
                            facts.record_change(
                                &e.kv.key,
                                e.kv.mod_revision,
                                Change::Put(&e.kv.value),
                                source,
                            );
                        }
                        EventKind::Delete => facts.record_change(
                            &e.kv.key,
                            e.kv.mod_revision,
                            Change::Delete,
                            source,
                        ),
                    }
                }
            }
        }
        facts.first_reached = facts
            .returned_revisions
            .iter()
            .map(|&(at, rev)| (rev, at))
            .collect();
        facts.first_reached.sort_unstable();
        let mut earliest = Nanos::MAX;
        for (_, at) in facts.first_reached.iter_mut().rev() {
            earliest = earliest.min(*at);
            *at = earliest;
        }
        facts.returned_revisions.sort_unstable();
        let mut highest = i64::MIN;
        for (_, rev) in &mut facts.returned_revisions {
            highest = highest.max(*rev);
            *rev = highest;
        }
        facts
    }

    /// The highest header revision a linearizable answer returned strictly before `t`: anything
    /// invoked at `t` takes effect at a later revision.
    pub(super) fn revision_floor(&self, t: Nanos) -> i64 {
        let n = self.returned_revisions.partition_point(|(at, _)| *at < t);
        n.checked_sub(1).map_or(0, |i| self.returned_revisions[i].1)
    }

    /// The earliest time a linearizable answer with header revision `revision` or higher returned: a
    /// change made at `revision` took effect before then.
    pub(super) fn revision_reached_by(&self, revision: i64) -> Option<Nanos> {
        let i = self
            .first_reached
            .partition_point(|(rev, _)| *rev < revision);
        self.first_reached.get(i).map(|(_, at)| *at)
    }

    /// The highest header revision any linearizable answer returned.
    pub(super) fn max_returned_revision(&self) -> i64 {
        self.returned_revisions.last().map_or(0, |(_, rev)| *rev)
    }

    /// Whether watch streams together delivered every change of `key` in revisions `from..=to`.
    pub(super) fn watched_throughout(&self, key: &str, from: i64, to: i64) -> bool {
        let mut spans: Vec<(i64, i64)> = self
            .history
            .watches
            .iter()
            .zip(&self.stream_spans)
            .filter(|(w, _)| in_range(w, key))
            .filter_map(|(_, span)| *span)
            .collect();
        spans.sort_unstable();
        let mut covered_to = from.saturating_sub(1);
        for (start, end) in spans {
            if start > covered_to.saturating_add(1) {
                break;
            }
            covered_to = covered_to.max(end);
        }
        covered_to >= to
    }

    /// Whether a watch delivered a delete of `key` in `from..=to` that no answered delete explains.
    pub(super) fn unexplained_delete_between(&self, key: &str, from: i64, to: i64) -> bool {
        from <= to
            && self.timeline.get(key).is_some_and(|changes| {
                changes.range(from..=to).any(|(_, e)| {
                    e.change == Change::Delete && matches!(e.source, Source::Watch { .. })
                })
            })
    }

    fn gather_operation(&mut self, i: usize) {
        let op = &self.history.operations[i];
        let failed = matches!(op.outcome, Outcome::Failed(_));
        let unknown = matches!(op.outcome, Outcome::Unknown(_));
        let written = match &op.request {
            Request::Put { key, value, lease } => {
                if *lease != 0 && !failed {
                    self.leased_keys.insert(key);
                }
                Some((key, value))
            }
            Request::CompareAndSwap { key, new_value, .. } => Some((key, new_value)),
            Request::Delete { key } => {
                if !failed {
                    self.deleted_keys.insert(key);
                }
                if unknown {
                    self.keys_with_unknown_delete.insert(key);
                }
                None
            }
            _ => None,
        };
        if let Some((key, value)) = written {
            if self.writer.insert((key, value), i).is_some() {
                self.duplicate_values.insert((key, value));
            }
        }
    }

    fn gather_answer(&mut self, i: usize, request: &'h Request, resp: &'h Response) {
        let source = Source::Op(i);
        match (request, resp) {
            (Request::Put { key, value, .. }, Response::Put { revision }) => {
                self.write_revision.insert((key, value), *revision);
                self.record_change(key, *revision, Change::Put(value), source);
            }
            (
                Request::CompareAndSwap { key, new_value, .. },
                Response::CompareAndSwap {
                    revision,
                    succeeded,
                    current,
                },
            ) => {
                if *succeeded {
                    self.write_revision.insert((key, new_value), *revision);
                    self.record_change(key, *revision, Change::Put(new_value), source);
                } else if let Some(kv) = current {
                    self.observe(source, kv);
                }
            }
            (Request::Delete { key }, Response::Delete { revision, deleted }) if *deleted > 0 => {
                self.record_change(key, *revision, Change::Delete, source);
            }
            (Request::Get { .. }, Response::Get { kv: Some(kv), .. }) => self.observe(source, kv),
            _ => {}
        }
    }

    fn observe(&mut self, source: Source, kv: &'h KeyValue) {
        let time = match source {
            Source::Op(i) => self.history.operations[i].complete,
            Source::Watch { record, response } => {
                self.history.watches[record].responses[response].received
            }
        };
        self.observations.push(Observation { source, time, kv });
        self.record_change(&kv.key, kv.mod_revision, Change::Put(&kv.value), source);
    }

    fn record_change(&mut self, key: &'h str, revision: i64, change: Change<'h>, source: Source) {
        let entries = self.timeline.entry(key).or_default();
        match entries.get(&revision) {
            None => {
                entries.insert(revision, TimelineEntry { change, source });
            }
            Some(known) if known.change == change => {}
            Some(known) => {
                let explanation = format!(
                    "key {key} at revision {revision}: {} says {}, but {} says {}",
                    known.source.describe(self.history),
                    known.change.describe(key),
                    source.describe(self.history),
                    change.describe(key),
                );
                self.conflicts
                    .push((ViolationKind::ConflictingWrites, explanation));
            }
        }
    }

    /// Whether operation `index` is a read of the final state.
    pub(super) fn is_final_read(&self, index: usize) -> bool {
        self.history
            .operations
            .get(index)
            .is_some_and(|op| self.final_clients.contains(&Some(op.client)))
    }

    /// Whether the key may have been deleted at a revision the history does not tell.
    pub(super) fn may_have_hidden_deletes(&self, key: &str) -> bool {
        self.leased_keys.contains(key) || self.keys_with_unknown_delete.contains(key)
    }

    pub(super) fn lease_of_write(&self, op: usize) -> i64 {
        match &self.history.operations[op].request {
            Request::Put { lease, .. } => *lease,
            _ => 0,
        }
    }
}

/// Whether an answer's header revision orders it in real time with other linearizable answers.
/// Serializable reads are served from a member's local state and keep-alives from the leader's.
pub(super) fn is_linearizable(request: &Request) -> bool {
    !matches!(
        request,
        Request::Get {
            serializable: true,
            ..
        } | Request::LeaseKeepAliveOnce { .. }
    )
}
