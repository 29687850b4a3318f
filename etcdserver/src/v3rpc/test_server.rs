//! The KV, Watch, Lock, Election and Auth services of a core on a local port, for tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::auth::AuthService;
use super::election::ElectionService;
use super::kv::KvService;
use super::lock::LockService;
use super::watch::WatchService;
use crate::core::ServerCore;

/// The KV, Watch, Lock, Election and Auth services of `core` on a free port of 127.0.0.1; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start<C: ServerCore>(
        core: Arc<C>,
        progress_notify_interval: Duration,
    ) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                stream
            });
            Some((accepted, listener))
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(KvService::new(core.clone()).into_server())
            .add_service(WatchService::new(core.clone(), progress_notify_interval).into_server())
            .add_service(LockService::new(core.clone()).into_server())
            .add_service(AuthService::new(core.clone()).into_server())
            .add_service(ElectionService::new(core).into_server());
        tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                tracing::error!(error = %e, "test server failed");
            }
        });
        Ok(TestServer {
            addr,
            shutdown: Some(shutdown),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
