//! Listeners (etcd's `embed.Etcd`): the peer port serves the raft transport; each client port
//! serves gRPC (h2c, or h2 over TLS) and HTTP/1 (`/health`, `/version`, `/metrics`) on the same
//! socket, as etcd does with cmux. `https`/`unixs` URLs are served over TLS (crate::transport).

mod authority;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::service::Routes;

use crate::config::{ClusterState, ListenAddr, ServerConfig, TlsConfig};
use crate::core::ServerCore;
use crate::server::{EtcdServer, ServerParams, StartError, SNAPSHOT_CATCH_UP_ENTRIES};
use crate::transport::TlsError;
use crate::v3rpc::cluster::ClusterService;
use crate::v3rpc::kv::{KvService, GRPC_OVERHEAD_BYTES};
use crate::v3rpc::maintenance::MaintenanceService;
use crate::v3rpc::watch::{WatchService, DEFAULT_PROGRESS_NOTIFY_INTERVAL};
use listener::{Bound, PeerListener};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("listen {addr}: bind: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the member stopped: {0}")]
    Stopped(String),
}

/// Where to listen (plain TCP).
#[derive(Debug, Clone)]
pub struct ListenAddrs {
    pub client: Vec<SocketAddr>,
    pub peer: Vec<SocketAddr>,
}

/// One listen URL: where, and whether over TLS.
struct Listen {
    addr: ListenAddr,
    secure: bool,
}

/// Binds every URL; https/unixs ones get `tls` (present whenever such a URL is configured:
/// the configuration refuses https without a certificate or auto TLS).
async fn bind_all(
    urls: &[Listen],
    tls: Option<&crate::transport::TlsAcceptor>,
) -> Result<Vec<Bound>, RunError> {
    let mut listeners = Vec::with_capacity(urls.len());
    for url in urls {
        let tls = if url.secure { tls.cloned() } else { None };
        listeners.push(Bound::bind(&url.addr, tls).await?);
    }
    Ok(listeners)
}

/// The gRPC services and HTTP endpoints of the client port.
pub fn client_routes(server: &EtcdServer) -> Routes {
    let core = Arc::new(server.clone());
    let max_recv = server.limits().max_request_bytes + GRPC_OVERHEAD_BYTES;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // etcd registers the empty service name as SERVING.
    drop(health_reporter);
    let kv = KvService::new(core.clone()).into_server();
    let watch = WatchService::new(core.clone(), DEFAULT_PROGRESS_NOTIFY_INTERVAL)
        .with_election_timeout(server.election_timeout())
        .into_server();
    let maintenance =
        api::etcdserverpb::maintenance_server::MaintenanceServer::new(MaintenanceService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = api::etcdserverpb::cluster_server::ClusterServer::new(ClusterService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv);
    let lock = crate::v3rpc::lock::LockService::new(core.clone()).into_server();
    let election = crate::v3rpc::election::ElectionService::new(core.clone()).into_server();
    let auth = crate::v3rpc::auth::AuthService::new(core.clone()).into_server();
    let lease = crate::v3rpc::lease::LeaseService::new(server.clone())
        .into_server()
        .max_decoding_message_size(max_recv);
    let alarms: crate::http::ActiveAlarms = {
        let server = server.clone();
        Arc::new(move || server.active_alarms().iter().map(|m| m.alarm()).collect())
    };
    let routes = Routes::from(crate::http::client_http_router(core, alarms))
        .add_service(kv)
        .add_service(watch)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(lock)
        .add_service(election)
        .add_service(lease)
        .add_service(auth)
        .add_service(health_service);
    let routes = crate::v3rpc::message_size::in_grpc_go_words(routes.into_axum_router());
    Routes::from(crate::v3rpc::learner_guard::guard(server.clone(), routes))
}

/// Runs the `etcd` binary's member from its parsed flags.
pub fn run(config: ServerConfig) -> Result<(), RunError> {
    let params = ServerParams {
        name: config.name.clone(),
        data_dir: config.data_dir.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
        initial_cluster: config.initial_cluster.clone(),
        new_cluster: config.cluster_state == ClusterState::New,
        token: config.initial_cluster_token.clone(),
        heartbeat: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_count: config.snapshot_count,
        snapshot_catch_up_entries: SNAPSHOT_CATCH_UP_ENTRIES,
        corrupt_check: config.corrupt_check.clone(),
        limits: config.limits(),
        auto_compaction: config.auto_compaction,
        lease_checkpoint_interval: config.lease_checkpoint_interval,
        auth: config.auth.clone(),
        quota_backend_bytes: config.quota_backend_bytes,
        downgrade_check_time: config.downgrade_check_time,
        test_only_apply_delay: config.test_only_apply_delay,
    };
    let listen = |urls: &[crate::config::ListenUrl]| -> Vec<Listen> {
        urls.iter()
            .map(|u| Listen {
                addr: u.addr.clone(),
                secure: u.secure,
            })
            .collect()
    };
    let client = listen(&config.listen_client_urls);
    let peer = listen(&config.listen_peer_urls);
    let text = |urls: &[crate::config::ListenUrl]| -> Vec<String> {
        urls.iter().map(|u| u.url.clone()).collect()
    };
    let client_text = text(&config.listen_client_urls);
    let peer_text = text(&config.listen_peer_urls);
    serve(
        params,
        client,
        peer,
        Some((config.tls, client_text, peer_text)),
    )
}

/// Starts the member and serves plain HTTP until it stops or the process gets SIGINT/SIGTERM.
pub fn run_server(params: ServerParams, listen: ListenAddrs) -> Result<(), RunError> {
    let plain = |addrs: &[SocketAddr]| -> Vec<Listen> {
        addrs
            .iter()
            .map(|&a| Listen {
                addr: ListenAddr::Tcp(a),
                secure: false,
            })
            .collect()
    };
    serve(params, plain(&listen.client), plain(&listen.peer), None)
}

/// The TLS settings with the listen URLs they serve (for auto TLS's certificate names).
type TlsUrls = (TlsConfig, Vec<String>, Vec<String>);

fn serve(
    params: ServerParams,
    client: Vec<Listen>,
    peer: Vec<Listen>,
    tls: Option<TlsUrls>,
) -> Result<(), RunError> {
    // Every certificate, key and CA file is read here, before anything is bound or started.
    let tls = match &tls {
        Some((config, client_urls, peer_urls)) => Some(crate::transport::setup(
            config,
            &params.data_dir,
            client_urls,
            peer_urls,
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("etcd-io")
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async move {
        let (client_tls, peer_tls, dialer) = match tls {
            Some(setup) => (setup.client, setup.peer, setup.dialer),
            None => (None, None, rafthttp::Dialer::plain()),
        };
        let peer_listeners = bind_all(&peer, peer_tls.as_ref()).await?;
        let client_listeners = bind_all(&client, client_tls.as_ref()).await?;
        let auto_compaction = params.auto_compaction;
        let (server, threads) = EtcdServer::start_with_dialer(params, dialer)?;
        if let Some(mode) = auto_compaction {
            crate::server::compactor::spawn(server.clone(), mode);
        }

        let peer_router = crate::http::peer::router(&server);
        for l in peer_listeners {
            let router = peer_router.clone();
            let connections = PeerListener(l.spawn_accept());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(connections, router).await {
                    tracing::error!(error = %e, "peer listener failed");
                }
            });
        }
        // As etcd, clients are served once the member has published itself (its attributes
        // applied through raft), so the first `member list` already shows its client URLs.
        // Connections wait in the listeners' backlog meanwhile.
        while !server.is_published() {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                _ = server.stopped() => return Err(RunError::Stopped("stopped before serving clients".into())),
            }
        }
        spawn_backend_gauges(server.clone());
        let routes = client_routes(&server);
        let max_streams = server.limits().max_concurrent_streams;
        for l in client_listeners {
            let routes = routes.clone();
            tracing::info!(address = %l.describe(), tls = l.is_tls(), "serving client traffic (gRPC and HTTP)");
            tokio::spawn(async move {
                use tokio_stream::StreamExt;
                let incoming = tokio_stream::wrappers::ReceiverStream::new(l.spawn_accept())
                    .map(|accepted| {
                        Ok::<_, std::io::Error>(crate::embed::authority::ClientConn::new(accepted))
                    });
                let served = tonic::transport::Server::builder()
                    .accept_http1(true)
                    .max_concurrent_streams(max_streams)
                    .add_routes(routes)
                    .serve_with_incoming(incoming)
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "client listener failed");
                }
            });
        }

        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(RunError::Runtime)?;
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("received interrupt signal, shutting down"); Ok(()) }
            _ = sigterm.recv() => { tracing::info!("received terminated signal, shutting down"); Ok(()) }
            _ = server.stopped() => Err(RunError::Stopped("see the log above".into())),
        };
        let stopping = server.clone();
        tokio::task::spawn_blocking(move || stopping.stop(threads))
            .await
            .map_err(|e| RunError::Stopped(e.to_string()))?;
        outcome
    })
}

/// Keeps the database size gauges current, as etcd's backend reports them. Measuring the space
/// in use opens a write transaction and walks the table trees, so it runs on a blocking thread
/// and only every `IN_USE_EVERY` seconds; the file size is cheap and follows every second.
fn spawn_backend_gauges(server: EtcdServer) {
    const IN_USE_EVERY: u32 = 10;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut in_use = 0;
        for tick in 0u32.. {
            every.tick().await;
            let backend = server.store().backend().clone();
            let measure_in_use = tick % IN_USE_EVERY == 0;
            let measured = tokio::task::spawn_blocking(move || {
                let total = backend.size().ok()?;
                let in_use = if measure_in_use {
                    Some(backend.size_in_use().ok()?)
                } else {
                    None
                };
                Some((total, in_use))
            })
            .await;
            let Ok(Some((total, measured_in_use))) = measured else {
                continue;
            };
            in_use = measured_in_use.unwrap_or(in_use);
            crate::metrics::hooks::backend_size(total, in_use);
        }
    });
}
