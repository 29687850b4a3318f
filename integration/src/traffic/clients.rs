//! Traffic clients: each issues one request at a time, chosen by its own seeded RNG, and records it.

use std::collections::HashMap;
use std::sync::Arc;

use client::api::etcdserverpb::lease_client::LeaseClient;
use client::api::etcdserverpb::{
    response_op, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, ResponseHeader, TxnRequest,
};
use client::{txn, Client};
use rand::Rng as _;
use testkit::Rng;
use tokio::sync::watch;

use super::{
    client_options, key_value, outcome_of_error, KvKind, Phase, Shared, TrafficError,
    GIVE_UP_MARGIN,
};
use crate::history::{Operation, Outcome, Request, Response};

/// A traffic client's way to the cluster: one `Client` per member order, each starting at a different
/// member. The client fails over by itself only on connection errors, not on timeouts, so after a
/// request whose fate is unknown (a paused or partitioned member) we switch orders ourselves.
struct Connection {
    clients: Vec<Client>,
    first_member: Vec<usize>,
    current: usize,
}

impl Connection {
    async fn new(shared: &Shared, preferred: usize) -> Result<Connection, client::Error> {
        let n = shared.endpoints.len();
        let mut clients = Vec::with_capacity(n);
        let mut first_member = Vec::with_capacity(n);
        for shift in 0..n {
            let first = (preferred + shift) % n;
            let urls: Vec<&String> = (0..n).map(|k| &shared.endpoints[(first + k) % n]).collect();
            // Lazy: nothing is dialed here, and the endpoints were checked by `Shared::new`.
            clients.push(Client::connect(&urls, client_options(&shared.spec)).await?);
            first_member.push(first);
        }
        Ok(Connection {
            clients,
            first_member,
            current: 0,
        })
    }

    fn client(&self) -> &Client {
        &self.clients[self.current]
    }

    fn member(&self) -> usize {
        self.first_member[self.current]
    }

    fn move_on(&mut self) {
        self.current = (self.current + 1) % self.clients.len();
    }
}

fn running(phase: &watch::Receiver<Phase>) -> bool {
    *phase.borrow() == Phase::Running
}

/// What every traffic client keeps: its own RNG (seeded with the run's seed and its id), its way to the
/// cluster, and what it recorded.
struct Recorder {
    id: u32,
    rng: Rng,
    connection: Connection,
    operations: Vec<Operation>,
}

impl Recorder {
    async fn new(shared: &Shared, id: u32) -> Result<Recorder, TrafficError> {
        let preferred = id as usize % shared.endpoints.len();
        let connection =
            Connection::new(shared, preferred)
                .await
                .map_err(|source| TrafficError::Endpoints {
                    endpoints: shared.endpoints.clone(),
                    source,
                })?;
        Ok(Recorder {
            id,
            rng: Rng::new(shared.spec.seed ^ u64::from(id)),
            connection,
            operations: Vec::new(),
        })
    }

    /// Sends `request` and records it; after an unknown outcome the next request goes to another
    /// member, since the client only fails over by itself on connection errors.
    async fn issue(&mut self, shared: &Shared, request: Request) -> &Operation {
        let operation = execute(shared, &self.connection, self.id, request).await;
        if matches!(operation.outcome, Outcome::Unknown(_)) {
            self.connection.move_on();
        }
        let index = self.operations.len();
        self.operations.push(operation);
        &self.operations[index]
    }

    /// Sleeps a random time up to `max_pause`, which keeps histories small enough to check.
    async fn pause(&mut self, shared: &Shared) {
        let max = u64::try_from(shared.spec.max_pause.as_millis()).unwrap_or(u64::MAX);
        if max > 0 {
            let millis = self.rng.random_range(0..=max);
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        }
    }
}

/// A KV client: puts, gets, deletes and compare-and-swaps on the run's KV keys until the run stops.
pub(super) async fn kv_client(
    shared: Arc<Shared>,
    id: u32,
    phase: watch::Receiver<Phase>,
) -> Result<Vec<Operation>, TrafficError> {
    let mut recorder = Recorder::new(&shared, id).await?;
    // The value this client last saw for each key (None: absent), what a compare-and-swap expects.
    let mut last_seen: HashMap<String, Option<String>> = HashMap::new();
    let weights = shared.spec.mix.weights();
    let total: u32 = weights.iter().map(|&(_, weight)| weight).sum();
    let mut seq = 0u64;
    while running(&phase) {
        let rng = &mut recorder.rng;
        let key = shared
            .spec
            .kv_key(rng.random_range(0..shared.spec.key_count));
        let mut roll = rng.random_range(0..total);
        let kind = weights
            .iter()
            .find_map(|&(kind, weight)| {
                if roll < weight {
                    Some(kind)
                } else {
                    roll -= weight;
                    None
                }
            })
            .unwrap_or(KvKind::Put);
        let mut next_value = || {
            seq += 1;
            format!("{id}-{seq}")
        };
        let request = match kind {
            KvKind::Put => Request::Put {
                key,
                value: next_value(),
                lease: 0,
            },
            KvKind::CompareAndSwap => Request::CompareAndSwap {
                expected: last_seen.get(&key).cloned().flatten(),
                key,
                new_value: next_value(),
            },
            KvKind::Get => Request::Get {
                key,
                serializable: false,
            },
            KvKind::SerializableGet => Request::Get {
                key,
                serializable: true,
            },
            KvKind::Delete => Request::Delete { key },
        };
        let operation = recorder.issue(&shared, request).await;
        learn(&mut last_seen, operation);
        recorder.pause(&shared).await;
    }
    Ok(recorder.operations)
}

/// Updates what the client believes each key holds after `operation`.
fn learn(last_seen: &mut HashMap<String, Option<String>>, operation: &Operation) {
    let Some(key) = operation.request.key() else {
        return;
    };
    let belief = match (&operation.request, &operation.outcome) {
        (_, Outcome::Unknown(_)) => {
            last_seen.remove(key);
            return;
        }
        (_, Outcome::Failed(_)) => return,
        (Request::Put { value, .. }, _) => Some(value.clone()),
        (Request::Delete { .. }, _) => None,
        (Request::Get { .. }, Outcome::Ok(Response::Get { kv, .. })) => {
            kv.as_ref().map(|kv| kv.value.clone())
        }
        (
            Request::CompareAndSwap { new_value, .. },
            Outcome::Ok(Response::CompareAndSwap {
                succeeded, current, ..
            }),
        ) => {
            if *succeeded {
                Some(new_value.clone())
            } else {
                current.as_ref().map(|kv| kv.value.clone())
            }
        }
        _ => return,
    };
    last_seen.insert(key.to_string(), belief);
}

/// A lease client: grants short leases, puts keys with them, renews them once now and then, and revokes
/// them or lets them expire; sometimes it puts with a lease it revoked, which etcd must refuse.
pub(super) async fn lease_client(
    shared: Arc<Shared>,
    id: u32,
    phase: watch::Receiver<Phase>,
) -> Result<Vec<Operation>, TrafficError> {
    let mut recorder = Recorder::new(&shared, id).await?;
    let mut lease: Option<i64> = None;
    let mut revoked: Option<i64> = None;
    let mut seq = 0u64;
    while running(&phase) {
        let rng = &mut recorder.rng;
        let mut put = |lease: i64, rng: &mut Rng| {
            seq += 1;
            Request::Put {
                key: shared
                    .spec
                    .lease_key(id, rng.random_range(0..super::LEASE_KEYS_PER_CLIENT)),
                value: format!("{id}-{seq}"),
                lease,
            }
        };
        let request = match lease {
            None => Request::LeaseGrant {
                ttl: rng.random_range(2..=5),
            },
            Some(current) => match rng.random_range(0..100) {
                0..55 => put(current, rng),
                55..70 => Request::LeaseKeepAliveOnce { id: current },
                70..88 => Request::LeaseRevoke { id: current },
                88..95 => put(revoked.unwrap_or(current), rng),
                _ => {
                    // Abandoned: it expires on its own, and its keys must go with it.
                    lease = None;
                    continue;
                }
            },
        };
        let operation = recorder.issue(&shared, request).await;
        match (&operation.request, &operation.outcome) {
            (Request::LeaseGrant { .. }, Outcome::Ok(Response::LeaseGrant { id, .. })) => {
                lease = Some(*id)
            }
            (Request::LeaseRevoke { id }, _) => {
                revoked = Some(*id);
                lease = None;
            }
            // Expired before we used it.
            (Request::Put { lease: used, .. }, Outcome::Failed(_)) if Some(*used) == lease => {
                lease = None
            }
            (
                Request::LeaseKeepAliveOnce { .. },
                Outcome::Ok(Response::LeaseKeepAlive { ttl, .. }),
            ) if *ttl <= 0 => lease = None,
            _ => {}
        }
        recorder.pause(&shared).await;
    }
    Ok(recorder.operations)
}

/// Sends `request` and records it, giving up `GIVE_UP_MARGIN` after the request timeout.
async fn execute(shared: &Shared, connection: &Connection, id: u32, request: Request) -> Operation {
    let invoke = shared.clock.now();
    let limit = shared.spec.request_timeout + GIVE_UP_MARGIN;
    let outcome = match tokio::time::timeout(limit, send(shared, connection, &request)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Unknown(format!("no answer within {limit:?}")),
    };
    let complete = shared.clock.now();
    if let Outcome::Ok(response) = &outcome {
        shared.saw_revision(response.revision());
    }
    Operation {
        client: id,
        request,
        invoke,
        complete,
        outcome,
    }
}

/// `Ok(make(revision))` when the answer has a header; without one we cannot place it in the history.
fn answered(header: Option<ResponseHeader>, make: impl FnOnce(i64) -> Response) -> Outcome {
    match header {
        Some(header) => Outcome::Ok(make(header.revision)),
        None => Outcome::Unknown("an answer without a response header".into()),
    }
}

async fn send(shared: &Shared, connection: &Connection, request: &Request) -> Outcome {
    let client = connection.client();
    let failed = |error: client::Error| outcome_of_error(request, &error);
    match request {
        Request::Put { key, value, lease } => {
            let put = PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                lease: *lease,
                ..Default::default()
            };
            match client.put(put).await {
                Ok(response) => answered(response.header, |revision| Response::Put { revision }),
                Err(e) => failed(e),
            }
        }
        Request::Get { key, serializable } => {
            let range = RangeRequest {
                key: key.clone().into_bytes(),
                serializable: *serializable,
                ..Default::default()
            };
            match client.range(range).await {
                Ok(response) => {
                    let kv = response.kvs.first().map(key_value);
                    answered(response.header, |revision| Response::Get { revision, kv })
                }
                Err(e) => failed(e),
            }
        }
        Request::Delete { key } => {
            let delete = DeleteRangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            };
            match client.delete_range(delete).await {
                Ok(response) => answered(response.header, |revision| Response::Delete {
                    revision,
                    deleted: response.deleted,
                }),
                Err(e) => failed(e),
            }
        }
        Request::CompareAndSwap {
            key,
            expected,
            new_value,
        } => {
            let key_bytes = key.clone().into_bytes();
            let compare = match expected {
                Some(value) => txn::value(key_bytes.clone(), txn::Cmp::Equal, value.clone()),
                None => txn::create_revision(key_bytes.clone(), txn::Cmp::Equal, 0),
            };
            let swap = TxnRequest {
                compare: vec![compare],
                success: vec![txn::put(PutRequest {
                    key: key_bytes.clone(),
                    value: new_value.clone().into_bytes(),
                    ..Default::default()
                })],
                failure: vec![txn::range(RangeRequest {
                    key: key_bytes,
                    ..Default::default()
                })],
            };
            match client.txn(swap).await {
                Ok(response) => {
                    let current = response
                        .responses
                        .first()
                        .and_then(|op| match &op.response {
                            Some(response_op::Response::ResponseRange(range)) => {
                                range.kvs.first().map(key_value)
                            }
                            _ => None,
                        });
                    let succeeded = response.succeeded;
                    answered(response.header, |revision| Response::CompareAndSwap {
                        revision,
                        succeeded,
                        current: if succeeded { None } else { current },
                    })
                }
                Err(e) => failed(e),
            }
        }
        Request::LeaseGrant { ttl } => {
            match client
                .lease_grant(LeaseGrantRequest { ttl: *ttl, id: 0 })
                .await
            {
                Ok(response) => answered(response.header, |revision| Response::LeaseGrant {
                    revision,
                    id: response.id,
                    ttl: response.ttl,
                }),
                Err(e) => failed(e),
            }
        }
        Request::LeaseKeepAliveOnce { id } => match client.lease_keep_alive_once(*id).await {
            Ok(response) => answered(response.header, |revision| Response::LeaseKeepAlive {
                revision,
                ttl: response.ttl,
            }),
            Err(e) => failed(e),
        },
        Request::LeaseRevoke { id } => {
            // One attempt on one member, not the client's retrying call: after a retry, "lease not
            // found" could be the echo of our own first attempt, and the revoke would be recorded as
            // having had no effect when it had one.
            let mut revoke = tonic::Request::new(LeaseRevokeRequest { id: *id });
            revoke.set_timeout(shared.spec.request_timeout);
            let channel = shared.channels[connection.member()].clone();
            match LeaseClient::new(channel).lease_revoke(revoke).await {
                Ok(response) => answered(response.into_inner().header, |revision| {
                    Response::LeaseRevoke { revision }
                }),
                Err(status) => failed(client::Error::from(status)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::KeyValue;

    fn op(request: Request, outcome: Outcome) -> Operation {
        Operation {
            client: 0,
            request,
            invoke: 0,
            complete: 1,
            outcome,
        }
    }

    #[test]
    fn a_client_expects_what_it_last_saw_and_forgets_keys_it_is_unsure_of() {
        let mut seen = HashMap::new();
        let key = "k".to_string();
        learn(
            &mut seen,
            &op(
                Request::Put {
                    key: key.clone(),
                    value: "0-1".into(),
                    lease: 0,
                },
                Outcome::Ok(Response::Put { revision: 2 }),
            ),
        );
        assert_eq!(seen[&key], Some("0-1".to_string()));
        let theirs = KeyValue {
            key: key.clone(),
            value: "1-4".into(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        };
        learn(
            &mut seen,
            &op(
                Request::CompareAndSwap {
                    key: key.clone(),
                    expected: Some("0-1".into()),
                    new_value: "0-2".into(),
                },
                Outcome::Ok(Response::CompareAndSwap {
                    revision: 3,
                    succeeded: false,
                    current: Some(theirs),
                }),
            ),
        );
        assert_eq!(seen[&key], Some("1-4".to_string()));
        learn(
            &mut seen,
            &op(
                Request::Delete { key: key.clone() },
                Outcome::Ok(Response::Delete {
                    revision: 4,
                    deleted: 1,
                }),
            ),
        );
        assert_eq!(seen[&key], None);
        learn(
            &mut seen,
            &op(
                Request::Put {
                    key: key.clone(),
                    value: "0-3".into(),
                    lease: 0,
                },
                Outcome::Unknown("timeout".into()),
            ),
        );
        assert!(!seen.contains_key(&key));
    }
}
