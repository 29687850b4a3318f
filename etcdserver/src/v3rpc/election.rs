//! The Election gRPC service (etcd's `v3election`): clientv3's election recipe run inside the
//! member. A candidate's key is `name/<lease in hex>`; the leader is the oldest key under
//! `name/`; a campaign returns once every older candidate's key is gone.
//!
//! Errors reach the caller as etcd's do: code `Unknown` with the recipe's text (see
//! [`crate::v3rpc::lock`]).

use std::pin::Pin;
use std::sync::Arc;

use api::etcdserverpb as pb;
use api::etcdserverpb::range_request::SortOrder;
use api::v3electionpb as epb;
use api::v3electionpb::election_server::{Election, ElectionServer};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::core::ServerCore;
use crate::error::ServerError;
use crate::v3rpc::kv::GRPC_OVERHEAD_BYTES;
use crate::v3rpc::lock::{
    create_revision_is, get, op, participants_prefix, put, range_kvs, recipe_status,
    remove_participant, session_key, txn_disagrees, under_prefix, CleanupOnCancel, RecipeError,
    RecipeKv,
};

/// Leader responses queued for an observer before the observing task waits for it.
const OBSERVE_BUFFER: usize = 16;

pub struct ElectionService<C: ServerCore> {
    kv: RecipeKv<C>,
}

pub type LeaderStream = Pin<Box<dyn Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

impl<C: ServerCore> ElectionService<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self {
            kv: RecipeKv::new(core),
        }
    }

    pub fn into_server(self) -> ElectionServer<Self> {
        let limit = self
            .kv
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        ElectionServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    /// clientv3's `Election.Campaign` for the session of `lease`.
    async fn campaign(
        kv: &RecipeKv<C>,
        r: epb::CampaignRequest,
    ) -> Result<epb::CampaignResponse, RecipeError> {
        let lease = kv.session_lease(r.lease).await?;
        let prefix = participants_prefix(&r.name);
        let key = session_key(&prefix, lease);
        let enter = pb::TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![op(put(&key, r.value.clone(), lease))],
            failure: vec![op(get(&key))],
        };
        let resp = kv.txn(enter).await?;
        let header = resp.header.unwrap_or_default();
        let mut revision = header.revision;
        if !resp.succeeded {
            // This lease already campaigns: keep its place, take the new value.
            let Some(existing) = range_kvs(&resp, 0).first() else {
                return Err(txn_disagrees().into());
            };
            revision = existing.create_revision;
            if existing.value != r.value {
                if let Err(e) = Self::proclaim(kv, &key, revision, lease, r.value).await {
                    let _ = remove_participant(kv, key, Some(revision)).await;
                    return Err(e);
                }
            }
        }

        let cleanup = CleanupOnCancel::new(kv, &key, Some(revision));
        let waited = kv.wait_deletes(&prefix, revision - 1).await;
        // On a failure other than cancellation etcd keeps the key: the candidate may resume.
        cleanup.disarm();
        waited?;
        Ok(epb::CampaignResponse {
            header: Some(header),
            leader: Some(epb::LeaderKey {
                name: r.name,
                key,
                rev: revision,
                lease,
            }),
        })
    }

    /// Sets the leader's value if `key` is still the key created at `revision`.
    async fn proclaim(
        kv: &RecipeKv<C>,
        key: &[u8],
        revision: i64,
        lease: i64,
        value: Vec<u8>,
    ) -> Result<pb::ResponseHeader, RecipeError> {
        let txn = pb::TxnRequest {
            compare: vec![create_revision_is(key, revision)],
            success: vec![op(put(key, value, lease))],
            failure: Vec::new(),
        };
        let resp = kv.txn(txn).await?;
        if !resp.succeeded {
            return Err(RecipeError::NotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// The oldest candidate under `prefix`.
    async fn leader(kv: &RecipeKv<C>, prefix: &[u8]) -> Result<epb::LeaderResponse, RecipeError> {
        let resp = kv.range(under_prefix(prefix, SortOrder::Ascend)).await?;
        let kv = resp.kvs.into_iter().next().ok_or(RecipeError::NoLeader)?;
        Ok(epb::LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }
}

/// Sends each leader of the election and each new value of a leader, in order, until the
/// observer goes away or the store fails (etcd's `Election.observe`). Errors end the stream
/// quietly, as etcd's does.
async fn observe<C: ServerCore>(
    kv: RecipeKv<C>,
    prefix: Vec<u8>,
    out: mpsc::Sender<Result<epb::LeaderResponse, Status>>,
) {
    let send = |resp: epb::LeaderResponse| {
        let out = out.clone();
        async move { out.send(Ok(resp)).await.is_ok() }
    };
    loop {
        let Ok(resp) = kv.range(under_prefix(&prefix, SortOrder::Ascend)).await else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        let leader = match resp.kvs.into_iter().next() {
            Some(leader) => Some((header, leader)),
            None => first_put(&kv, &prefix, header.revision).await,
        };
        let Some((header, leader)) = leader else {
            return;
        };
        let watch_from = header.revision + 1;
        let leader_key = leader.key.clone();
        if !send(epb::LeaderResponse {
            header: Some(header),
            kv: Some(leader),
        })
        .await
        {
            return;
        }
        // Each new value of the leader's key, until it is deleted.
        let mut watch = kv.core.store().watch_stream();
        if watch
            .watch(&mvcc::WatchRequest {
                key: leader_key,
                start_revision: watch_from,
                ..Default::default()
            })
            .is_err()
        {
            return;
        }
        'leader: loop {
            let Some(resp) = watch.recv().await else {
                return;
            };
            if resp.compact_revision != 0 {
                return;
            }
            for ev in resp.events {
                if ev.r#type == mvcc::EventType::Delete as i32 {
                    break 'leader;
                }
                let update = epb::LeaderResponse {
                    header: Some(kv.header(resp.revision)),
                    kv: ev.kv.map(crate::convert::key_value),
                };
                if !send(update).await {
                    return;
                }
            }
        }
    }
}

/// The first key put under `prefix` after `revision`, with a header at its revision; `None`
/// when the watch fails.
async fn first_put<C: ServerCore>(
    kv: &RecipeKv<C>,
    prefix: &[u8],
    revision: i64,
) -> Option<(pb::ResponseHeader, api::mvccpb::KeyValue)> {
    let mut watch = kv.core.store().watch_stream();
    watch
        .watch(&mvcc::WatchRequest {
            key: prefix.to_vec(),
            range_end: mvcc::prefix_range_end(prefix),
            start_revision: revision,
            ..Default::default()
        })
        .ok()?;
    loop {
        let resp = watch.recv().await?;
        if resp.compact_revision != 0 {
            return None;
        }
        // Deletes are skipped: the election is still leaderless after one.
        let put = resp
            .events
            .into_iter()
            .find(|ev| ev.r#type == mvcc::EventType::Put as i32)
            .and_then(|ev| ev.kv);
        if let Some(put) = put {
            let header = kv.header(put.mod_revision);
            return Some((header, crate::convert::key_value(put)));
        }
    }
}

fn leader_key(leader: Option<epb::LeaderKey>) -> Result<epb::LeaderKey, Status> {
    leader.ok_or_else(|| recipe_status(RecipeError::MissingLeaderKey))
}

#[tonic::async_trait]
impl<C: ServerCore> Election for ElectionService<C> {
    type ObserveStream = LeaderStream;

    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let resp = ElectionService::campaign(&kv, request.into_inner())
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let r = request.into_inner();
        let leader = leader_key(r.leader)?;
        let header = Self::proclaim(&kv, &leader.key, leader.rev, leader.lease, r.value)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(epb::ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let prefix = participants_prefix(&request.into_inner().name);
        let resp = ElectionService::leader(&kv, &prefix)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let prefix = participants_prefix(&request.into_inner().name);
        let (out, responses) = mpsc::channel(OBSERVE_BUFFER);
        tokio::spawn(async move {
            let closed = out.clone();
            tokio::select! {
                _ = observe(kv, prefix, out) => {}
                // The observer went away while the task waited on the store.
                _ = closed.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        self.kv.require_leader(request.metadata())?;
        let kv = self.kv.for_caller(&request).await?;
        let leader = leader_key(request.into_inner().leader)?;
        // Deletes only the key of this leadership: a newer campaign with the same lease is not
        // resigned by a stale key.
        let header = remove_participant(&kv, leader.key, Some(leader.rev))
            .await
            .map_err(|e: ServerError| recipe_status(e.into()))?;
        Ok(Response::new(epb::ResignResponse {
            header: Some(header),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use api::v3electionpb::election_client::ElectionClient;
    use api::v3lockpb as lockpb;
    use tonic::transport::Channel;
    use tonic::{Code, Streaming};

    use crate::v3rpc::lock::tests::{Fixture, WAIT};

    async fn client(f: &Fixture) -> ElectionClient<Channel> {
        ElectionClient::connect(f.server.endpoint()).await.unwrap()
    }

    fn campaign_request(name: &str, lease: i64, value: &str) -> epb::CampaignRequest {
        epb::CampaignRequest {
            name: name.into(),
            lease,
            value: value.into(),
        }
    }

    type CampaignCall = tokio::task::JoinHandle<Result<epb::CampaignResponse, Status>>;

    fn spawn_campaign(c: &ElectionClient<Channel>, req: epb::CampaignRequest) -> CampaignCall {
        let mut c = c.clone();
        tokio::spawn(async move { c.campaign(req).await.map(Response::into_inner) })
    }

    async fn elected(call: CampaignCall) -> epb::LeaderKey {
        tokio::time::timeout(WAIT, call)
            .await
            .expect("campaign never returned")
            .unwrap()
            .unwrap()
            .leader
            .unwrap()
    }

    async fn leader_value(c: &mut ElectionClient<Channel>, name: &str) -> Result<Vec<u8>, Status> {
        let resp = c.leader(epb::LeaderRequest { name: name.into() }).await?;
        Ok(resp.into_inner().kv.unwrap().value)
    }

    async fn next_value(observed: &mut Streaming<epb::LeaderResponse>) -> Vec<u8> {
        let resp = tokio::time::timeout(WAIT, observed.message())
            .await
            .expect("observe sent nothing")
            .unwrap()
            .expect("observe ended");
        let header = resp.header.unwrap();
        let kv = resp.kv.unwrap();
        assert!(header.revision >= kv.mod_revision);
        kv.value
    }

    fn unknown(message: &str) -> (Code, String) {
        (Code::Unknown, message.to_string())
    }

    fn status_of<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
        let e = r.unwrap_err();
        (e.code(), e.message().to_string())
    }

    #[tokio::test]
    async fn campaign_proclaim_observe_and_resign_hand_leadership_over() {
        let f = Fixture::start().await;
        let mut c = client(&f).await;
        assert_eq!(
            status_of(leader_value(&mut c, "e").await),
            unknown("election: no leader")
        );
        let mut observed = c
            .observe(epb::LeaderRequest { name: "e".into() })
            .await
            .unwrap()
            .into_inner();

        let a = elected(spawn_campaign(&c, campaign_request("e", 10, "a"))).await;
        assert_eq!(
            (a.name.as_slice(), a.key.as_slice()),
            (&b"e"[..], &b"e/a"[..])
        );
        assert_eq!(a.lease, 10);
        let stored = f.get(b"e/a").await.unwrap();
        assert_eq!((stored.create_revision, stored.lease), (a.rev, 10));
        assert_eq!(next_value(&mut observed).await, b"a");

        let b = spawn_campaign(&c, campaign_request("e", 11, "b"));
        f.until_present(b"e/b", true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!b.is_finished(), "b elected while a leads");

        c.proclaim(epb::ProclaimRequest {
            leader: Some(a.clone()),
            value: b"a2".to_vec(),
        })
        .await
        .unwrap();
        assert_eq!(leader_value(&mut c, "e").await.unwrap(), b"a2");
        assert_eq!(next_value(&mut observed).await, b"a2");

        let resigned = c
            .resign(epb::ResignRequest {
                leader: Some(a.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(f.get(b"e/a").await.is_none());
        assert_eq!(
            resigned.header.unwrap().revision,
            f.get(b"e/b").await.unwrap().create_revision + 2
        );
        let b = elected(b).await;
        assert_eq!(b.key, b"e/b");
        assert_eq!(leader_value(&mut c, "e").await.unwrap(), b"b");
        assert_eq!(next_value(&mut observed).await, b"b");

        // The old leadership is gone: proclaiming with it fails, resigning it does nothing.
        let stale = c
            .proclaim(epb::ProclaimRequest {
                leader: Some(a.clone()),
                value: b"again".to_vec(),
            })
            .await;
        assert_eq!(status_of(stale), unknown("election: not leader"));
        c.resign(epb::ResignRequest { leader: Some(a) })
            .await
            .unwrap();
        assert_eq!(leader_value(&mut c, "e").await.unwrap(), b"b");

        // A leader whose lease expires is replaced by the next candidate.
        let next = spawn_campaign(&c, campaign_request("e", 12, "c"));
        f.until_present(b"e/c", true).await;
        f.delete(&b.key).await;
        assert_eq!(elected(next).await.key, b"e/c");
        assert_eq!(next_value(&mut observed).await, b"c");
    }

    #[tokio::test]
    async fn campaigning_again_with_the_same_lease_keeps_the_place_and_takes_the_value() {
        let f = Fixture::start().await;
        let mut c = client(&f).await;
        let first = elected(spawn_campaign(&c, campaign_request("s", 20, "x"))).await;
        let again = elected(spawn_campaign(&c, campaign_request("s", 20, "y"))).await;
        assert_eq!((again.key, again.rev), (first.key, first.rev));
        assert_eq!(leader_value(&mut c, "s").await.unwrap(), b"y");
    }

    #[tokio::test]
    async fn observe_follows_each_leader_value_in_order() {
        let f = Fixture::start().await;
        let mut c = client(&f).await;
        let leader = elected(spawn_campaign(&c, campaign_request("o", 30, "v0"))).await;
        for i in 1..=5 {
            c.proclaim(epb::ProclaimRequest {
                leader: Some(leader.clone()),
                value: format!("v{i}").into_bytes(),
            })
            .await
            .unwrap();
        }
        // A new observer starts from the current value, then sees each later one.
        let mut observed = c
            .observe(epb::LeaderRequest { name: "o".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next_value(&mut observed).await, b"v5");
        for i in 6..=9 {
            c.proclaim(epb::ProclaimRequest {
                leader: Some(leader.clone()),
                value: format!("v{i}").into_bytes(),
            })
            .await
            .unwrap();
        }
        for i in 6..=9 {
            assert_eq!(
                next_value(&mut observed).await,
                format!("v{i}").into_bytes()
            );
        }
    }

    #[tokio::test]
    async fn a_cancelled_campaign_withdraws_its_candidate() {
        let f = Fixture::start().await;
        let c = client(&f).await;
        elected(spawn_campaign(&c, campaign_request("w", 40, "lead"))).await;
        let cancelled = spawn_campaign(&c, campaign_request("w", 41, "next"));
        f.until_present(b"w/29", true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!cancelled.is_finished(), "elected while another leads");
        cancelled.abort();
        f.until_present(b"w/29", false).await;
        assert!(f.get(b"w/28").await.is_some());
    }

    #[tokio::test]
    async fn election_errors_are_etcds() {
        let f = Fixture::start().await;
        let mut c = client(&f).await;
        let missing = "\"leader\" field must be provided";
        let proclaim = c
            .proclaim(epb::ProclaimRequest {
                leader: None,
                value: b"v".to_vec(),
            })
            .await;
        assert_eq!(status_of(proclaim), unknown(missing));
        let resign = c.resign(epb::ResignRequest { leader: None }).await;
        assert_eq!(status_of(resign), unknown(missing));
        let unknown_lease = c.campaign(campaign_request("x", 555, "v")).await;
        assert_eq!(
            status_of(unknown_lease),
            unknown("etcdserver: requested lease not found")
        );
        // Proclaiming with a key that was never elected.
        let never = c
            .proclaim(epb::ProclaimRequest {
                leader: Some(epb::LeaderKey {
                    name: b"x".to_vec(),
                    key: b"x/1".to_vec(),
                    rev: 1,
                    lease: 1,
                }),
                value: b"v".to_vec(),
            })
            .await;
        assert_eq!(status_of(never), unknown("election: not leader"));
    }

    /// The client crate's recipes (what etcdctl runs) and these services share one key
    /// layout, so they exclude each other and see each other's leaders.
    #[tokio::test]
    async fn services_interoperate_with_the_client_side_recipes() {
        use client::concurrency::{Election as ClientElection, Mutex, Session};
        let f = Fixture::start().await;
        let c = client::Client::connect(&[f.server.endpoint()], Default::default())
            .await
            .unwrap();

        // A client-side holder blocks a server-side Lock until it unlocks.
        let session = Session::with_lease(&c, 50);
        let held = Mutex::lock(&session, "shared").await.unwrap();
        assert_eq!(held.key(), b"shared/32");
        let waiting = {
            let c = c.clone();
            tokio::spawn(async move {
                c.lock(lockpb::LockRequest {
                    name: b"shared".to_vec(),
                    lease: 51,
                })
                .await
            })
        };
        f.until_present(b"shared/33", true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "server lock granted while a client holds it"
        );
        held.unlock(&c).await.unwrap();
        let locked = tokio::time::timeout(WAIT, waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(locked.key, b"shared/33");

        // A client-side leader is the server's leader; its resignation elects the server's
        // candidate, which the client side then sees.
        let mut mine = ClientElection::new("vote");
        mine.campaign(&session, "client").await.unwrap();
        let leader = c
            .leader(epb::LeaderRequest {
                name: b"vote".to_vec(),
            })
            .await
            .unwrap();
        assert_eq!(leader.kv.unwrap().value, b"client");
        let mut observed = c.observe("vote").await.unwrap();
        assert_eq!(next_value(&mut observed).await, b"client");
        let candidate = {
            let c = c.clone();
            tokio::spawn(async move {
                c.campaign(epb::CampaignRequest {
                    name: b"vote".to_vec(),
                    lease: 52,
                    value: b"server".to_vec(),
                })
                .await
            })
        };
        f.until_present(b"vote/34", true).await;
        mine.resign(&c).await.unwrap();
        let elected = tokio::time::timeout(WAIT, candidate)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(elected.leader.unwrap().key, b"vote/34");
        assert_eq!(next_value(&mut observed).await, b"server");
        assert_eq!(mine.leader(&c).await.unwrap().value, b"server");
    }
}
