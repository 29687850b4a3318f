//! Checkers that judge a recorded [`History`] against etcd's guarantees, after the run.
//!
//! ```no_run
//! # let history = integration::history::History::default();
//! use integration::check::{check_with, Options};
//!
//! // The traffic generator appended the final state's reads under its final-state client (4 here).
//! let options = Options { final_read_client: Some(4), ..Options::default() };
//! let report = check_with(&history, None, options);
//! assert!(report.passed(), "{report}");
//! ```
//!
//! Four checkers, each reporting how much it looked at and every violation with the operations involved
//! (linearizability also alone, by [`check_linearizability`]):
//! - `linearizability`: the KV history is linearizable (Wing–Gong search with memoization, one search
//!   per key, since every KV request touches one key). Keys ever put with a lease are left out: revokes
//!   and expiries delete them outside the KV history; the other checkers still cover them.
//! - `revisions`: what a per-key value model cannot see: header revisions never go backwards in
//!   real time, writes get distinct, fresh revisions, every value seen was really written (not before it
//!   was invoked, with the write's revision as `mod_revision`), and every read (serializable ones too)
//!   shows the key as it was at its header revision.
//! - `watch`: ordered, unique, atomic, reliable (no gaps up to where a watcher is known to
//!   have caught up), resumable, valid events and progress notifications.
//! - `leases`: revoked leases leave no keys behind and are not used afterwards.
//!
//! Assumptions about the history (the traffic generator guarantees them): the keys start absent; each
//! value is written by at most one request; each client has one request in flight; times come from
//! one monotonic clock.
//!
//! Unknown outcomes (timeouts) are handled as etcd's robustness tests and porcupine do: the request may
//! take effect at any time after its invoke, or never. A write whose unique value was seen somewhere
//! certainly took effect before the first sighting, which bounds its search window.
//!
//! The final state, read after the faults healed, enters every checker as one linearizable Get per key
//! invoked after every operation returned (the traffic generator records them itself, under
//! [`Options::final_read_client`]; a [`FinalState`] passed to [`check`] is appended as such Gets by
//! [`FINAL_READ_CLIENT`]): a lost acknowledged write then shows up as a read no linearization explains,
//! and as a read that does not show the key's last write at its revision.

mod describe;
mod facts;
mod lease;
mod linearizability;
mod revisions;
mod watch;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

use crate::history::{History, KeyValue, Nanos, Operation, Outcome, Request, Response};

use facts::Facts;

/// The `client` of the Gets that stand for the final state's read.
pub const FINAL_READ_CLIENT: u32 = u32::MAX;

/// The keys as a linearizable read saw them after the faults healed: every key the run touched that is
/// not in `kvs` was absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    /// When the read was invoked; after every operation of the history returned.
    pub read_at: Nanos,
    /// The read's header revision.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

/// How to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Model states the linearizability search may visit for one key; past that the key is reported
    /// inconclusive, never as a violation.
    pub states_per_key: u64,
    /// The client whose linearizable Gets, invoked after every other operation returned, read the final
    /// state (as the traffic generator's `final_state` records them). Its reads are judged like any
    /// other, and in addition a key of a gone lease in them is reported as
    /// [`ViolationKind::LeaseKeyNotDeleted`], and a missed write as [`ViolationKind::LostWrite`].
    pub final_read_client: Option<u32>,
    /// Whether a progress notification proves the stream delivered every event up to its revision.
    /// Servers with etcd-io/etcd#15220 (requested progress not synchronised with the stream; Debian's
    /// etcd 3.4.23 has it) may announce the current revision before sending events still owed; for them
    /// set this false, and progress notifications are neither judged nor used as proof of catching up.
    pub trust_progress_notifications: bool,
    /// Whether a watch opened at revision R may miss a delete at exactly R. Servers with
    /// etcd-io/etcd#18089 (a compaction at R dropped the tombstone at R; fixed by #18274, after
    /// Debian's etcd 3.4.23) do that when R was the compaction revision; for them set this true, and
    /// that one event is not required (a delete at R is still checked everywhere else).
    pub tombstone_at_start_may_be_dropped: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            states_per_key: 2_000_000,
            final_read_client: None,
            trust_progress_notifications: true,
            tombstone_at_start_may_be_dropped: false,
        }
    }
}

/// What broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// No order of a key's operations explains every answer.
    NotLinearizable,
    /// A header revision lower than one returned before the request was invoked, or a write whose
    /// revision is not above it.
    RevisionWentBackwards,
    /// Two successful writes answered with the same revision.
    DuplicateRevision,
    /// Two different changes to one key claimed the same revision.
    ConflictingWrites,
    /// A value seen that no request wrote (or whose write failed).
    ValueNeverWritten,
    /// A value seen before the request writing it was invoked.
    VisibleBeforeInvoke,
    /// A value seen with a `mod_revision`, `create_revision`, `version` or lease other than its write's.
    WrongMetadata,
    /// A read not showing the key as it was at the read's header revision (stale, or from the future).
    StaleRead,
    /// The final state misses an acknowledged write.
    LostWrite,
    WatchOutOfRange,
    WatchBeforeStart,
    WatchDuplicate,
    WatchReordered,
    /// A revision's events split over several responses.
    WatchSplitRevision,
    /// A change in the watched range and caught-up interval that the watcher never got.
    WatchGap,
    /// A delete event for a key no request deleted and no lease held.
    WatchDeleteNeverIssued,
    /// An event at or below a progress notification's revision, after that notification.
    WatchProgressNotify,
    /// A key attached to a revoked (or expired) lease still exists.
    LeaseKeyNotDeleted,
    /// A revoked lease used afterwards: kept alive, attached to a put, or seen on a key.
    RevokedLeaseUsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// Key, operations (with clients and times), expected versus seen.
    pub explanation: String,
}

/// Violations kept in full per kind and checker; the rest are only counted, so a badly broken run still
/// prints a readable report.
const KEPT_PER_KIND: usize = 20;

/// One checker's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerReport {
    pub checker: &'static str,
    /// Operations, reads, events or keys looked at (each checker says which in `Display`).
    pub checked: usize,
    pub checked_what: &'static str,
    pub violations: Vec<Violation>,
    /// Violations beyond [`KEPT_PER_KIND`] of one kind, counted but not explained.
    pub unexplained: usize,
    /// Parts the checker could not decide within its limits, and why.
    pub inconclusive: Vec<String>,
    /// What the checker left out by design (e.g. leased keys), for the reader.
    pub notes: Vec<String>,
}

impl CheckerReport {
    fn new(checker: &'static str, checked_what: &'static str) -> Self {
        CheckerReport {
            checker,
            checked: 0,
            checked_what,
            violations: Vec::new(),
            unexplained: 0,
            inconclusive: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn violation(&mut self, kind: ViolationKind, explanation: String) {
        if self.violations.iter().filter(|v| v.kind == kind).count() < KEPT_PER_KIND {
            self.violations.push(Violation { kind, explanation });
        } else {
            self.unexplained += 1;
        }
    }

    pub fn violation_count(&self) -> usize {
        self.violations.len() + self.unexplained
    }

    /// Whether any violation of `kind` was found.
    pub fn has(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }
}

/// Every checker's verdict on one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checkers: Vec<CheckerReport>,
}

impl Report {
    pub fn violation_count(&self) -> usize {
        self.checkers
            .iter()
            .map(CheckerReport::violation_count)
            .sum()
    }

    pub fn has(&self, kind: ViolationKind) -> bool {
        self.checkers.iter().any(|c| c.has(kind))
    }

    pub fn is_conclusive(&self) -> bool {
        self.checkers.iter().all(|c| c.inconclusive.is_empty())
    }

    /// No violation, and every checker decided everything.
    pub fn passed(&self) -> bool {
        self.violation_count() == 0 && self.is_conclusive()
    }

    /// One line for a results table: what each checker looked at, and the verdict.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .checkers
            .iter()
            .map(|c| format!("{} {} {}", c.checker, c.checked, c.checked_what))
            .collect();
        let verdict = if self.is_conclusive() {
            ""
        } else {
            ", inconclusive in part"
        };
        format!(
            "{}; {} violation(s){verdict}",
            counts.join(", "),
            self.violation_count()
        )
    }
}

impl fmt::Display for CheckerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} {} checked, {} violation(s){}",
            self.checker,
            self.checked,
            self.checked_what,
            self.violation_count(),
            if self.inconclusive.is_empty() {
                ""
            } else {
                ", INCONCLUSIVE in part"
            }
        )?;
        for v in &self.violations {
            writeln!(f, "  - {:?}: {}", v.kind, v.explanation)?;
        }
        if self.unexplained > 0 {
            writeln!(
                f,
                "  - ... and {} more of the kinds above",
                self.unexplained
            )?;
        }
        for i in &self.inconclusive {
            writeln!(f, "  - inconclusive: {i}")?;
        }
        for n in &self.notes {
            writeln!(f, "  - note: {n}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() {
            "PASSED"
        } else if self.violation_count() > 0 {
            "VIOLATIONS FOUND"
        } else {
            "INCONCLUSIVE"
        };
        writeln!(
            f,
            "history check: {verdict} ({} violation(s))",
            self.violation_count()
        )?;
        for c in &self.checkers {
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Runs every checker with the default [`Options`].
pub fn check(history: &History, final_state: Option<&FinalState>) -> Report {
    check_with(history, final_state, Options::default())
}

/// Runs every checker. The final state, when given, is appended to the history as linearizable Gets by
/// [`FINAL_READ_CLIENT`].
pub fn check_with(history: &History, final_state: Option<&FinalState>, options: Options) -> Report {
    let with_final;
    let history = match final_state {
        Some(state) => {
            with_final = with_final_reads(history, state);
            &with_final
        }
        None => history,
    };
    let facts = Facts::gather(history, &options);
    Report {
        checkers: vec![
            linearizability::check(&facts, &options),
            revisions::check(&facts),
            watch::check(&facts, &options),
            lease::check(&facts),
        ],
    }
}

/// Linearizability of the KV history alone (see the module docs for what is left out).
pub fn check_linearizability(history: &History, options: &Options) -> CheckerReport {
    linearizability::check(&Facts::gather(history, options), options)
}

/// The history plus one linearizable Get per key the run touched, answered from `state`.
fn with_final_reads(history: &History, state: &FinalState) -> History {
    let mut keys: BTreeSet<&str> = history
        .operations
        .iter()
        .filter_map(|op| op.request.key())
        .collect();
    keys.extend(state.kvs.iter().map(|kv| kv.key.as_str()));
    let mut out = history.clone();
    for key in keys {
        let kv = state.kvs.iter().find(|kv| kv.key == key).cloned();
        out.operations.push(Operation {
            client: FINAL_READ_CLIENT,
            request: Request::Get {
                key: key.to_owned(),
                serializable: false,
            },
            invoke: state.read_at,
            complete: state.read_at,
            outcome: Outcome::Ok(Response::Get {
                revision: state.revision,
                kv,
            }),
        });
    }
    out
}
