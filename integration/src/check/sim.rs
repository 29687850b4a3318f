//! A generator of valid histories for the checkers' tests: clients with random overlapping intervals,
//! each operation taking effect at a random point inside its interval (or, for unknown outcomes, maybe
//! later or never), applied in that order to a sequential model of etcd's KV store, leases and watches.

use std::collections::{BTreeMap, HashMap};

use crate::history::{
    EventKind, History, KeyValue, Nanos, Operation, Outcome, Request, Response, WatchEvent,
    WatchRecord, WatchResponse,
};

use testkit::Rng;

use super::FinalState;

#[derive(Debug, Clone, Copy)]
pub(super) struct SimConfig {
    pub seed: u64,
    pub clients: u32,
    pub keys: usize,
    pub leased_keys: usize,
    pub operations: usize,
    pub watchers: u32,
    /// Share of writes (and reads) whose outcome the client never learns.
    pub unknown_percent: u64,
}

const MS: Nanos = 1_000_000;

/// A planned operation: its client, interval, and when it takes effect (None: never).
struct Slot {
    client: u32,
    invoke: Nanos,
    complete: Nanos,
    effect_at: Option<Nanos>,
    unknown: bool,
}

struct Lease {
    alive: bool,
    keys: Vec<String>,
}

struct Model {
    revision: i64,
    kvs: BTreeMap<String, KeyValue>,
    /// Each key's state by the revision it took it, for serializable reads at older revisions.
    past: HashMap<String, BTreeMap<i64, Option<KeyValue>>>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    next_value: u64,
    /// (revision, when it was made, its events).
    events: Vec<(i64, Nanos, Vec<WatchEvent>)>,
}

impl Model {
    fn remember(&mut self, key: &str) {
        let now = self.kvs.get(key).cloned();
        self.past
            .entry(key.to_owned())
            .or_default()
            .insert(self.revision, now);
    }

    fn put(&mut self, key: &str, value: String, lease: i64, at: Nanos) {
        self.revision += 1;
        let rev = self.revision;
        let kv = match self.kvs.get(key) {
            Some(old) => KeyValue {
                key: key.to_owned(),
                value,
                create_revision: old.create_revision,
                mod_revision: rev,
                version: old.version + 1,
                lease,
            },
            None => KeyValue {
                key: key.to_owned(),
                value,
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease,
            },
        };
        if let Some(old) = self.kvs.insert(key.to_owned(), kv.clone()) {
            self.detach(&old);
        }
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.push(key.to_owned());
        }
        self.remember(key);
        self.events.push((
            rev,
            at,
            vec![WatchEvent {
                kind: EventKind::Put,
                kv,
            }],
        ));
    }

    fn detach(&mut self, old: &KeyValue) {
        if let Some(l) = self.leases.get_mut(&old.lease) {
            l.keys.retain(|k| *k != old.key);
        }
    }

    fn delete_keys(&mut self, keys: &[String], at: Nanos) -> i64 {
        let present: Vec<String> = keys
            .iter()
            .filter(|k| self.kvs.contains_key(*k))
            .cloned()
            .collect();
        if present.is_empty() {
            return 0;
        }
        self.revision += 1;
        let rev = self.revision;
        let mut events = Vec::new();
        for key in &present {
            if let Some(old) = self.kvs.remove(key) {
                self.detach(&old);
            }
            self.remember(key);
            events.push(WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    value: String::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                    lease: 0,
                },
            });
        }
        self.events.push((rev, at, events));
        present.len() as i64
    }

    fn value(&mut self) -> String {
        self.next_value += 1;
        format!("v{}", self.next_value)
    }
}

pub(super) fn simulate(cfg: SimConfig) -> (History, FinalState) {
    // Mixed with a constant so that seed 0 does not start the generator at state 0.
    let mut rng = Rng::new(cfg.seed ^ 0x6a09_e667_f3bc_c908);
    let keys: Vec<String> = (0..cfg.keys).map(|i| format!("k{i:02}")).collect();
    let leased: Vec<String> = (0..cfg.leased_keys)
        .map(|i| format!("lease/{i:02}"))
        .collect();

    // Plan intervals: each client one request at a time, random gaps and durations.
    let mut free_at: Vec<Nanos> = vec![0; cfg.clients as usize];
    let mut slots = Vec::with_capacity(cfg.operations);
    for _ in 0..cfg.operations {
        let client = (0..cfg.clients)
            .min_by_key(|&c| free_at[c as usize])
            .unwrap_or(0);
        let invoke = free_at[client as usize] + rng.below(2 * MS);
        let unknown = rng.below(100) < cfg.unknown_percent;
        let duration = if unknown {
            20 * MS
        } else {
            MS / 10 + rng.below(5 * MS)
        };
        let complete = invoke + duration;
        let effect_at = if unknown {
            // It may land after the client gave up, or never.
            (rng.below(100) < 60).then(|| invoke + rng.below(duration + 30 * MS))
        } else {
            Some(invoke + rng.below(duration + 1))
        };
        free_at[client as usize] = complete + 1;
        slots.push(Slot {
            client,
            invoke,
            complete,
            effect_at,
            unknown,
        });
    }

    let mut model = Model {
        revision: 1,
        kvs: BTreeMap::new(),
        past: HashMap::new(),
        leases: BTreeMap::new(),
        next_lease: 100,
        next_value: 0,
        events: Vec::new(),
    };
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (slots[i].effect_at.unwrap_or(Nanos::MAX), i));
    let mut operations: Vec<Option<Operation>> = (0..slots.len()).map(|_| None).collect();
    for i in order {
        let slot = &slots[i];
        let (request, response) = match slot.effect_at {
            Some(at) => step(&mut model, &mut rng, &keys, &leased, slot.unknown, at),
            None => (without_effect(&mut model, &mut rng, &keys), None),
        };
        let outcome = match response {
            Some(outcome) if !slot.unknown => outcome,
            _ => Outcome::Unknown("deadline exceeded".to_owned()),
        };
        operations[i] = Some(Operation {
            client: slot.client,
            request,
            invoke: slot.invoke,
            complete: slot.complete,
            outcome,
        });
    }
    let operations: Vec<Operation> = operations.into_iter().flatten().collect();

    let last_complete = operations.iter().map(|o| o.complete).max().unwrap_or(0);
    let last_effect = model.events.last().map(|e| e.1).unwrap_or(0);
    let watches = watch_records(&model, &mut rng, cfg.watchers, &keys, &leased);
    let final_state = FinalState {
        read_at: last_complete.max(last_effect) + MS,
        revision: model.revision,
        kvs: model.kvs.values().cloned().collect(),
    };
    (
        History {
            operations,
            watches,
        },
        final_state,
    )
}

/// A request that never took effect (its client timed out), drawn without touching the model.
fn without_effect(model: &mut Model, rng: &mut Rng, keys: &[String]) -> Request {
    let key = keys[rng.below(keys.len() as u64) as usize].clone();
    match rng.below(4) {
        0 => Request::Put {
            key,
            value: model.value(),
            lease: 0,
        },
        1 => Request::Delete { key },
        2 => Request::Get {
            key,
            serializable: false,
        },
        _ => Request::CompareAndSwap {
            key,
            expected: Some(format!("v{}", rng.below(model.next_value + 1))),
            new_value: model.value(),
        },
    }
}

/// Draws a request for one slot and applies it to the model at time `at`.
fn step(
    model: &mut Model,
    rng: &mut Rng,
    keys: &[String],
    leased: &[String],
    unknown: bool,
    at: Nanos,
) -> (Request, Option<Outcome>) {
    let on_leased = !leased.is_empty() && !unknown && rng.below(100) < 20;
    if on_leased {
        let (request, outcome) = lease_step(model, rng, leased, at);
        return (request, Some(outcome));
    }
    let key = keys[rng.below(keys.len() as u64) as usize].clone();
    let rev = model.revision;
    let (request, outcome) = match rng.below(100) {
        0..=29 => {
            let value = model.value();
            model.put(&key, value.clone(), 0, at);
            (
                Request::Put {
                    key,
                    value,
                    lease: 0,
                },
                Outcome::Ok(Response::Put {
                    revision: model.revision,
                }),
            )
        }
        30..=54 => {
            let kv = model.kvs.get(&key).cloned();
            (
                Request::Get {
                    key,
                    serializable: false,
                },
                Outcome::Ok(Response::Get { revision: rev, kv }),
            )
        }
        55..=64 => {
            let at_rev = (rev - rng.below(4) as i64).max(1);
            let kv = model
                .past
                .get(&key)
                .and_then(|p| p.range(..=at_rev).next_back())
                .and_then(|(_, kv)| kv.clone());
            (
                Request::Get {
                    key,
                    serializable: true,
                },
                Outcome::Ok(Response::Get {
                    revision: at_rev,
                    kv,
                }),
            )
        }
        65..=77 => {
            let deleted = model.delete_keys(std::slice::from_ref(&key), at);
            (
                Request::Delete { key },
                Outcome::Ok(Response::Delete {
                    revision: model.revision,
                    deleted,
                }),
            )
        }
        _ => {
            let current = model.kvs.get(&key).cloned();
            let expected = if rng.below(100) < 70 {
                current.as_ref().map(|kv| kv.value.clone())
            } else if rng.below(100) < 50 {
                None
            } else {
                Some(format!("v{}", rng.below(model.next_value + 1)))
            };
            let new_value = model.value();
            let holds = current.as_ref().map(|kv| &kv.value) == expected.as_ref();
            let answer = if holds {
                model.put(&key, new_value.clone(), 0, at);
                Response::CompareAndSwap {
                    revision: model.revision,
                    succeeded: true,
                    current: None,
                }
            } else {
                Response::CompareAndSwap {
                    revision: rev,
                    succeeded: false,
                    current,
                }
            };
            (
                Request::CompareAndSwap {
                    key,
                    expected,
                    new_value,
                },
                Outcome::Ok(answer),
            )
        }
    };
    (request, Some(outcome))
}

fn lease_step(
    model: &mut Model,
    rng: &mut Rng,
    leased: &[String],
    at: Nanos,
) -> (Request, Outcome) {
    let rev = model.revision;
    let known: Vec<i64> = model.leases.keys().copied().collect();
    let pick = |rng: &mut Rng| -> Option<i64> {
        (!known.is_empty()).then(|| known[rng.below(known.len() as u64) as usize])
    };
    match (rng.below(100), pick(rng)) {
        (0..=14, _) | (_, None) => {
            model.next_lease += 1;
            let id = model.next_lease;
            model.leases.insert(
                id,
                Lease {
                    alive: true,
                    keys: Vec::new(),
                },
            );
            (
                Request::LeaseGrant { ttl: 10 },
                Outcome::Ok(Response::LeaseGrant {
                    revision: rev,
                    id,
                    ttl: 10,
                }),
            )
        }
        (15..=54, Some(id)) => {
            let key = leased[rng.below(leased.len() as u64) as usize].clone();
            let value = model.value();
            let request = Request::Put {
                key: key.clone(),
                value: value.clone(),
                lease: id,
            };
            if model.leases.get(&id).is_some_and(|l| l.alive) {
                model.put(&key, value, id, at);
                (
                    request,
                    Outcome::Ok(Response::Put {
                        revision: model.revision,
                    }),
                )
            } else {
                (
                    request,
                    Outcome::Failed("etcdserver: requested lease not found".to_owned()),
                )
            }
        }
        (55..=69, Some(_)) => {
            let key = leased[rng.below(leased.len() as u64) as usize].clone();
            let kv = model.kvs.get(&key).cloned();
            (
                Request::Get {
                    key,
                    serializable: false,
                },
                Outcome::Ok(Response::Get { revision: rev, kv }),
            )
        }
        (70..=84, Some(id)) => {
            let alive = model.leases.get(&id).is_some_and(|l| l.alive);
            if !alive {
                return (
                    Request::LeaseRevoke { id },
                    Outcome::Failed("etcdserver: requested lease not found".to_owned()),
                );
            }
            let keys = model
                .leases
                .get(&id)
                .map(|l| l.keys.clone())
                .unwrap_or_default();
            model.delete_keys(&keys, at);
            if let Some(l) = model.leases.get_mut(&id) {
                l.alive = false;
            }
            (
                Request::LeaseRevoke { id },
                Outcome::Ok(Response::LeaseRevoke {
                    revision: model.revision,
                }),
            )
        }
        (_, Some(id)) => {
            let alive = model.leases.get(&id).is_some_and(|l| l.alive);
            (
                Request::LeaseKeepAliveOnce { id },
                Outcome::Ok(Response::LeaseKeepAlive {
                    revision: rev,
                    ttl: if alive { 10 } else { 0 },
                }),
            )
        }
    }
}

/// Watch streams over the model's events: each watcher opens at a random time (or revision), receives
/// complete revisions in batches, sometimes a progress notification, and sometimes breaks and resumes
/// from one past the last revision it saw.
fn watch_records(
    model: &Model,
    rng: &mut Rng,
    watchers: u32,
    keys: &[String],
    leased: &[String],
) -> Vec<WatchRecord> {
    let mut records = Vec::new();
    let last_time = model.events.last().map(|e| e.1).unwrap_or(0);
    for watcher in 0..watchers {
        let (key, range_end) = match rng.below(4) {
            0 => (
                keys[rng.below(keys.len() as u64) as usize].clone(),
                String::new(),
            ),
            1 => ("k0".to_owned(), "k1".to_owned()),
            2 if !leased.is_empty() => ("lease/".to_owned(), "lease0".to_owned()),
            _ => (String::new(), "\0".to_owned()),
        };
        // Not `facts::in_range`: the generator decides coverage on its own, so that a bug there is
        // caught by the checkers' tests instead of being copied into the histories they judge.
        let covers = |k: &str| {
            if range_end.is_empty() {
                k == key
            } else if range_end == "\0" {
                k >= key.as_str()
            } else {
                k >= key.as_str() && k < range_end.as_str()
            }
        };
        let opened = rng.below(last_time / 2 + 1);
        // Revision current at `opened`.
        let current = model
            .events
            .iter()
            .take_while(|e| e.1 <= opened)
            .last()
            .map(|e| e.0)
            .unwrap_or(1);
        let mut start_revision = if rng.below(100) < 50 {
            0
        } else {
            1 + rng.below(current as u64 + 1) as i64
        };
        let from = if start_revision == 0 {
            current + 1
        } else {
            start_revision
        };
        let mut time = opened;
        let mut record =
            opened_stream(watcher, (&key, &range_end), start_revision, opened, current);
        let mut batch: Vec<WatchEvent> = Vec::new();
        let mut batch_revisions = 0;
        let revisions: Vec<&(i64, Nanos, Vec<WatchEvent>)> =
            model.events.iter().filter(|e| e.0 >= from).collect();
        for (rev, made, events) in revisions {
            let mine: Vec<WatchEvent> = events
                .iter()
                .filter(|e| covers(&e.kv.key))
                .cloned()
                .collect();
            time = time.max(*made) + rng.below(MS);
            if mine.is_empty() {
                if batch.is_empty() && rng.below(100) < 5 {
                    record.responses.push(WatchResponse {
                        received: time,
                        header_revision: *rev,
                        events: Vec::new(),
                        created: false,
                        canceled: false,
                        compact_revision: 0,
                        progress_notify: true,
                    });
                }
                continue;
            }
            batch.extend(mine);
            batch_revisions += 1;
            if batch_revisions > rng.below(3) {
                record.responses.push(WatchResponse {
                    received: time,
                    header_revision: *rev,
                    events: std::mem::take(&mut batch),
                    created: false,
                    canceled: false,
                    compact_revision: 0,
                    progress_notify: false,
                });
                batch_revisions = 0;
                if rng.below(100) < 3 {
                    // The stream breaks; the watcher resumes after the last revision it got.
                    record.ended = Some("stream reset".to_owned());
                    records.push(record);
                    start_revision = rev + 1;
                    record =
                        opened_stream(watcher, (&key, &range_end), start_revision, time + 1, *rev);
                }
            }
        }
        if !batch.is_empty() {
            let header_revision = batch.last().map(|e| e.kv.mod_revision).unwrap_or(0);
            record.responses.push(WatchResponse {
                received: time + 1,
                header_revision,
                events: batch,
                created: false,
                canceled: false,
                compact_revision: 0,
                progress_notify: false,
            });
        }
        records.push(record);
    }
    records
}

/// A stream opened at `opened` whose `created` response, a moment later, carries `header_revision`.
fn opened_stream(
    watcher: u32,
    (key, range_end): (&str, &str),
    start_revision: i64,
    opened: Nanos,
    header_revision: i64,
) -> WatchRecord {
    WatchRecord {
        watcher,
        key: key.to_owned(),
        range_end: range_end.to_owned(),
        start_revision,
        progress_notify: true,
        opened,
        responses: vec![WatchResponse {
            received: opened + 1,
            header_revision,
            events: Vec::new(),
            created: true,
            canceled: false,
            compact_revision: 0,
            progress_notify: false,
        }],
        ended: None,
    }
}
