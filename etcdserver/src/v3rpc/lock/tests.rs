use super::*;
use std::time::Duration;

use api::etcdserverpb::kv_client::KvClient;
use api::v3lockpb::lock_client::LockClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::core::Limits;
use crate::testing::DirectCore;
use crate::v3rpc::test_server::TestServer;

/// Bounds every wait of these tests; a correct server answers in milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);
/// Leases the fixture's member knows.
pub const KNOWN_LEASES: std::ops::RangeInclusive<i64> = 1..=100;

pub struct Fixture {
    pub core: Arc<DirectCore>,
    pub server: TestServer,
    pub kv: KvClient<Channel>,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let core = DirectCore::with_lease_check(Limits::default(), |id| KNOWN_LEASES.contains(&id))
            .unwrap();
        let server = TestServer::start(core.clone(), Duration::from_secs(600))
            .await
            .unwrap();
        let kv = KvClient::connect(server.endpoint()).await.unwrap();
        Fixture { core, server, kv }
    }

    pub async fn lock_client(&self) -> LockClient<Channel> {
        LockClient::connect(self.server.endpoint()).await.unwrap()
    }

    pub async fn get(&self, key: &[u8]) -> Option<mvccpb::KeyValue> {
        let resp = self
            .kv
            .clone()
            .range(pb::RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        resp.kvs.into_iter().next()
    }

    /// Simulates the expiry of the lease a key is attached to.
    pub async fn delete(&self, key: &[u8]) {
        let resp = self
            .kv
            .clone()
            .delete_range(pb::DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.deleted, 1, "{}", String::from_utf8_lossy(key));
    }

    /// Returns once `key` exists (or not, per `present`), failing after [`WAIT`].
    pub async fn until_present(&self, key: &[u8], present: bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.get(key).await.is_some() != present {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never became present={present}",
                String::from_utf8_lossy(key)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn lock_request(name: &str, lease: i64) -> lockpb::LockRequest {
    lockpb::LockRequest {
        name: name.into(),
        lease,
    }
}

type LockCall = tokio::task::JoinHandle<Result<lockpb::LockResponse, Status>>;

fn spawn_lock(client: &LockClient<Channel>, name: &str, lease: i64) -> LockCall {
    let mut client = client.clone();
    let req = lock_request(name, lease);
    tokio::spawn(async move { client.lock(req).await.map(Response::into_inner) })
}

async fn finished(call: LockCall) -> lockpb::LockResponse {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("lock call never returned")
        .unwrap()
        .unwrap()
}

/// A call still waiting after its competitors had time to act.
async fn still_waiting(call: &LockCall) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished(), "lock granted while another holds it");
}

#[test]
fn session_keys_print_the_lease_as_go_does() {
    assert_eq!(
        session_key(b"n/", 0x694d77aa9e5e2f0b),
        b"n/694d77aa9e5e2f0b"
    );
    assert_eq!(session_key(b"n/", 10), b"n/a");
    assert_eq!(session_key(b"n/", -255), b"n/-ff");
}

#[tokio::test]
async fn uncontended_lock_creates_the_leased_key_and_unlock_deletes_it() {
    let f = Fixture::start().await;
    let mut locks = f.lock_client().await;
    let locked = locks
        .lock(lock_request("job", 26))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(locked.key, b"job/1a");
    let kv = f.get(b"job/1a").await.unwrap();
    assert_eq!((kv.lease, kv.value.as_slice()), (26, &b""[..]));
    let header = locked.header.unwrap();
    assert_eq!(header.revision, kv.create_revision);
    assert_eq!(
        (header.cluster_id, header.member_id),
        (crate::testing::CLUSTER_ID, crate::testing::MEMBER_ID)
    );

    // The same lease holds it already: the same key, at once.
    let again = locks
        .lock(lock_request("job", 26))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.key, b"job/1a");
    assert_eq!(
        f.get(b"job/1a").await.unwrap().create_revision,
        kv.create_revision
    );

    let unlocked = locks
        .unlock(lockpb::UnlockRequest {
            key: locked.key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlocked.header.unwrap().revision, kv.create_revision + 1);
    assert!(f.get(b"job/1a").await.is_none());
}

#[tokio::test]
async fn waiters_get_the_lock_one_at_a_time_in_arrival_order() {
    let f = Fixture::start().await;
    let locks = f.lock_client().await;
    let first = finished(spawn_lock(&locks, "q", 1)).await;
    let second = spawn_lock(&locks, "q", 2);
    f.until_present(b"q/2", true).await;
    let third = spawn_lock(&locks, "q", 3);
    f.until_present(b"q/3", true).await;
    still_waiting(&second).await;
    still_waiting(&third).await;

    locks
        .clone()
        .unlock(lockpb::UnlockRequest { key: first.key })
        .await
        .unwrap();
    let second = finished(second).await;
    assert_eq!(second.key, b"q/2");
    still_waiting(&third).await;

    locks
        .clone()
        .unlock(lockpb::UnlockRequest { key: second.key })
        .await
        .unwrap();
    let third = finished(third).await;
    assert_eq!(third.key, b"q/3");
    // The holder's header is at or after the release that let it in.
    assert!(third.header.unwrap().revision >= f.get(b"q/3").await.unwrap().create_revision);
}

#[tokio::test]
async fn concurrent_holders_never_overlap() {
    let f = Fixture::start().await;
    let locks = f.lock_client().await;
    let inside = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = Vec::new();
    for lease in 1..=6 {
        let mut locks = locks.clone();
        let inside = inside.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..3 {
                let held = locks.lock(lock_request("mx", lease)).await.unwrap();
                let key = held.into_inner().key;
                let others = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(others, 0, "two holders at once");
                tokio::task::yield_now().await;
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                locks.unlock(lockpb::UnlockRequest { key }).await.unwrap();
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
    }
    let left =
        f.kv.clone()
            .range(pb::RangeRequest {
                key: b"mx/".to_vec(),
                range_end: b"mx0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(left.count, 0);
}

#[tokio::test]
async fn a_waiter_proceeds_when_its_predecessors_key_expires() {
    let f = Fixture::start().await;
    let locks = f.lock_client().await;
    finished(spawn_lock(&locks, "exp", 7)).await;
    let waiter = spawn_lock(&locks, "exp", 8);
    f.until_present(b"exp/8", true).await;
    still_waiting(&waiter).await;
    f.delete(b"exp/7").await;
    assert_eq!(finished(waiter).await.key, b"exp/8");
}

#[tokio::test]
async fn a_waiter_whose_own_key_expired_is_told_so() {
    let f = Fixture::start().await;
    let locks = f.lock_client().await;
    finished(spawn_lock(&locks, "gone", 7)).await;
    let waiter = spawn_lock(&locks, "gone", 8);
    f.until_present(b"gone/8", true).await;
    f.delete(b"gone/8").await;
    f.delete(b"gone/7").await;
    let err = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "mutex: session is expired")
    );
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_the_queue() {
    let f = Fixture::start().await;
    let locks = f.lock_client().await;
    let first = finished(spawn_lock(&locks, "c", 1)).await;
    let cancelled = spawn_lock(&locks, "c", 2);
    f.until_present(b"c/2", true).await;
    still_waiting(&cancelled).await;
    // Dropping the call resets its HTTP/2 stream, which drops the server's handler.
    cancelled.abort();
    f.until_present(b"c/2", false).await;
    // The holder is untouched and the next waiter queues behind it only.
    assert!(f.get(&first.key).await.is_some());
    let next = spawn_lock(&locks, "c", 3);
    f.until_present(b"c/3", true).await;
    still_waiting(&next).await;
    f.delete(&first.key).await;
    assert_eq!(finished(next).await.key, b"c/3");
}

#[tokio::test]
async fn lock_errors_are_etcds() {
    let f = Fixture::start().await;
    let mut locks = f.lock_client().await;
    let err = locks.lock(lock_request("e", 555)).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    let err = locks
        .unlock(lockpb::UnlockRequest { key: Vec::new() })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "etcdserver: key is not provided")
    );

    f.core.set_leader(false);
    let mut req = Request::new(lock_request("e", 1));
    req.metadata_mut()
        .insert("hasleader", "true".parse().unwrap());
    let err = locks.lock(req).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "etcdserver: no leader")
    );
}
