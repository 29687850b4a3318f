//! In-process clusters of Transports on 127.0.0.1:0 listeners with a fake Raft that records every call.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafthttp::{Raft, SnapshotStatus, Transport, TransportConfig, WriteDb};
use raftpb::{Entry, Message, MessageType, Snapshot, SnapshotMetadata};
use testkit::{eventually_async, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// What receive_snapshot got: the message, the bytes read, and the read error if the upload broke.
type ReceivedSnapshot = (Message, Vec<u8>, Option<String>);

#[derive(Default)]
struct FakeRaft {
    processed: Mutex<Vec<Message>>,
    heartbeats: AtomicUsize,
    unreachable: Mutex<Vec<u64>>,
    snapshot_reports: Mutex<Vec<(u64, SnapshotStatus)>>,
    snapshots: Mutex<Vec<ReceivedSnapshot>>,
    removed_ids: Mutex<HashSet<u64>>,
    removed_from_cluster: AtomicBool,
    refuse_snapshots: AtomicBool,
    /// When set, receive_snapshot stops after 1 MiB until this many more heartbeats arrived.
    heartbeats_wanted_mid_snapshot: AtomicUsize,
    heartbeats_seen_mid_snapshot: AtomicBool,
}

impl Raft for FakeRaft {
    fn process(&self, msg: Message) {
        if msg.kind() == MessageType::MsgHeartbeat {
            self.heartbeats.fetch_add(1, Ordering::SeqCst);
        }
        self.processed.lock().unwrap().push(msg);
    }

    fn receive_snapshot(
        &self,
        msg: Message,
        db: &mut dyn Read,
    ) -> Result<(), rafthttp::SaveSnapshotError> {
        let mut data = Vec::new();
        let wanted = self.heartbeats_wanted_mid_snapshot.load(Ordering::SeqCst);
        let mut result = Ok(());
        if wanted > 0 {
            let mut first = vec![0u8; 1 << 20];
            result = db.read_exact(&mut first);
            data.extend_from_slice(&first);
            let target = self.heartbeats.load(Ordering::SeqCst) + wanted;
            let deadline = Instant::now() + WAIT;
            while self.heartbeats.load(Ordering::SeqCst) < target && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.heartbeats_seen_mid_snapshot.store(
                self.heartbeats.load(Ordering::SeqCst) >= target,
                Ordering::SeqCst,
            );
        }
        if result.is_ok() {
            result = db.read_to_end(&mut data).map(|_| ());
        }
        let error = result.as_ref().err().map(|e| e.to_string());
        self.snapshots
            .lock()
            .unwrap()
            .push((msg, data, error.clone()));
        if let Some(err) = error {
            return Err(err.into());
        }
        if self.refuse_snapshots.load(Ordering::SeqCst) {
            return Err("refused by test".into());
        }
        Ok(())
    }

    fn report_unreachable(&self, id: u64) {
        self.unreachable.lock().unwrap().push(id);
    }

    fn report_snapshot(&self, id: u64, status: SnapshotStatus) {
        self.snapshot_reports.lock().unwrap().push((id, status));
    }

    fn is_removed(&self, id: u64) -> bool {
        self.removed_ids.lock().unwrap().contains(&id)
    }

    fn removed_from_cluster(&self) {
        self.removed_from_cluster.store(true, Ordering::SeqCst);
    }
}

impl FakeRaft {
    fn processed_count(&self) -> usize {
        self.processed.lock().unwrap().len()
    }
    fn unreachable_count(&self, id: u64) -> usize {
        self.unreachable
            .lock()
            .unwrap()
            .iter()
            .filter(|&&u| u == id)
            .count()
    }
    fn reports(&self) -> Vec<(u64, SnapshotStatus)> {
        self.snapshot_reports.lock().unwrap().clone()
    }
}

struct Node {
    id: u64,
    url: String,
    raft: Arc<FakeRaft>,
    transport: Transport,
    server: JoinHandle<()>,
}

impl Node {
    async fn start(id: u64, cluster_id: u64) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Node::serve_on(listener, id, cluster_id, Duration::from_secs(1))
    }

    fn serve_on(listener: TcpListener, id: u64, cluster_id: u64, dial_timeout: Duration) -> Node {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let raft = Arc::new(FakeRaft::default());
        let config = TransportConfig {
            dial_timeout,
            ..TransportConfig::new(id, cluster_id)
        };
        let transport = Transport::new(config, raft.clone());
        let router = transport.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Node {
            id,
            url,
            raft,
            transport,
            server,
        }
    }

    fn connect(&self, other: &Node) {
        self.transport.add_peer(other.id, vec![other.url.clone()]);
    }

    fn shutdown(&self) {
        self.transport.stop();
        self.server.abort();
    }
}

async fn mesh(nodes: &[&Node]) {
    for a in nodes {
        for b in nodes {
            if a.id != b.id {
                a.connect(b);
            }
        }
    }
    for a in nodes {
        for b in nodes {
            if a.id != b.id {
                let (t, id) = (&a.transport, b.id);
                eventually_async(WAIT, "the mesh is active", || async {
                    t.active_since(id).is_some()
                })
                .await;
            }
        }
    }
}

fn app(from: u64, to: u64, index: u64, payload: usize) -> Message {
    Message {
        from,
        to,
        term: 1,
        index,
        entries: vec![Entry::normal(
            1,
            index + 1,
            vec![(index % 251) as u8; payload],
        )],
        ..Message::new(MessageType::MsgApp)
    }
}

fn heartbeat(from: u64, to: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        ..Message::new(MessageType::MsgHeartbeat)
    }
}

fn indexes_from(raft: &FakeRaft, from: u64) -> Vec<u64> {
    raft.processed
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.from == from && m.kind() == MessageType::MsgApp)
        .map(|m| m.index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_both_ways_in_order() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    let c = Node::start(3, 100).await;
    mesh(&[&a, &b, &c]).await;

    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 250;
    for round in 0..ROUNDS {
        let range = round * PER_ROUND..(round + 1) * PER_ROUND;
        a.transport
            .send(range.clone().map(|i| app(1, 2, i, 100)).collect());
        b.transport
            .send(range.clone().map(|i| app(2, 1, i, 100)).collect());
        // Three-way: c talks to both while they talk to each other.
        c.transport.send(
            range
                .clone()
                .flat_map(|i| [app(3, 1, i, 10), app(3, 2, i, 10)])
                .collect(),
        );
        let want = (round + 1) * PER_ROUND * 2;
        eventually_async(WAIT, "a round is delivered", || async {
            b.raft.processed_count() as u64 == want && a.raft.processed_count() as u64 == want
        })
        .await;
    }
    let expected: Vec<u64> = (0..ROUNDS * PER_ROUND).collect();
    assert_eq!(indexes_from(&b.raft, 1), expected);
    assert_eq!(indexes_from(&a.raft, 2), expected);
    assert_eq!(indexes_from(&a.raft, 3), expected);
    assert_eq!(indexes_from(&b.raft, 3), expected);
    assert_eq!(a.raft.unreachable_count(2), 0);
    let stats = a.transport.peer_stats(2).unwrap();
    assert_eq!(stats.messages_sent, ROUNDS * PER_ROUND);
    assert_eq!(stats.messages_dropped, 0);
    assert_eq!(
        b.transport.peer_stats(1).unwrap().messages_received,
        ROUNDS * PER_ROUND
    );

    // A message far above the usual size (a 3 MiB entry) still goes through in one frame.
    a.transport.send(vec![app(1, 2, 999_999, 3 << 20)]);
    eventually_async(WAIT, "the big message arrives", || async {
        indexes_from(&b.raft, 1).last() == Some(&999_999)
    })
    .await;
    let big = b.raft.processed.lock().unwrap().last().unwrap().clone();
    assert_eq!(big, app(1, 2, 999_999, 3 << 20));
    for n in [&a, &b, &c] {
        n.shutdown();
    }
}

/// On one thread, everything sent in one call is queued before the writer runs: it must leave in few writes.
#[tokio::test(flavor = "current_thread")]
async fn queued_messages_are_batched_into_few_writes() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;
    let before = a.transport.peer_stats(2).unwrap();
    a.transport
        .send((0..3000).map(|i| app(1, 2, i, 50)).collect());
    eventually_async(WAIT, "all 3000 arrive", || async {
        b.raft.processed_count() == 3000
    })
    .await;
    let after = a.transport.peer_stats(2).unwrap();
    assert_eq!(after.messages_sent - before.messages_sent, 3000);
    let batches = after.batches_sent - before.batches_sent;
    assert!(batches <= 3, "3000 queued messages took {batches} writes");
    assert_eq!(indexes_from(&b.raft, 1), (0..3000).collect::<Vec<u64>>());
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_peer_is_unreachable_until_it_comes_up_and_after_it_restarts() {
    let a = Node::start(1, 100).await;
    // B's listener exists but nobody answers on it yet: connections hang until the dial timeout.
    let b_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", b_listener.local_addr().unwrap());
    a.transport.add_peer(2, vec![b_url]);
    a.transport.send(vec![heartbeat(1, 2), app(1, 2, 0, 10)]);
    assert_eq!(
        a.raft.unreachable_count(2),
        1,
        "one report per peer and call"
    );
    assert_eq!(a.transport.peer_stats(2).unwrap().messages_dropped, 2);
    assert!(a.transport.active_since(2).is_none());
    // Let the writer fail and back off a few times.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(a.transport.active_since(2).is_none());

    let b = Node::serve_on(b_listener, 2, 100, Duration::from_millis(300));
    b.connect(&a);
    eventually_async(WAIT, "a's stream to b is active", || async {
        a.transport.active_since(2).is_some()
    })
    .await;
    a.transport
        .send((1..=100).map(|i| app(1, 2, i, 10)).collect());
    eventually_async(WAIT, "messages reach b", || async {
        indexes_from(&b.raft, 1).len() == 100
    })
    .await;
    assert_eq!(indexes_from(&b.raft, 1), (1..=100).collect::<Vec<u64>>());

    // B goes away: a notices, drops and reports again.
    b.shutdown();
    eventually_async(WAIT, "a sees b inactive", || async {
        a.transport.active_since(2).is_none()
    })
    .await;
    let reported = a.raft.unreachable_count(2);
    a.transport.send(vec![heartbeat(1, 2)]);
    assert_eq!(a.raft.unreachable_count(2), reported + 1);

    // B comes back elsewhere; a learns its new URL and reconnects.
    let b2 = Node::start(2, 100).await;
    b2.connect(&a);
    a.transport.update_peer(2, vec![b2.url.clone()]);
    eventually_async(WAIT, "a reconnects to b", || async {
        a.transport.active_since(2).is_some()
    })
    .await;
    a.transport.send(vec![app(1, 2, 500, 10)]);
    eventually_async(WAIT, "b2 gets the message", || async {
        indexes_from(&b2.raft, 1) == vec![500]
    })
    .await;
    a.shutdown();
    b2.shutdown();
}

/// Log lines of the test, captured on the test's own thread (current_thread runtime).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn cluster_id_mismatch_is_refused_and_logged_on_both_sides() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = Node::start(1, 100).await;
    let c = Node::start(3, 200).await;
    a.connect(&c);
    c.connect(&a);
    eventually_async(WAIT, "both sides log the mismatch", || async {
        let text = logs.text();
        text.contains("ignored by remote peer due to cluster ID mismatch")
            && text.contains("rejected peer request: cluster ID mismatch")
    })
    .await;
    a.transport.send(vec![app(1, 3, 0, 10)]);
    c.transport.send(vec![app(3, 1, 0, 10)]);
    assert_eq!(a.raft.unreachable_count(3), 1);
    assert_eq!(c.raft.unreachable_count(1), 1);
    // Keep retrying for a while: still nothing gets through, and the error is not logged on every retry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.transport.active_since(3).is_none());
    assert!(c.transport.active_since(1).is_none());
    assert_eq!(a.raft.processed_count() + c.raft.processed_count(), 0);
    let text = logs.text();
    assert!(text.contains("remote_cluster_id=c8"), "{text}");
    let sender_lines = text
        .matches("ignored by remote peer due to cluster ID mismatch")
        .count();
    assert_eq!(
        sender_lines, 2,
        "one line per sender, not per retry:\n{text}"
    );
    a.shutdown();
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_target_is_refused() {
    let a = Node::start(1, 100).await;
    let c = Node::start(3, 100).await;
    c.connect(&a);
    // a believes member 2 lives at c's address.
    a.transport.add_peer(2, vec![c.url.clone()]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(a.transport.active_since(2).is_none());
    assert_eq!(c.raft.processed_count(), 0);
    a.shutdown();
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_is_refused_and_told() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    b.raft.removed_ids.lock().unwrap().insert(1);
    a.connect(&b);
    b.connect(&a);
    eventually_async(WAIT, "a learns it was removed", || async {
        a.raft.removed_from_cluster.load(Ordering::SeqCst)
    })
    .await;
    assert!(a.transport.active_since(2).is_none());
    a.transport.send(vec![app(1, 2, 0, 10)]);
    assert_eq!(b.raft.processed_count(), 0);
    // b still streams to a: a did not remove b.
    eventually_async(WAIT, "b's stream to a is active", || async {
        b.transport.active_since(1).is_some()
    })
    .await;
    assert!(!b.raft.removed_from_cluster.load(Ordering::SeqCst));
    a.shutdown();
    b.shutdown();
}

fn snapshot_msg(from: u64, to: u64, index: u64) -> Message {
    Message {
        from,
        to,
        term: 3,
        snapshot: Some(Snapshot {
            data: bytes::Bytes::from_static(b"membership and store"),
            metadata: Some(SnapshotMetadata {
                conf_state: None,
                index,
                term: 3,
            }),
        }),
        ..Message::new(MessageType::MsgSnap)
    }
}

/// `len` bytes that do not compress, seeded by the length so a failing run can be replayed.
fn random_db(len: usize) -> Arc<Vec<u8>> {
    let mut db = vec![0u8; len];
    Rng::new(len as u64).fill_bytes(&mut db);
    Arc::new(db)
}

/// Writes `db` in uneven pieces, as a backend copy would.
fn db_writer(db: Arc<Vec<u8>>) -> WriteDb {
    Box::new(move |out: &mut dyn Write| {
        for piece in db.chunks(10_007) {
            out.write_all(piece)?;
        }
        out.flush()
    })
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_arrives_intact_and_finish_is_reported() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;
    let db = random_db(6 << 20);
    a.transport
        .send_snapshot(snapshot_msg(1, 2, 42), db_writer(db.clone()));
    eventually_async(WAIT, "the snapshot is reported", || async {
        !a.raft.reports().is_empty()
    })
    .await;
    assert_eq!(a.raft.reports(), vec![(2, SnapshotStatus::Finish)]);
    let snapshots = b.raft.snapshots.lock().unwrap();
    assert_eq!(snapshots.len(), 1);
    let (msg, data, error) = &snapshots[0];
    assert_eq!(*msg, snapshot_msg(1, 2, 42));
    assert_eq!(error, &None);
    assert_eq!(data.len(), db.len());
    assert_eq!(hash(data), hash(&db));
    // The snapshot did not go through the message stream.
    assert_eq!(b.raft.processed_count(), 0);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_or_broken_snapshot_reports_failure() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;

    // The receiver refuses after reading everything.
    b.raft.refuse_snapshots.store(true, Ordering::SeqCst);
    a.transport
        .send_snapshot(snapshot_msg(1, 2, 7), db_writer(random_db(1 << 20)));
    eventually_async(WAIT, "failure is reported", || async {
        a.raft.reports().len() == 1
    })
    .await;
    assert_eq!(a.raft.reports(), vec![(2, SnapshotStatus::Failure)]);
    b.raft.refuse_snapshots.store(false, Ordering::SeqCst);

    // The sender's database writer fails half way: the receiver must see a broken stream, not a short database.
    a.transport.send_snapshot(
        snapshot_msg(1, 2, 8),
        Box::new(|out: &mut dyn Write| {
            out.write_all(&vec![1u8; 1 << 20])?;
            out.flush()?;
            Err(std::io::Error::other("disk read failed"))
        }),
    );
    eventually_async(WAIT, "second failure is reported", || async {
        a.raft.reports().len() == 2
    })
    .await;
    assert_eq!(a.raft.reports()[1], (2, SnapshotStatus::Failure));
    eventually_async(WAIT, "the receiver saw the broken upload", || async {
        b.raft.snapshots.lock().unwrap().len() == 2
    })
    .await;
    let broken_read = b.raft.snapshots.lock().unwrap()[1].2.clone();
    assert!(broken_read.is_some(), "a broken upload must fail the read");

    // A snapshot for an unknown peer fails at once.
    a.transport
        .send_snapshot(snapshot_msg(1, 9, 9), db_writer(random_db(10)));
    eventually_async(WAIT, "third failure is reported", || async {
        a.raft.reports().len() == 3
    })
    .await;
    assert_eq!(a.raft.reports()[2], (9, SnapshotStatus::Failure));
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_flowing_while_a_snapshot_is_in_flight() {
    // The receiver pauses on purpose: give the sender's chunk writes room so that only the heartbeats are tested.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = Node::serve_on(listener, 1, 100, Duration::from_secs(5));
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;
    // b pauses the snapshot after 1 MiB until 5 more heartbeats came through the stream.
    b.raft
        .heartbeats_wanted_mid_snapshot
        .store(5, Ordering::SeqCst);
    let db = random_db(8 << 20);
    a.transport
        .send_snapshot(snapshot_msg(1, 2, 50), db_writer(db.clone()));
    eventually_async(WAIT, "the snapshot to be reported", || async {
        let reported = !a.raft.reports().is_empty();
        if !reported {
            a.transport.send(vec![heartbeat(1, 2)]);
        }
        reported
    })
    .await;
    assert_eq!(a.raft.reports(), vec![(2, SnapshotStatus::Finish)]);
    assert!(b.raft.heartbeats_seen_mid_snapshot.load(Ordering::SeqCst));
    let snapshots = b.raft.snapshots.lock().unwrap();
    assert_eq!(hash(&snapshots[0].1), hash(&db));
    a.shutdown();
    b.shutdown();
}

async fn read_until_closed(mut conn: TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, conn.read(&mut buf)).await {
            Err(_) => panic!("receiver kept a garbage connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn request_head(path: &str, from: u64, to: u64, cluster: u64) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nX-Server-From: {from:x}\r\nX-Raft-To: {to:x}\r\n\
         X-Etcd-Cluster-ID: {cluster:x}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_network_closes_the_connection_only() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    b.connect(&a);
    let addr = b.url.trim_start_matches("http://").to_string();

    // Not HTTP at all.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"\x00\xffGARBAGE\r\n\r\n\x13\x37")
        .await
        .unwrap();
    read_until_closed(conn).await;

    // A valid stream request whose frames are junk: an undecodable message, then an absurd length.
    for body in [
        [&8u64.to_be_bytes()[..], &[0xffu8; 8][..]].concat(),
        u64::MAX.to_be_bytes().to_vec(),
    ] {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(request_head("/raft/stream", 1, 2, 100).as_bytes())
            .await
            .unwrap();
        conn.write_all(&chunk(&body)).await.unwrap();
        let answer = read_until_closed(conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    // A snapshot upload whose message frame is junk.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(request_head("/raft/snapshot", 1, 2, 100).as_bytes())
        .await
        .unwrap();
    conn.write_all(&chunk(
        &[&5u64.to_be_bytes()[..], b"\xff\xff\xff\xff\xff"].concat(),
    ))
    .await
    .unwrap();
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_until_closed(conn).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    assert_eq!(b.raft.processed_count(), 0);
    assert!(b.raft.snapshots.lock().unwrap().is_empty());

    // The receiver is still in service.
    a.connect(&b);
    eventually_async(WAIT, "a's stream to b is active", || async {
        a.transport.active_since(2).is_some()
    })
    .await;
    a.transport.send(vec![app(1, 2, 1, 10)]);
    eventually_async(WAIT, "b gets a real message", || async {
        indexes_from(&b.raft, 1) == vec![1]
    })
    .await;
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_is_cut_off_in_both_directions() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;
    a.transport.remove_peer(2);
    assert!(a.transport.active_since(2).is_none());
    assert!(a.transport.peer_stats(2).is_none());
    a.transport.send(vec![app(1, 2, 0, 10)]);
    assert_eq!(a.raft.unreachable_count(2), 1);
    // a closed b's inbound stream and now answers 404 to it: b stays disconnected.
    eventually_async(WAIT, "b sees a inactive", || async {
        b.transport.active_since(1).is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.transport.active_since(1).is_none());
    b.transport.send(vec![app(2, 1, 0, 10)]);
    assert_eq!(a.raft.processed_count(), 0);
    assert_eq!(b.raft.processed_count(), 0);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_transport_refuses_streams_and_snapshots() {
    let a = Node::start(1, 100).await;
    let b = Node::start(2, 100).await;
    mesh(&[&a, &b]).await;
    // Only the transport stops: b's listener keeps answering, as a server shutting down would.
    b.transport.stop();
    eventually_async(WAIT, "a sees b inactive", || async {
        a.transport.active_since(2).is_none()
    })
    .await;
    assert!(b.transport.active_since(1).is_none());
    b.transport.send(vec![app(2, 1, 0, 10)]);
    assert_eq!(b.raft.unreachable_count(1), 1);
    a.transport
        .send_snapshot(snapshot_msg(1, 2, 5), db_writer(random_db(1000)));
    eventually_async(WAIT, "the snapshot fails", || async {
        !a.raft.reports().is_empty()
    })
    .await;
    assert_eq!(a.raft.reports(), vec![(2, SnapshotStatus::Failure)]);
    assert!(b.raft.snapshots.lock().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.transport.active_since(2).is_none());
    assert_eq!(a.raft.processed_count(), 0);
    a.shutdown();
    b.shutdown();
}
