//! The Watch gRPC service (etcd's `v3rpc/watch.go`): one mvcc watch stream per gRPC stream,
//! driven by one task that reads the client's requests, forwards the store's responses and
//! sends the periodic progress notifications.
//!
//! Because one task does all the sending, a watcher's `created` response always goes out
//! before any of its events (etcd needs a pending buffer for that; we get it by ordering).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb as pb;
use api::etcdserverpb::watch_create_request::FilterType;
use api::etcdserverpb::watch_request::RequestUnion;
use api::etcdserverpb::watch_server::{Watch, WatchServer};
use futures::Stream;
use prost::Message;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::core::ServerCore;
use crate::error::ServerError;
use crate::v3rpc::identity::auth_info;
use crate::v3rpc::kv::{requires_leader, GRPC_OVERHEAD_BYTES};
use crate::v3rpc::permission;

/// etcd's default `--experimental-watch-progress-notify-interval`.
pub const DEFAULT_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
/// etcd refuses shorter intervals.
pub const MIN_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);
/// Responses queued for the client before the stream's task waits for it (etcd's
/// `ctrlStreamBufLen`).
const OUTBOUND_BUFFER: usize = 128;
/// etcd's default `--election-timeout`.
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// A `hasleader` stream ends after this many election timeouts in a row without a leader
/// (etcd's `maxNoLeaderCnt`).
const MAX_NO_LEADER_CHECKS: u32 = 3;

pub struct WatchService<C: ServerCore> {
    core: Arc<C>,
    progress_notify_interval: Duration,
    election_timeout: Duration,
}

impl<C: ServerCore> WatchService<C> {
    /// `progress_notify_interval`: how often watchers that asked for it get a progress
    /// notification when nothing else was sent to them (at least 100 ms, as etcd).
    pub fn new(core: Arc<C>, progress_notify_interval: Duration) -> Self {
        Self {
            core,
            progress_notify_interval: progress_notify_interval.max(MIN_PROGRESS_NOTIFY_INTERVAL),
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
        }
    }

    /// The member's `--election-timeout`: streams created with `hasleader` metadata end with
    /// `etcdserver: no leader` once three checks, one per election timeout, found no leader.
    pub fn with_election_timeout(mut self, election_timeout: Duration) -> Self {
        self.election_timeout = election_timeout.max(Duration::from_millis(1));
        self
    }

    pub fn into_server(self) -> WatchServer<Self> {
        let limit = self
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        WatchServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }
}

pub type WatchResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<C: ServerCore> Watch for WatchService<C> {
    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let requires_leader = requires_leader(request.metadata());
        if requires_leader && self.core.leader_id().is_none() {
            return Err(ServerError::NoLeader.into());
        }
        let (outbound, responses) = mpsc::channel(OUTBOUND_BUFFER);
        let stream = ServerWatchStream {
            watchers: self.core.store().watch_stream(),
            core: self.core.clone(),
            outbound,
            progress: HashMap::new(),
            fragment: HashSet::new(),
            // etcd's limit for a whole message: what gRPC accepts on top of the flag.
            max_response_bytes: self
                .core
                .limits()
                .max_request_bytes
                .saturating_add(GRPC_OVERHEAD_BYTES),
        };
        let leader_check = requires_leader.then_some(self.election_timeout);
        // The caller's metadata stays with the stream: each watch is checked when created.
        let (metadata, extensions, inbound) = request.into_parts();
        let caller = Request::from_parts(metadata, extensions, ());
        tokio::spawn(stream.run(inbound, caller, self.progress_notify_interval, leader_check));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// Why the stream's task stops sending.
enum Stop {
    /// The client went away or the stream broke: nobody to tell.
    ClientGone,
    /// The client's side of the stream failed: tell it why, if it still listens.
    Error(Status),
}

struct ServerWatchStream<C: ServerCore> {
    core: Arc<C>,
    watchers: mvcc::WatchStream,
    outbound: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Watchers that asked for progress notifications, and whether the next tick should send
    /// one (false once events went out in the interval).
    progress: HashMap<mvcc::WatchId, bool>,
    fragment: HashSet<mvcc::WatchId>,
    max_response_bytes: usize,
}

impl<C: ServerCore> ServerWatchStream<C> {
    /// `leader_check`: the election timeout, when the stream needs a leader.
    async fn run(
        mut self,
        mut inbound: Streaming<pb::WatchRequest>,
        caller: Request<()>,
        interval: Duration,
        leader_check: Option<Duration>,
    ) {
        let now = tokio::time::Instant::now();
        let period = with_jitter(interval);
        let mut ticker = tokio::time::interval_at(now + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader_ticker =
            leader_check.map(|every| tokio::time::interval_at(now + every, every));
        let mut leaderless_checks = 0;
        // etcd keeps serving a stream whose client closed its sending side.
        let mut inbound_open = true;
        let stop = loop {
            let step = tokio::select! {
                request = inbound.message(), if inbound_open => match request {
                    Ok(Some(request)) => self.handle_request(request, &caller).await,
                    Ok(None) => {
                        inbound_open = false;
                        Ok(())
                    }
                    Err(status) => Err(inbound_error(status)),
                },
                response = self.watchers.recv() => match response {
                    Some(response) => self.send_watch_response(response).await,
                    None => Err(Stop::ClientGone),
                },
                _ = ticker.tick() => {
                    self.notify_progress();
                    Ok(())
                }
                _ = tick(&mut leader_ticker) => {
                    if self.core.leader_id().is_none() {
                        leaderless_checks += 1;
                    } else {
                        leaderless_checks = 0;
                    }
                    if leaderless_checks >= MAX_NO_LEADER_CHECKS {
                        Err(Stop::Error(ServerError::NoLeader.into()))
                    } else {
                        Ok(())
                    }
                }
                _ = self.outbound.closed() => Err(Stop::ClientGone),
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        let Self {
            watchers, outbound, ..
        } = self;
        drop(watchers);
        if let Stop::Error(status) = stop {
            // Bounded: a client that reads nothing does not keep the task.
            let _ = tokio::time::timeout(STATUS_SEND_TIMEOUT, outbound.send(Err(status))).await;
        }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        let mut header = self.core.header();
        header.revision = revision;
        Some(header)
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), Stop> {
        self.outbound
            .send(Ok(response))
            .await
            .map_err(|_| Stop::ClientGone)
    }

    async fn handle_request(
        &mut self,
        request: pb::WatchRequest,
        caller: &Request<()>,
    ) -> Result<(), Stop> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create, caller).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                let id = cancel.watch_id;
                if !self.watchers.cancel(id) {
                    return Ok(()); // etcd answers nothing for an unknown id
                }
                self.progress.remove(&id);
                self.fragment.remove(&id);
                let revision = self.core.store().current_revision();
                self.send(pb::WatchResponse {
                    header: self.header(revision),
                    watch_id: id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Answered (watch id -1) only when every watcher of the stream is synced,
                // so that the revision covers all of them.
                self.watchers.request_progress_all();
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(
        &mut self,
        create: pb::WatchCreateRequest,
        caller: &Request<()>,
    ) -> Result<(), Stop> {
        let revision = self.core.store().current_revision();
        let header = self.header(revision);
        let refused = move |reason: String| pb::WatchResponse {
            header,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        if create.start_revision < 0 {
            let response = refused(ServerError::Compacted.to_string());
            return self.send(response).await;
        }
        if let Some(reason) = self.permission_refusal(&create, caller).await {
            return self.send(refused(reason)).await;
        }
        let filters: Vec<FilterType> = create
            .filters
            .iter()
            .filter_map(|f| FilterType::try_from(*f).ok())
            .collect();
        let request = mvcc::WatchRequest {
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
            prev_kv: create.prev_kv,
            watch_id: create.watch_id,
        };
        let response = match self.watchers.watch(&request) {
            Ok(id) => {
                if create.progress_notify {
                    self.progress.insert(id, true);
                }
                if create.fragment {
                    self.fragment.insert(id);
                }
                pb::WatchResponse {
                    header: self.header(revision),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                }
            }
            Err(e) => refused(e.to_string()),
        };
        self.send(response).await
    }

    /// etcd's `isWatchPermitted`: with auth on, the caller needs READ on what the watch covers;
    /// a refusal cancels the watch with the gRPC error text etcd's clients print. The range is
    /// checked as given (`"\0"` is "from the key on"), as etcd 3.5.33 does.
    async fn permission_refusal(
        &self,
        create: &pb::WatchCreateRequest,
        caller: &Request<()>,
    ) -> Option<String> {
        let auth = self.core.auth_store();
        if !auth.is_enabled() {
            return None;
        }
        let info = match auth_info(&*self.core, caller).await {
            Ok(info) => info,
            Err(status) => return Some(permission::status_text(&status)),
        };
        // An empty key is the smallest key, "\0".
        let key: &[u8] = if create.key.is_empty() {
            &[0]
        } else {
            &create.key
        };
        auth.is_range_permitted(&info, key, &create.range_end)
            .err()
            .map(permission::watch_cancel_reason)
    }

    async fn send_watch_response(&mut self, response: mvcc::WatchResponse) -> Result<(), Stop> {
        let id = response.watch_id;
        let has_events = !response.events.is_empty();
        let canceled = response.compact_revision != 0;
        let response = pb::WatchResponse {
            header: self.header(response.revision),
            watch_id: id,
            canceled,
            compact_revision: response.compact_revision,
            events: response.events.into_iter().map(convert::event).collect(),
            ..Default::default()
        };
        let fragment = self.fragment.contains(&id);
        if canceled {
            self.progress.remove(&id);
            self.fragment.remove(&id);
        }
        if fragment {
            for piece in fragments(response, self.max_response_bytes) {
                self.send(piece).await?;
            }
        } else {
            self.send(response).await?;
        }
        if has_events {
            if let Some(due) = self.progress.get_mut(&id) {
                *due = false;
            }
        }
        Ok(())
    }

    /// etcd's progress ticker: a notification for each watcher that got no events since the
    /// last tick (mvcc sends it only if the watcher is synced).
    fn notify_progress(&mut self) {
        for (id, due) in self.progress.iter_mut() {
            if *due {
                self.watchers.request_progress(*id);
            }
            *due = true;
        }
    }
}

/// How long the final status of a stream may wait for room in the client's queue.
const STATUS_SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn inbound_error(status: Status) -> Stop {
    match status.code() {
        tonic::Code::Cancelled => Stop::Error(ServerError::WatchCanceled.into()),
        _ => {
            tracing::debug!(error = %status, "watch stream receive failed");
            Stop::ClientGone
        }
    }
}

/// `interval` plus up to a tenth of it, so that watchers created together do not all get
/// their notifications at the same moment (as etcd).
fn with_jitter(interval: Duration) -> Duration {
    let tenth = (interval.as_nanos() / 10).min(u64::MAX as u128) as u64;
    let jitter = if tenth == 0 {
        0
    } else {
        rand::rng().random_range(0..tenth)
    };
    interval + Duration::from_nanos(jitter)
}

/// etcd's `sendFragments`: a response of at least `limit` bytes with two or more events is
/// split into pieces below `limit` (a single event larger than it travels alone); every piece
/// but the last has `fragment` set.
pub fn fragments(response: pb::WatchResponse, limit: usize) -> Vec<pb::WatchResponse> {
    if response.encoded_len() < limit || response.events.len() < 2 {
        return vec![response];
    }
    let mut pieces = Vec::new();
    let mut events = response.events.into_iter().peekable();
    let empty = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..response
    };
    while events.peek().is_some() {
        let mut piece = empty.clone();
        let mut size = piece.encoded_len();
        while let Some(event) = events.peek() {
            let grown = size + prost::encoding::message::encoded_len(11, event);
            if !piece.events.is_empty() && grown >= limit {
                break;
            }
            size = grown;
            piece.events.extend(events.next());
        }
        pieces.push(piece);
    }
    if let Some(last) = pieces.last_mut() {
        last.fragment = false;
    }
    pieces
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod grpc_tests;
