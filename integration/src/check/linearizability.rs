//! Linearizability of the KV history: a Wing–Gong search with memoization (as porcupine does it), run
//! once per key, which is sound because every KV request touches one key (P-compositionality).
//!
//! Per-key model: the key is absent, or holds a value with a version, created by some write. Reads check
//! value, version and (when the creating write's revision is known) create_revision; revisions as such
//! are left to the revisions checker, since a per-key model cannot see the global counter.
//!
//! Operations and their windows:
//! - answered requests must take effect between invoke and return;
//! - failed requests, and reads of unknown outcome, had no effect: dropped;
//! - writes of unknown outcome may take effect at any time after invoke, or never. If their unique
//!   value was seen (read, watch event, final state) they certainly took effect, before the first
//!   sighting and before the first answer at the revision it was seen with, which becomes their return
//!   time (this leans on revisions being consistent, which the revisions checker verifies). If watch
//!   streams delivered every change of the key from the revision the write could first land at up to
//!   the last revision any request was answered, and not this write (for a delete: no delete that
//!   answered deletes do not explain), it took effect after every answer if at all, which is the same
//!   as never: dropped;
//! - serializable reads are not linearizable; the revisions checker judges them.
//!
//! Keys any put with a lease may have written are skipped: a revoke or expiry deletes them at a point
//! the KV history does not show.
//!
//! The search: entries (invokes and returns) in time order in a doubly linked list; walk it, and at an
//! invoke try to take that operation next (if the model accepts its answer and the resulting
//! (set of taken operations, state) pair is new), removing it from the list and restarting from the
//! head; at a return of an operation not yet taken, undo the last choice. Memoized pairs are 128-bit
//! fingerprints: an XOR of random per-operation keys for the set, mixed with the state.
//!
//! Two reductions keep unanswered writes from multiplying the search: an optional operation that would
//! change nothing (deleting an absent key) is not taken, and of several optional operations with the
//! same effect (deletes; writes of values nothing showed and no swap expects, which share one value
//! id), all invoked already and none with a deadline, only the earliest is tried: the others can stand
//! in for it later, so any order using a later one has a twin using the earliest.
//!
//! Known limit: on a key with hundreds of operations and dozens of pending unanswered writes, refuting
//! a violation deep in the history may exhaust `Options::states_per_key`; the key is then reported
//! inconclusive (the revisions checker usually names the violation anyway).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use testkit::Rng;

use crate::history::{KeyValue, Nanos, Outcome, Request, Response};

use super::facts::Facts;
use super::{describe, CheckerReport, Options, ViolationKind};

/// Value ids are per key; these three are shared.
const ABSENT: u32 = u32::MAX;
/// A value no request wrote: no state ever holds it.
const FOREIGN: u32 = u32::MAX - 1;
/// Any value written by an unanswered write that nothing ever showed and no swap expects: such values
/// are indistinguishable, and sharing one id makes such writes interchangeable (see `search`).
const UNSEEN: u32 = u32::MAX - 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KeyState {
    value: u32,
    version: i64,
    /// The write that started this incarnation of the key (its create_revision is that write's).
    created_by: u32,
}

const EMPTY: KeyState = KeyState {
    value: ABSENT,
    version: 0,
    created_by: ABSENT,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    value: u32,
    version: i64,
    create_revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Put {
        value: u32,
    },
    Get {
        seen: Option<Seen>,
    },
    /// `deleted` None: outcome unknown.
    Delete {
        deleted: Option<i64>,
    },
    /// `expected` None compares "absent". An unanswered swap is only worth taking when it succeeds
    /// (a failed swap changes nothing), so it is modelled as one that must succeed.
    Swap {
        expected: Option<u32>,
        new_value: u32,
        answer: SwapAnswer,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwapAnswer {
    Succeeded,
    Failed { current: Option<Seen> },
}

#[derive(Debug, Clone, Copy)]
struct KeyOp {
    /// Index in the history.
    index: usize,
    step: Step,
    invoke: Nanos,
    /// None: may take effect at any time after invoke, or never.
    ret: Option<Nanos>,
}

/// What one key's search needs to know besides its operations.
struct KeyModel<'h> {
    key: &'h str,
    values: Vec<&'h str>,
    /// Known revision of each value's write (from its answer, else from what observers reported).
    revision: Vec<Option<i64>>,
}

impl KeyModel<'_> {
    fn matches(&self, s: KeyState, seen: Option<Seen>) -> bool {
        match seen {
            None => s.value == ABSENT,
            Some(seen) => {
                s.value == seen.value
                    && s.version == seen.version
                    && self
                        .revision_of(s.created_by)
                        .is_none_or(|r| r == seen.create_revision)
            }
        }
    }

    fn revision_of(&self, value: u32) -> Option<i64> {
        self.revision.get(value as usize).copied().flatten()
    }

    fn apply(&self, s: KeyState, step: Step) -> Option<KeyState> {
        let put = |value: u32| {
            if s.value == ABSENT {
                KeyState {
                    value,
                    version: 1,
                    created_by: value,
                }
            } else {
                KeyState {
                    value,
                    version: s.version + 1,
                    created_by: s.created_by,
                }
            }
        };
        match step {
            Step::Put { value } => Some(put(value)),
            Step::Get { seen } => self.matches(s, seen).then_some(s),
            Step::Delete { deleted } => {
                let existed = i64::from(s.value != ABSENT);
                match deleted {
                    Some(n) if n != existed => None,
                    _ => Some(EMPTY),
                }
            }
            Step::Swap {
                expected,
                new_value,
                answer,
            } => {
                let holds = match expected {
                    None => s.value == ABSENT,
                    Some(e) => s.value == e,
                };
                match answer {
                    SwapAnswer::Succeeded => holds.then(|| put(new_value)),
                    SwapAnswer::Failed { current } => {
                        (!holds && self.matches(s, current)).then_some(s)
                    }
                }
            }
        }
    }

    fn describe_state(&self, facts: &Facts<'_>, s: KeyState) -> String {
        if s.value == ABSENT {
            return format!("{} absent", self.key);
        }
        let Some(value) = self.values.get(s.value as usize) else {
            return format!(
                "{} holding a value of an unanswered write nothing showed, version {}",
                self.key, s.version
            );
        };
        let writer = facts
            .writer
            .get(&(self.key, *value))
            .map(|&i| format!(" (written by {})", describe::op(facts.history, i)))
            .unwrap_or_default();
        format!("{}={value}, version {}{writer}", self.key, s.version)
    }
}

pub(super) fn check(facts: &Facts<'_>, options: &Options) -> CheckerReport {
    let mut report = CheckerReport::new("linearizability", "KV operations");
    let (keys, skipped) = per_key_operations(facts);
    if skipped > 0 {
        report.notes.push(format!(
            "{skipped} operation(s) on {} key(s) put with a lease left out (see the lease and revisions checkers)",
            facts.leased_keys.len()
        ));
    }
    for (model, ops) in keys {
        report.checked += ops.len();
        match search(&model, &ops, options.states_per_key) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { states } => report.inconclusive.push(format!(
                "key {}: undecided after {states} states ({} operations)",
                model.key,
                ops.len()
            )),
            Verdict::NotLinearizable(deepest) => {
                let explanation = explain(facts, &model, &ops, &deepest);
                report.violation(ViolationKind::NotLinearizable, explanation);
            }
        }
    }
    report
}

fn explain(facts: &Facts<'_>, model: &KeyModel<'_>, ops: &[KeyOp], d: &Deepest) -> String {
    let history = facts.history;
    let mut out = format!(
        "key {}: no order of its {} operations explains every answer. The longest explained prefix takes {} of them",
        model.key,
        ops.len(),
        d.taken
    );
    if !d.last_taken.is_empty() {
        out.push_str(", ending with:");
        for &i in &d.last_taken {
            out.push_str(&format!("\n      {}", describe::op(history, ops[i].index)));
        }
    }
    out.push_str(&format!(
        "\n    after which the key is {}; then this operation cannot be explained, in that state or any later one its window allows:\n      {}",
        model.describe_state(facts, d.state),
        describe::op(history, ops[d.blocked].index)
    ));
    out
}

/// Every key's model and operations, except keys with leases. Returns the number of operations skipped.
fn per_key_operations<'h>(facts: &Facts<'h>) -> (Vec<(KeyModel<'h>, Vec<KeyOp>)>, usize) {
    // The first time each written value was seen, and the mod_revision first reported for it.
    // A write seen with revision r also took effect before any answer at revision r or later returned.
    let mut first_seen: HashMap<(&str, &str), Nanos> = HashMap::new();
    let mut seen_revision: HashMap<(&str, &str), i64> = HashMap::new();
    for o in &facts.observations {
        let k = (o.kv.key.as_str(), o.kv.value.as_str());
        let by = facts
            .revision_reached_by(o.kv.mod_revision)
            .map_or(o.time, |t| t.min(o.time));
        let t = first_seen.entry(k).or_insert(by);
        *t = (*t).min(by);
        seen_revision.entry(k).or_insert(o.kv.mod_revision);
    }

    let expected_by_swaps: HashSet<(&str, &str)> = facts
        .history
        .operations
        .iter()
        .filter_map(|op| match &op.request {
            Request::CompareAndSwap {
                key,
                expected: Some(e),
                ..
            } => Some((key.as_str(), e.as_str())),
            _ => None,
        })
        .collect();

    let mut by_key: HashMap<&'h str, (KeyModel<'h>, Vec<KeyOp>)> = HashMap::new();
    let mut order: Vec<&'h str> = Vec::new();
    let mut value_ids: HashMap<&'h str, HashMap<&'h str, u32>> = HashMap::new();
    let mut skipped = 0;
    for (index, op) in facts.history.operations.iter().enumerate() {
        let Some(key) = op.request.key() else {
            continue;
        };
        if facts.leased_keys.contains(key) {
            skipped += 1;
            continue;
        }
        if matches!(op.outcome, Outcome::Failed(_)) {
            continue;
        }
        let (model, ops) = by_key.entry(key).or_insert_with(|| {
            order.push(key);
            (
                KeyModel {
                    key,
                    values: Vec::new(),
                    revision: Vec::new(),
                },
                Vec::new(),
            )
        });
        let ids = value_ids.entry(key).or_default();
        let mut intern = |value: &'h str| -> u32 {
            if let Some(&i) = ids.get(value) {
                return i;
            }
            ids.insert(value, model.values.len() as u32);
            model.values.push(value);
            model.revision.push(
                facts
                    .write_revision
                    .get(&(key, value))
                    .or_else(|| seen_revision.get(&(key, value)))
                    .copied(),
            );
            (model.values.len() - 1) as u32
        };
        // When an unanswered write of `value` certainly took effect by.
        let sighted = |value: &str| -> Option<Nanos> {
            if facts.duplicate_values.contains(&(key, value)) {
                return None;
            }
            first_seen.get(&(key, value)).map(|&t| t.max(op.invoke))
        };
        let answered = op.complete.max(op.invoke);
        // An unanswered write takes effect at a revision above this floor, if at all. If watch streams
        // delivered every change of the key from there to the last revision anyone was answered and
        // did not show it, it never took effect before any answer, so it is as if it never did.
        let effect_floor = facts.revision_floor(op.invoke).saturating_add(1);
        let last_revision = facts.max_returned_revision();
        let watched = || facts.watched_throughout(key, effect_floor, last_revision);
        let key_op = match (&op.request, &op.outcome) {
            (Request::Get { serializable, .. }, outcome) => {
                if *serializable {
                    continue;
                }
                let Outcome::Ok(Response::Get { kv, .. }) = outcome else {
                    continue;
                };
                Some((Step::Get { seen: None }, Some(answered), kv.as_ref()))
            }
            (Request::Put { value, .. }, Outcome::Ok(_)) => Some((
                Step::Put {
                    value: intern(value),
                },
                Some(answered),
                None,
            )),
            (Request::Put { value, .. }, _) => {
                let ret = sighted(value);
                if ret.is_none() && watched() {
                    continue;
                }
                let value = if ret.is_none() && !expected_by_swaps.contains(&(key, value.as_str()))
                {
                    UNSEEN
                } else {
                    intern(value)
                };
                Some((Step::Put { value }, ret, None))
            }
            (Request::Delete { .. }, Outcome::Ok(Response::Delete { deleted, .. })) => Some((
                Step::Delete {
                    deleted: Some(*deleted),
                },
                Some(answered),
                None,
            )),
            (Request::Delete { .. }, _) => {
                if watched() && !facts.unexplained_delete_between(key, effect_floor, last_revision)
                {
                    continue;
                }
                Some((Step::Delete { deleted: None }, None, None))
            }
            (
                Request::CompareAndSwap {
                    expected,
                    new_value,
                    ..
                },
                outcome,
            ) => {
                let expected = expected.as_deref().map(|e| {
                    if facts.writer.contains_key(&(key, e)) {
                        intern(e)
                    } else {
                        FOREIGN
                    }
                });
                let (answer, ret, current) = match outcome {
                    Outcome::Ok(Response::CompareAndSwap {
                        succeeded: true, ..
                    }) => (SwapAnswer::Succeeded, Some(answered), None),
                    Outcome::Ok(Response::CompareAndSwap {
                        succeeded: false,
                        current,
                        ..
                    }) => (
                        SwapAnswer::Failed { current: None },
                        Some(answered),
                        current.as_ref(),
                    ),
                    // An answer of the wrong type: nothing to learn from it.
                    Outcome::Ok(_) => continue,
                    _ => {
                        let ret = sighted(new_value);
                        if ret.is_none() && watched() {
                            continue;
                        }
                        (SwapAnswer::Succeeded, ret, None)
                    }
                };
                let new_value_id =
                    if ret.is_none() && !expected_by_swaps.contains(&(key, new_value.as_str())) {
                        UNSEEN
                    } else {
                        intern(new_value)
                    };
                Some((
                    Step::Swap {
                        expected,
                        new_value: new_value_id,
                        answer,
                    },
                    ret,
                    current,
                ))
            }
            _ => None,
        };
        let Some((mut step, ret, seen_kv)) = key_op else {
            continue;
        };
        // Fill in what a read (or a failed swap) saw, now that `intern` is free.
        let seen = seen_kv.map(|kv: &KeyValue| {
            let value = if facts.writer.contains_key(&(key, kv.value.as_str())) {
                intern(&kv.value)
            } else {
                FOREIGN
            };
            Seen {
                value,
                version: kv.version,
                create_revision: kv.create_revision,
            }
        });
        match &mut step {
            Step::Get { seen: s } => *s = seen,
            Step::Swap {
                answer: SwapAnswer::Failed { current },
                ..
            } => *current = seen,
            _ => {}
        }
        ops.push(KeyOp {
            index,
            step,
            invoke: op.invoke,
            ret,
        });
    }
    let keys = order.into_iter().filter_map(|k| by_key.remove(k)).collect();
    (keys, skipped)
}

enum Verdict {
    Linearizable,
    NotLinearizable(Deepest),
    Inconclusive { states: u64 },
}

/// Where the search got furthest before it had to give up: the explanation of a violation.
struct Deepest {
    taken: usize,
    /// Indexes into the key's operations.
    last_taken: Vec<usize>,
    state: KeyState,
    /// The operation that returned without any way to take it.
    blocked: usize,
}

/// The u128 fingerprints are already uniformly random: hash them by their low bits.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

fn fingerprint128(rng: &mut Rng) -> u128 {
    (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())
}

fn state_fingerprint(s: KeyState) -> u128 {
    let a = Rng::new(u64::from(s.value) ^ (u64::from(s.created_by) << 32)).next_u64();
    fingerprint128(&mut Rng::new(a ^ (s.version as u64)))
}

/// Positions in the linked list: 0 is the head, `n + 1` the tail, entries are 1..=n.
struct Entries {
    /// (operation, is_return) per position 1..=n (index position - 1).
    at: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_pos: Vec<usize>,
    return_pos: Vec<Option<usize>>,
}

impl Entries {
    fn new(ops: &[KeyOp]) -> Self {
        let mut timed: Vec<(Nanos, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.invoke, false, i));
            if let Some(ret) = op.ret {
                timed.push((ret, true, i));
            }
        }
        // On equal times invokes come first: ops that touch in time count as concurrent.
        timed.sort_unstable();
        let n = timed.len();
        let mut call_pos = vec![0; ops.len()];
        let mut return_pos = vec![None; ops.len()];
        let mut at = Vec::with_capacity(n);
        for (p, &(_, is_return, op)) in timed.iter().enumerate() {
            if is_return {
                return_pos[op] = Some(p + 1);
            } else {
                call_pos[op] = p + 1;
            }
            at.push((op, is_return));
        }
        Entries {
            at,
            next: (1..=n + 2).collect(),
            prev: (0..n + 2).map(|p| p.saturating_sub(1)).collect(),
            call_pos,
            return_pos,
        }
    }

    fn tail(&self) -> usize {
        self.at.len() + 1
    }

    fn unlink(&mut self, p: usize) {
        let (a, b) = (self.prev[p], self.next[p]);
        self.next[a] = b;
        self.prev[b] = a;
    }

    fn relink(&mut self, p: usize) {
        let (a, b) = (self.prev[p], self.next[p]);
        self.next[a] = p;
        self.prev[b] = p;
    }

    /// Whether an untaken operation before position `p` in the list satisfies `f`.
    fn earlier_untaken(&self, p: usize, f: impl Fn(usize) -> bool) -> bool {
        let mut q = self.prev[p];
        while q != 0 {
            let (op, is_return) = self.at[q - 1];
            if !is_return && f(op) {
                return true;
            }
            q = self.prev[q];
        }
        false
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_pos[op]);
        if let Some(r) = self.return_pos[op] {
            self.unlink(r);
        }
    }

    /// Undoes `lift`; lifts are undone in reverse order, so the neighbours are the ones removed from.
    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.return_pos[op] {
            self.relink(r);
        }
        self.relink(self.call_pos[op]);
    }
}

fn search(model: &KeyModel<'_>, ops: &[KeyOp], max_states: u64) -> Verdict {
    let mut required_left = ops.iter().filter(|o| o.ret.is_some()).count();
    if required_left == 0 {
        return Verdict::Linearizable;
    }
    let mut rng = Rng::new(0x5eed_0f11_4ea7);
    let op_keys: Vec<u128> = ops.iter().map(|_| fingerprint128(&mut rng)).collect();
    let mut entries = Entries::new(ops);
    let tail = entries.tail();
    let mut memo: HashSet<u128, BuildHasherDefault<Passthrough>> = HashSet::default();
    let mut taken_set: u128 = 0;
    let mut state = EMPTY;
    let mut stack: Vec<(usize, KeyState)> = Vec::new();
    let mut deepest: Option<Deepest> = None;
    let mut cursor = entries.next[0];
    loop {
        let returned = if cursor == tail {
            // Only optional operations remain unlisted here, yet a required one is untaken: undo.
            None
        } else {
            let (op, is_return) = entries.at[cursor - 1];
            if !is_return {
                // An optional operation that changes nothing here (a delete of an absent key) is
                // better left untaken: it stays available for later.
                let worth_taking = |next: &KeyState| ops[op].ret.is_some() || *next != state;
                let interchangeable = ops[op].ret.is_none()
                    && entries.earlier_untaken(cursor, |o| {
                        ops[o].ret.is_none() && ops[o].step == ops[op].step
                    });
                let next_state = if interchangeable {
                    None
                } else {
                    model.apply(state, ops[op].step).filter(worth_taking)
                };
                if let Some(next_state) = next_state {
                    let set = taken_set ^ op_keys[op];
                    if memo.insert(set ^ state_fingerprint(next_state)) {
                        if memo.len() as u64 > max_states {
                            return Verdict::Inconclusive {
                                states: memo.len() as u64,
                            };
                        }
                        taken_set = set;
                        stack.push((op, state));
                        state = next_state;
                        entries.lift(op);
                        if ops[op].ret.is_some() {
                            required_left -= 1;
                            if required_left == 0 {
                                return Verdict::Linearizable;
                            }
                        }
                        cursor = entries.next[0];
                        continue;
                    }
                }
                cursor = entries.next[cursor];
                continue;
            }
            Some(op)
        };
        if let Some(blocked) = returned {
            if deepest.as_ref().is_none_or(|d| stack.len() > d.taken) {
                deepest = Some(Deepest {
                    taken: stack.len(),
                    last_taken: stack.iter().rev().take(4).rev().map(|&(o, _)| o).collect(),
                    state,
                    blocked,
                });
            }
        }
        let Some((op, previous)) = stack.pop() else {
            return match deepest {
                Some(d) => Verdict::NotLinearizable(d),
                // Unreachable in practice (a required operation always has a return entry); say so
                // rather than claim success.
                None => Verdict::Inconclusive { states: 0 },
            };
        };
        taken_set ^= op_keys[op];
        state = previous;
        entries.unlift(op);
        if ops[op].ret.is_some() {
            required_left += 1;
        }
        cursor = entries.next[entries.call_pos[op]];
    }
}
