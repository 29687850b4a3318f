//! The client port's plain HTTP endpoints, as etcd serves them beside gRPC: `/health`,
//! `/version` and `/metrics`, with Go's `net/http` answers for wrong methods and unknown paths
//! and etcd's default CORS headers.

mod health;
pub(crate) mod peer;

use std::sync::Arc;

use api::etcdserverpb::AlarmType;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::any;
use axum::Router;

use crate::config::SERVER_VERSION;
use crate::core::ServerCore;
use crate::metrics::{self, metrics};

/// Go's `http.Error` and sniffed types: what etcd's answers carry.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The alarms active on the cluster, for `/health`.
pub type ActiveAlarms = Arc<dyn Fn() -> Vec<AlarmType> + Send + Sync>;

/// The HTTP/1 routes of the client port. `alarms` lists the active alarms (NOSPACE, CORRUPT).
pub fn client_http_router<C: ServerCore>(core: Arc<C>, alarms: ActiveAlarms) -> Router {
    let health_core = core.clone();
    let version_core = core.clone();
    Router::new()
        .route(
            "/health",
            any(move |req: Request<Body>| health::health(health_core.clone(), alarms.clone(), req)),
        )
        .route(
            "/version",
            any(move |method: Method| version(version_core.clone(), method)),
        )
        .route("/metrics", any(move || scrape(core.clone())))
        .fallback(not_found)
        .layer(axum::middleware::map_response(cors))
}

/// etcd's default `--cors '*'`: these headers on every answer.
async fn cors(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Go's `http.Error`: the text and a newline, marked not to be sniffed.
fn http_error(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = respond(status, TEXT_PLAIN, format!("{text}\n"));
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn method_not_allowed() -> Response<Body> {
    let mut response = http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

async fn not_found() -> Response<Body> {
    http_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// `/version`'s body, fields in etcd's order.
#[derive(serde::Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: String,
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain string fields always serialize")
}

/// `/version` (client and peer ports): this binary's version and the cluster's, or etcd's
/// `not_decided` before the leader has set it.
pub(crate) async fn version<C: ServerCore>(core: Arc<C>, method: Method) -> Response<Body> {
    if method != Method::GET {
        return method_not_allowed();
    }
    let body = Versions {
        etcdserver: SERVER_VERSION,
        etcdcluster: core
            .cluster_version()
            .unwrap_or_else(|| "not_decided".to_owned()),
    };
    respond(StatusCode::OK, "application/json", to_json(&body))
}

async fn scrape<C: ServerCore>(core: Arc<C>) -> Response<Body> {
    // Several cores may share the process-wide metrics (tests do); each scrape shows its own.
    static SCRAPE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let text = {
        let _one_at_a_time = SCRAPE.lock();
        let m = metrics();
        m.set_member_id(core.member_id());
        m.set_leader(core.member_id(), core.leader_id());
        match core.store().backend().size() {
            Ok(size) => m
                .db_total_size_in_bytes
                .set(i64::try_from(size).unwrap_or(i64::MAX)),
            Err(e) => tracing::warn!(error = %e, "cannot read the backend's size"),
        }
        m.render()
    };
    respond(StatusCode::OK, metrics::CONTENT_TYPE, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Applied, Limits};
    use crate::error::ServerError;
    use api::etcdserverpb::InternalRaftRequest;
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Clone, Copy, PartialEq)]
    enum Barrier {
        Passes,
        Fails,
        Hangs,
    }

    /// A member whose leadership and read barrier the test sets.
    struct FakeCore {
        store: Arc<mvcc::Store>,
        leader: AtomicU64,
        barrier: Mutex<Barrier>,
        auth: Arc<auth::AuthStore>,
        _dir: tempfile::TempDir,
    }

    const MEMBER: u64 = 0x8e9e_05c5_2164_694d;

    impl FakeCore {
        fn new() -> Arc<FakeCore> {
            let dir = tempfile::tempdir().unwrap();
            let backend = backend::Backend::open(
                dir.path().join("db"),
                Default::default(),
                &crate::server::schema::TABLES,
            )
            .unwrap();
            let store = mvcc::Store::open(Arc::new(backend), Default::default()).unwrap();
            Arc::new(FakeCore {
                store: Arc::new(store),
                leader: AtomicU64::new(MEMBER),
                barrier: Mutex::new(Barrier::Passes),
                auth: Arc::new(auth::AuthStore::new(auth::TokenOptions::None, 4)),
                _dir: dir,
            })
        }
    }

    impl ServerCore for FakeCore {
        fn store(&self) -> &Arc<mvcc::Store> {
            &self.store
        }
        fn cluster_id(&self) -> u64 {
            1
        }
        fn member_id(&self) -> u64 {
            MEMBER
        }
        fn term(&self) -> u64 {
            2
        }
        fn leader_id(&self) -> Option<u64> {
            Some(self.leader.load(Ordering::SeqCst)).filter(|&id| id != 0)
        }
        fn limits(&self) -> Limits {
            Limits::default()
        }
        fn auth_store(&self) -> &Arc<auth::AuthStore> {
            &self.auth
        }
        async fn propose(&self, _req: InternalRaftRequest) -> Result<Applied, ServerError> {
            Err(ServerError::Stopped)
        }
        async fn wait_applied(&self, _index: u64) -> Result<(), ServerError> {
            Ok(())
        }
        async fn read_barrier(&self) -> Result<(), ServerError> {
            let barrier = *self.barrier.lock();
            match barrier {
                Barrier::Passes => Ok(()),
                Barrier::Fails => Err(ServerError::NoLeader),
                Barrier::Hangs => std::future::pending().await,
            }
        }
    }

    struct Answer {
        status: u16,
        head: String,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    struct Server {
        addr: std::net::SocketAddr,
        core: Arc<FakeCore>,
        alarms: Arc<Mutex<Vec<AlarmType>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve() -> Server {
        let core = FakeCore::new();
        let alarms = Arc::new(Mutex::new(Vec::new()));
        let active: ActiveAlarms = {
            let alarms = alarms.clone();
            Arc::new(move || alarms.lock().clone())
        };
        let router = client_http_router(core.clone(), active);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Server {
            addr,
            core,
            alarms,
            task,
        }
    }

    /// One HTTP/1.1 exchange over a fresh connection, read to its end.
    async fn request(server: &Server, method: &str, target: &str) -> Answer {
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req =
            format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
            .await
            .expect("the server answers")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn health_is_true_with_a_leader_and_a_passing_read() {
        let s = serve().await;
        let before = metrics().health_success.get();
        let a = request(&s, "GET", "/health").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, r#"{"health":"true","reason":""}"#);
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
        assert!(metrics().health_success.get() > before);
    }

    #[tokio::test]
    async fn health_is_false_without_a_leader() {
        let s = serve().await;
        s.core.leader.store(0, Ordering::SeqCst);
        let before = metrics().health_failures.get();
        let a = request(&s, "GET", "/health").await;
        assert_eq!(a.status, 503);
        assert_eq!(
            a.body,
            "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
        );
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert!(metrics().health_failures.get() > before);
        // A serializable check does not need a leader.
        let a = request(&s, "GET", "/health?serializable=true").await;
        assert_eq!(a.status, 200, "{}", a.body);
        // Another member is leader: healthy again.
        s.core.leader.store(42, Ordering::SeqCst);
        assert_eq!(request(&s, "GET", "/health").await.status, 200);
    }

    #[tokio::test]
    async fn health_is_false_when_the_read_barrier_fails_or_times_out() {
        let s = serve().await;
        *s.core.barrier.lock() = Barrier::Fails;
        let a = request(&s, "GET", "/health").await;
        assert_eq!(a.status, 503);
        assert_eq!(
            a.body,
            "{\"health\":\"false\",\"reason\":\"RANGE ERROR:etcdserver: no leader\"}\n"
        );
        *s.core.barrier.lock() = Barrier::Hangs;
        let a = request(&s, "GET", "/health").await;
        assert_eq!(a.status, 503);
        assert_eq!(
            a.body,
            "{\"health\":\"false\",\"reason\":\"RANGE ERROR:etcdserver: request timed out\"}\n"
        );
        *s.core.barrier.lock() = Barrier::Passes;
        assert_eq!(request(&s, "GET", "/health").await.status, 200);
    }

    #[tokio::test]
    async fn health_reports_alarms_unless_excluded() {
        let s = serve().await;
        *s.alarms.lock() = vec![AlarmType::Nospace];
        let a = request(&s, "GET", "/health").await;
        assert_eq!(a.status, 503);
        assert_eq!(
            a.body,
            "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n"
        );
        // Alarms count for serializable checks too.
        assert_eq!(
            request(&s, "GET", "/health?serializable=true").await.status,
            503
        );
        let a = request(&s, "GET", "/health?exclude=NOSPACE").await;
        assert_eq!(a.status, 200, "{}", a.body);
        *s.alarms.lock() = vec![AlarmType::Nospace, AlarmType::Corrupt];
        let a = request(&s, "GET", "/health?exclude=NOSPACE").await;
        assert_eq!(
            a.body,
            "{\"health\":\"false\",\"reason\":\"ALARM CORRUPT\"}\n"
        );
        let a = request(&s, "GET", "/health?exclude=NOSPACE&exclude=CORRUPT").await;
        assert_eq!(a.status, 200, "{}", a.body);
    }

    #[tokio::test]
    async fn version_answers_etcds_json() {
        let s = serve().await;
        let a = request(&s, "GET", "/version").await;
        assert_eq!(a.status, 200);
        // The test core has no raft, so no cluster version.
        assert_eq!(
            a.body,
            r#"{"etcdserver":"3.5.17","etcdcluster":"not_decided"}"#
        );
        assert_eq!(a.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["etcdserver"], SERVER_VERSION);
    }

    #[tokio::test]
    async fn wrong_methods_and_paths_get_gos_answers() {
        let s = serve().await;
        for path in ["/health", "/version"] {
            let a = request(&s, "POST", path).await;
            assert_eq!(a.status, 405, "{path}");
            assert_eq!(a.body, "Method Not Allowed\n");
            assert_eq!(a.header("allow"), Some("GET"));
        }
        let a = request(&s, "GET", "/nope").await;
        assert_eq!(a.status, 404);
        assert_eq!(a.body, "404 page not found\n");
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    }

    #[tokio::test]
    async fn metrics_show_this_members_leadership() {
        let s = serve().await;
        let leader_line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("etcd_server_is_leader "))
                .map(str::to_owned)
        };
        let a = request(&s, "GET", "/metrics").await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(
            leader_line(&a.body).as_deref(),
            Some("etcd_server_is_leader 1")
        );
        assert!(a.body.contains("etcd_server_has_leader 1\n"));
        assert!(a
            .body
            .contains("etcd_server_id{server_id=\"8e9e05c52164694d\"} 1\n"));
        assert!(a
            .body
            .contains("# TYPE process_resident_memory_bytes gauge\n"));
        let db_size = a
            .body
            .lines()
            .find_map(|l| l.strip_prefix("etcd_mvcc_db_total_size_in_bytes "))
            .unwrap();
        assert!(db_size.parse::<f64>().unwrap() > 0.0, "{db_size}");

        s.core.leader.store(42, Ordering::SeqCst);
        let a = request(&s, "GET", "/metrics").await;
        assert_eq!(
            leader_line(&a.body).as_deref(),
            Some("etcd_server_is_leader 0")
        );
        assert!(a.body.contains("etcd_server_has_leader 1\n"));
        s.core.leader.store(0, Ordering::SeqCst);
        let a = request(&s, "GET", "/metrics").await;
        assert!(a.body.contains("etcd_server_has_leader 0\n"));
    }
}
