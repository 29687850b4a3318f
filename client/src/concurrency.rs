//! Client-side recipes built on Txn, Watch and leases, as etcd's clientv3/concurrency package
//! does them (etcdctl `lock` and `elect` use these, not the server's Lock/Election services):
//! a [`Session`] keeps a lease alive, a [`Mutex`] and an [`Election`] put a key under that lease
//! and wait, ordered by create revision, for the keys created before theirs to be deleted.

use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::{
    response_op, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use api::mvccpb::{event::EventType, KeyValue};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::kv::{prefix_range_end, txn};
use crate::watch::WatchOptions;
use crate::Client;

/// etcd's message when a proclaim or resign finds that leadership was lost.
pub const ELECTION_NOT_LEADER: &str = "election: not leader";
/// etcd's message when an election has no leader.
pub const ELECTION_NO_LEADER: &str = "election: no leader";

/// A lease kept alive in the background; the recipes' keys live and die with it.
pub struct Session {
    client: Client,
    lease: i64,
    expired: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive (etcd's default TTL is 60).
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let grant = client.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?;
        Ok(Session::with_lease(client, grant.id))
    }

    /// Keeps an existing lease alive.
    pub fn with_lease(client: &Client, lease: i64) -> Session {
        let (expired_tx, expired) = watch::channel(false);
        let mut keep_alive = client.keep_alive(lease);
        let keeper = tokio::spawn(async move {
            while let Some(renewal) = keep_alive.next().await {
                if renewal.is_err() {
                    break;
                }
            }
            let _ = expired_tx.send(true);
        });
        Session {
            client: client.clone(),
            lease,
            expired,
            keeper,
        }
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves once the lease can no longer be kept alive.
    pub async fn expired(&self) {
        let mut expired = self.expired.clone();
        let _ = expired.wait_for(|gone| *gone).await;
    }

    pub fn is_expired(&self) -> bool {
        *self.expired.borrow()
    }

    /// Stops the renewals and revokes the lease, deleting every key attached to it.
    pub async fn close(self) -> Result<()> {
        self.keeper.abort();
        self.client
            .lease_revoke(LeaseRevokeRequest { id: self.lease })
            .await
            .map(|_| ())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// `<prefix><lease in lower-case hex>`: the key a session owns under a lock or election prefix.
fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

fn with_slash(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

fn oldest_under(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    }
}

fn range_of(response: &TxnResponse, index: usize) -> Option<&RangeResponse> {
    match response.responses.get(index)?.response.as_ref()? {
        response_op::Response::ResponseRange(range) => Some(range),
        _ => None,
    }
}

/// Waits until every key under `prefix` created at or before `max_create_revision` is deleted.
async fn wait_deletes(
    client: &Client,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader> {
    loop {
        let newest_before = client
            .range(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Create as i32,
                limit: 1,
                max_create_revision,
                ..Default::default()
            })
            .await?;
        let header = newest_before.header.unwrap_or_default();
        let Some(kv) = newest_before.kvs.first() else {
            return Ok(header);
        };
        wait_delete(client, &kv.key, header.revision).await?;
    }
}

async fn wait_delete(client: &Client, key: &[u8], revision: i64) -> Result<()> {
    let mut events = client
        .watch(
            key.to_vec(),
            WatchOptions {
                start_revision: revision,
                ..Default::default()
            },
        )
        .await?;
    while let Some(response) = events.message().await {
        if response?
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(Error::Closed)
}

/// A distributed mutex (clientv3 `concurrency.Mutex`), fair by create revision.
pub struct Mutex {
    prefix: Vec<u8>,
    key: Vec<u8>,
    revision: i64,
    header: ResponseHeader,
}

impl Mutex {
    /// Blocks until this session holds the lock `name`.
    pub async fn lock(session: &Session, name: impl AsRef<[u8]>) -> Result<Mutex> {
        let client = session.client();
        let prefix = with_slash(name.as_ref());
        let key = session_key(&prefix, session.lease());
        let response = client
            .txn(TxnRequest {
                compare: vec![txn::create_revision(key.clone(), txn::Cmp::Equal, 0)],
                success: vec![
                    txn::put(PutRequest {
                        key: key.clone(),
                        lease: session.lease(),
                        ..Default::default()
                    }),
                    txn::range(oldest_under(&prefix)),
                ],
                failure: vec![
                    txn::range(RangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    }),
                    txn::range(oldest_under(&prefix)),
                ],
            })
            .await?;
        let mut header = response.header.unwrap_or_default();
        let revision = if response.succeeded {
            header.revision
        } else {
            range_of(&response, 0)
                .and_then(|r| r.kvs.first())
                .map_or(0, |kv| kv.create_revision)
        };
        let owner_revision = range_of(&response, 1)
            .and_then(|r| r.kvs.first())
            .map(|kv| kv.create_revision);
        if owner_revision.is_some_and(|owner| owner != revision) {
            let waited = wait_deletes(client, &prefix, revision - 1).await;
            match waited {
                Ok(latest) => header = latest,
                Err(e) => {
                    // Give up our place in the queue so others are not blocked by it.
                    let _ = client
                        .delete_range(DeleteRangeRequest {
                            key: key.clone(),
                            ..Default::default()
                        })
                        .await;
                    return Err(e);
                }
            }
            if session.is_expired() {
                return Err(Error::LeaseExpired(session.lease()));
            }
        }
        Ok(Mutex {
            prefix,
            key,
            revision,
            header,
        })
    }

    /// The ownership key (`<name>/<lease hex>`).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The create revision of the ownership key.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The header of the response that completed the acquisition.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub async fn unlock(self, client: &Client) -> Result<()> {
        client
            .delete_range(DeleteRangeRequest {
                key: self.key,
                ..Default::default()
            })
            .await
            .map(|_| ())
    }
}

/// A leader election (clientv3 `concurrency.Election`).
pub struct Election {
    prefix: Vec<u8>,
    leader_key: Option<Vec<u8>>,
    leader_revision: i64,
    lease: i64,
}

impl Election {
    pub fn new(name: impl AsRef<[u8]>) -> Election {
        Election {
            prefix: with_slash(name.as_ref()),
            leader_key: None,
            leader_revision: 0,
            lease: 0,
        }
    }

    /// Blocks until this session is the leader, then announces `value`.
    pub async fn campaign(&mut self, session: &Session, value: impl Into<Vec<u8>>) -> Result<()> {
        let client = session.client();
        let value = value.into();
        let key = session_key(&self.prefix, session.lease());
        let response = client
            .txn(TxnRequest {
                compare: vec![txn::create_revision(key.clone(), txn::Cmp::Equal, 0)],
                success: vec![txn::put(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    lease: session.lease(),
                    ..Default::default()
                })],
                failure: vec![txn::range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })],
            })
            .await?;
        self.leader_key = Some(key.clone());
        self.lease = session.lease();
        self.leader_revision = response.header.as_ref().map_or(0, |h| h.revision);
        if !response.succeeded {
            let existing = range_of(&response, 0).and_then(|r| r.kvs.first()).cloned();
            if let Some(existing) = existing {
                self.leader_revision = existing.create_revision;
                if existing.value != value {
                    if let Err(e) = self.proclaim(client, value).await {
                        let _ = self.resign(client).await;
                        return Err(e);
                    }
                }
            }
        }
        if let Err(e) = wait_deletes(client, &self.prefix, self.leader_revision - 1).await {
            let _ = self.resign(client).await;
            return Err(e);
        }
        Ok(())
    }

    /// Announces a new value while leader; fails with "election: not leader" otherwise.
    pub async fn proclaim(&self, client: &Client, value: impl Into<Vec<u8>>) -> Result<()> {
        let key = self.leader_key.clone().ok_or_else(not_leader)?;
        let response = client
            .txn(TxnRequest {
                compare: vec![txn::create_revision(
                    key.clone(),
                    txn::Cmp::Equal,
                    self.leader_revision,
                )],
                success: vec![txn::put(PutRequest {
                    key,
                    value: value.into(),
                    lease: self.lease,
                    ..Default::default()
                })],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            Ok(())
        } else {
            Err(not_leader())
        }
    }

    /// Gives up leadership (a no-op when not leader).
    pub async fn resign(&mut self, client: &Client) -> Result<()> {
        let Some(key) = self.leader_key.take() else {
            return Ok(());
        };
        client
            .txn(TxnRequest {
                compare: vec![txn::create_revision(
                    key.clone(),
                    txn::Cmp::Equal,
                    self.leader_revision,
                )],
                success: vec![txn::delete(DeleteRangeRequest {
                    key,
                    ..Default::default()
                })],
                failure: vec![],
            })
            .await?;
        Ok(())
    }

    /// The current leader's key-value, if any.
    pub async fn leader(&self, client: &Client) -> Result<KeyValue> {
        let response = client.range(oldest_under(&self.prefix)).await?;
        response
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| Error::Status {
                code: tonic::Code::Unknown,
                message: ELECTION_NO_LEADER.into(),
            })
    }

    /// Calls `on_leader` with the leader each time leadership or the leader's value changes,
    /// until it returns false.
    pub async fn observe<F>(&self, client: &Client, mut on_leader: F) -> Result<()>
    where
        F: FnMut(&KeyValue) -> bool,
    {
        loop {
            let response = client.range(oldest_under(&self.prefix)).await?;
            let revision = response.header.as_ref().map_or(0, |h| h.revision);
            let mut leader = match response.kvs.into_iter().next() {
                Some(kv) => kv,
                None => self.wait_for_first_put(client, revision).await?,
            };
            if !on_leader(&leader) {
                return Ok(());
            }
            let mut changes = client
                .watch(
                    leader.key.clone(),
                    WatchOptions {
                        start_revision: leader.mod_revision + 1,
                        ..Default::default()
                    },
                )
                .await?;
            'leader: while let Some(response) = changes.message().await {
                for event in response?.events {
                    if event.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    if let Some(kv) = event.kv {
                        leader = kv;
                        if !on_leader(&leader) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    async fn wait_for_first_put(&self, client: &Client, revision: i64) -> Result<KeyValue> {
        let mut puts = client
            .watch(
                self.prefix.clone(),
                WatchOptions {
                    range_end: prefix_range_end(&self.prefix),
                    start_revision: revision,
                    ..Default::default()
                },
            )
            .await?;
        while let Some(response) = puts.message().await {
            if let Some(kv) = response?
                .events
                .into_iter()
                .find(|e| e.r#type == EventType::Put as i32)
                .and_then(|e| e.kv)
            {
                return Ok(kv);
            }
        }
        Err(Error::Closed)
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.leader_key.as_deref()
    }

    pub fn revision(&self) -> i64 {
        self.leader_revision
    }
}

fn not_leader() -> Error {
    Error::Status {
        code: tonic::Code::Unknown,
        message: ELECTION_NOT_LEADER.into(),
    }
}
