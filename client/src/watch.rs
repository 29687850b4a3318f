//! Watch: many watches multiplexed on one gRPC stream per [`Watcher`], resumed from the last
//! delivered revision when the stream breaks (clientv3's watchGrpcStream).
//!
//! Invariants the multiplexer keeps:
//! - create requests are answered in order, so the oldest pending create owns the next
//!   `created` response;
//! - `next_revision` of a watch is one past the last revision delivered to its owner (events or
//!   progress), so re-creating it from there after a reconnect neither misses nor repeats events.

use std::collections::{HashMap, VecDeque};

use api::etcdserverpb::watch_client::WatchClient;
use api::etcdserverpb::watch_request::RequestUnion;
use api::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use api::mvccpb::Event;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::Streaming;

use crate::client::Client;
use crate::error::{Error, Result};

/// The options of a watch besides its key (etcd's `WatchCreateRequest` fields).
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Empty: the key alone; `"\0"`: every key `>= key`; else `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// 0: from the next revision; otherwise inclusive, replaying history.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    /// `FilterType` values: NOPUT = 0, NODELETE = 1.
    pub filters: Vec<i32>,
    /// Lets the server split a response larger than its message limit (clientv3's `WithFragment`);
    /// the pieces are joined again before delivery.
    pub fragment: bool,
}

/// Events of one watch. Dropping it cancels the watch.
pub struct WatchStream {
    id: u64,
    watch_id: i64,
    responses: mpsc::Receiver<Result<WatchResponse>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl WatchStream {
    /// The next response (events or a progress notification); `Err` once the watch is
    /// canceled by the server (e.g. its start revision is compacted); `None` after that.
    pub async fn message(&mut self) -> Option<Result<WatchResponse>> {
        self.responses.recv().await
    }

    /// The id the server gave this watch when it was first created.
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// Asks the server for a progress notification on this watch's stream.
    pub fn request_progress(&self) {
        let _ = self.commands.send(Command::Progress);
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Cancel(self.id));
    }
}

/// One gRPC Watch stream shared by every watch created through it. Cheap to clone.
#[derive(Clone)]
pub struct Watcher {
    commands: mpsc::UnboundedSender<Command>,
    next_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

enum Command {
    Create {
        id: u64,
        request: WatchCreateRequest,
        responses: mpsc::Sender<Result<WatchResponse>>,
        created: oneshot::Sender<Result<i64>>,
    },
    Cancel(u64),
    Progress,
}

impl Client {
    /// A new watch stream; watches created through the same `Watcher` share it.
    pub fn watcher(&self) -> Watcher {
        let (commands, receiver) = mpsc::unbounded_channel();
        let multiplexer = Multiplexer {
            client: self.clone(),
            commands: receiver,
            watches: HashMap::new(),
            by_server_id: HashMap::new(),
            pending_creates: VecDeque::new(),
            outbound: None,
            fragments: HashMap::new(),
            attempt: 0,
        };
        tokio::spawn(multiplexer.run());
        Watcher {
            commands,
            next_id: Default::default(),
        }
    }

    /// Watches `key` on a stream of its own.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: WatchOptions,
    ) -> Result<WatchStream> {
        self.watcher().watch(key, options).await
    }
}

impl Watcher {
    /// Creates a watch and waits until the server has accepted it.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: WatchOptions,
    ) -> Result<WatchStream> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut key = key.into();
        if key.is_empty() {
            // etcd treats an empty key as "\0", the smallest key.
            key = vec![0];
        }
        let request = WatchCreateRequest {
            key,
            range_end: options.range_end,
            start_revision: options.start_revision,
            progress_notify: options.progress_notify,
            filters: options.filters,
            prev_kv: options.prev_kv,
            watch_id: 0,
            fragment: options.fragment,
        };
        let (responses_tx, responses) = mpsc::channel(1024);
        let (created_tx, created) = oneshot::channel();
        self.commands
            .send(Command::Create {
                id,
                request,
                responses: responses_tx,
                created: created_tx,
            })
            .map_err(|_| Error::Closed)?;
        let watch_id = created.await.map_err(|_| Error::Closed)??;
        Ok(WatchStream {
            id,
            watch_id,
            responses,
            commands: self.commands.clone(),
        })
    }

    /// Asks for a progress notification, delivered to every watch of this stream.
    pub fn request_progress(&self) {
        let _ = self.commands.send(Command::Progress);
    }
}

struct Watch {
    request: WatchCreateRequest,
    responses: Option<mpsc::Sender<Result<WatchResponse>>>,
    created: Option<oneshot::Sender<Result<i64>>>,
    server_id: Option<i64>,
    next_revision: i64,
}

struct Multiplexer {
    client: Client,
    commands: mpsc::UnboundedReceiver<Command>,
    watches: HashMap<u64, Watch>,
    by_server_id: HashMap<i64, u64>,
    pending_creates: VecDeque<u64>,
    outbound: Option<mpsc::UnboundedSender<WatchRequest>>,
    fragments: HashMap<i64, Vec<Event>>,
    attempt: u32,
}

impl Multiplexer {
    async fn run(mut self) {
        let mut inbound: Option<Streaming<WatchResponse>> = None;
        loop {
            if inbound.is_none() && !self.watches.is_empty() {
                match self.connect().await {
                    Ok(stream) => inbound = Some(stream),
                    Err(e) => {
                        if !self.client.recover(&e, &mut self.attempt).await {
                            self.fail_all(e).await;
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => return,
                },
                message = next_message(&mut inbound) => match message {
                    Ok(Some(response)) => {
                        self.attempt = 0;
                        self.handle_response(response).await;
                    }
                    Ok(None) => self.disconnected(&mut inbound),
                    Err(status) => {
                        let error = Error::from(status);
                        self.disconnected(&mut inbound);
                        if !self.client.recover(&error, &mut self.attempt).await {
                            self.fail_all(error).await;
                        }
                    }
                },
            }
        }
    }

    /// Opens the stream and (re-)creates every live watch from its resume revision.
    async fn connect(&mut self) -> Result<Streaming<WatchResponse>> {
        let (outbound, receiver) = mpsc::unbounded_channel();
        self.by_server_id.clear();
        self.pending_creates.clear();
        self.fragments.clear();
        let mut ids: Vec<u64> = self.watches.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let watch = self.watches.get_mut(&id).expect("listed above");
            watch.server_id = None;
            let mut request = watch.request.clone();
            if watch.next_revision > 0 {
                request.start_revision = watch.next_revision;
            }
            let _ = outbound.send(create(request));
            self.pending_creates.push_back(id);
        }
        let (_, channel) = self.client.channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(receiver));
        self.client.attach_token(request.metadata_mut());
        request
            .metadata_mut()
            .insert("hasleader", AsciiMetadataValue::from_static("true"));
        self.outbound = Some(outbound);
        let response = tokio::time::timeout(
            self.client.inner.options.request_timeout,
            rpc_client!(WatchClient, channel, self.client).watch(request),
        )
        .await
        .map_err(|_| Error::DeadlineExceeded)??;
        Ok(response.into_inner())
    }

    fn disconnected(&mut self, inbound: &mut Option<Streaming<WatchResponse>>) {
        *inbound = None;
        self.outbound = None;
    }

    fn send(&self, request: WatchRequest) {
        if let Some(outbound) = &self.outbound {
            let _ = outbound.send(request);
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Create {
                id,
                request,
                responses,
                created,
            } => {
                self.watches.insert(
                    id,
                    Watch {
                        request: request.clone(),
                        responses: Some(responses),
                        created: Some(created),
                        server_id: None,
                        next_revision: request.start_revision,
                    },
                );
                if self.outbound.is_some() {
                    self.send(create(request));
                    self.pending_creates.push_back(id);
                }
            }
            Command::Cancel(id) => {
                let Some(watch) = self.watches.get_mut(&id) else {
                    return;
                };
                match watch.server_id {
                    Some(server_id) => {
                        self.by_server_id.remove(&server_id);
                        self.watches.remove(&id);
                        self.send(WatchRequest {
                            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                                watch_id: server_id,
                            })),
                        });
                    }
                    // Not created yet: drop its sender now, cancel it when `created` arrives.
                    None if self.pending_creates.contains(&id) => watch.responses = None,
                    None => {
                        self.watches.remove(&id);
                    }
                }
            }
            Command::Progress => self.send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            }),
        }
    }

    async fn handle_response(&mut self, mut response: WatchResponse) {
        if response.created {
            self.handle_created(response);
            return;
        }
        let Some(&id) = self.by_server_id.get(&response.watch_id) else {
            if response.watch_id == -1 && is_progress_notify(&response) {
                self.broadcast_progress(response).await;
            }
            return;
        };
        if response.canceled {
            self.by_server_id.remove(&response.watch_id);
            if let Some(watch) = self.watches.remove(&id) {
                let error = Error::WatchCanceled {
                    reason: response.cancel_reason.clone(),
                    compact_revision: response.compact_revision,
                };
                if let Some(sender) = watch.responses {
                    let _ = sender.send(Err(error)).await;
                }
            }
            return;
        }
        if response.fragment {
            self.fragments
                .entry(response.watch_id)
                .or_default()
                .append(&mut response.events);
            return;
        }
        if let Some(mut earlier) = self.fragments.remove(&response.watch_id) {
            earlier.append(&mut response.events);
            response.events = earlier;
        }
        self.deliver(id, response).await;
    }

    fn handle_created(&mut self, response: WatchResponse) {
        let Some(id) = self.pending_creates.pop_front() else {
            return;
        };
        let Some(watch) = self.watches.get_mut(&id) else {
            return;
        };
        if response.canceled || response.watch_id < 0 {
            let reason = if response.cancel_reason.is_empty() {
                "watch canceled by the server".to_string()
            } else {
                response.cancel_reason
            };
            let error = Error::WatchCanceled {
                reason,
                compact_revision: response.compact_revision,
            };
            let watch = self.watches.remove(&id).expect("looked up above");
            match watch.created {
                Some(created) => {
                    let _ = created.send(Err(error));
                }
                None => {
                    if let Some(sender) = watch.responses {
                        let _ = sender.try_send(Err(error));
                    }
                }
            }
            return;
        }
        if watch.responses.is_none() {
            // Canceled by its owner before the server created it.
            self.watches.remove(&id);
            self.send(WatchRequest {
                request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                    watch_id: response.watch_id,
                })),
            });
            return;
        }
        watch.server_id = Some(response.watch_id);
        self.by_server_id.insert(response.watch_id, id);
        if watch.next_revision <= 0 {
            let revision = response.header.as_ref().map_or(0, |h| h.revision);
            watch.next_revision = revision + 1;
        }
        let caller_gone = watch
            .created
            .take()
            .is_some_and(|created| created.send(Ok(response.watch_id)).is_err());
        if caller_gone {
            // Whoever asked for this watch stopped waiting for it: nobody will read it.
            self.handle_command(Command::Cancel(id));
        }
    }

    async fn deliver(&mut self, id: u64, response: WatchResponse) {
        let Some(watch) = self.watches.get_mut(&id) else {
            return;
        };
        let delivered_through = match response.events.last() {
            Some(event) => event.kv.as_ref().map_or(0, |kv| kv.mod_revision),
            None => response.header.as_ref().map_or(0, |h| h.revision),
        };
        watch.next_revision = watch.next_revision.max(delivered_through + 1);
        let Some(sender) = &watch.responses else {
            return;
        };
        if sender.send(Ok(response)).await.is_err() {
            self.handle_command(Command::Cancel(id));
        }
    }

    async fn broadcast_progress(&mut self, response: WatchResponse) {
        let ids: Vec<u64> = self.by_server_id.values().copied().collect();
        for id in ids {
            self.deliver(id, response.clone()).await;
        }
    }

    /// A failure that retrying cannot fix (e.g. permission denied): every watch ends with it.
    async fn fail_all(&mut self, error: Error) {
        for (_, watch) in self.watches.drain() {
            match (watch.created, watch.responses) {
                (Some(created), _) => {
                    let _ = created.send(Err(error.clone()));
                }
                (None, Some(sender)) => {
                    let _ = sender.send(Err(error.clone())).await;
                }
                (None, None) => {}
            }
        }
        self.by_server_id.clear();
        self.pending_creates.clear();
        self.outbound = None;
    }
}

async fn next_message(
    inbound: &mut Option<Streaming<WatchResponse>>,
) -> std::result::Result<Option<WatchResponse>, tonic::Status> {
    match inbound {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

fn create(request: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(request)),
    }
}

/// clientv3's `IsProgressNotify`.
pub(crate) fn is_progress_notify(response: &WatchResponse) -> bool {
    response.events.is_empty()
        && !response.canceled
        && !response.created
        && response.compact_revision == 0
        && response.header.as_ref().is_some_and(|h| h.revision != 0)
}
