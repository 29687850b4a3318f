//! Stream throughput and latency between two in-process Transports over loopback:
//! - `one_way_1000_msgs_300B`: 1000 MsgApp of ~300 bytes, sent in calls of 100 (as raft's Ready hands them out),
//!   timed until the peer's Raft has processed all of them;
//! - `ping_pong`: one message there, the peer's Raft answers at once, timed until the answer is processed.
//!
//! Run with `cargo bench -p rafthttp --bench stream`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rafthttp::{Raft, SnapshotStatus, Transport, TransportConfig};
use raftpb::{Entry, Message, MessageType};
use tokio::sync::Notify;

#[derive(Default)]
struct Counter {
    processed: AtomicU64,
    notify: Notify,
    /// Set on the echoing side: every message is answered through this transport.
    echo: OnceLock<Transport>,
}

impl Raft for Counter {
    fn process(&self, msg: Message) {
        self.processed.fetch_add(1, Ordering::SeqCst);
        if let Some(transport) = self.echo.get() {
            let reply = Message {
                from: msg.to,
                to: msg.from,
                ..Message::new(MessageType::MsgAppResp)
            };
            transport.send(vec![reply]);
        }
        self.notify.notify_one();
    }
    fn receive_snapshot(
        &self,
        _: Message,
        _: &mut dyn std::io::Read,
    ) -> Result<(), rafthttp::SaveSnapshotError> {
        Err("not in this benchmark".into())
    }
    fn report_unreachable(&self, id: u64) {
        panic!("peer {id} unreachable during the benchmark");
    }
    fn report_snapshot(&self, _: u64, _: SnapshotStatus) {}
    fn is_removed(&self, _: u64) -> bool {
        false
    }
    fn removed_from_cluster(&self) {}
}

impl Counter {
    async fn wait_for(&self, target: u64) {
        while self.processed.load(Ordering::SeqCst) < target {
            self.notify.notified().await;
        }
    }
}

async fn node(id: u64) -> (Transport, Arc<Counter>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let raft = Arc::new(Counter::default());
    let transport = Transport::new(TransportConfig::new(id, 7), raft.clone());
    let router = transport.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (transport, raft, url)
}

fn app(index: u64) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        index,
        entries: vec![Entry::normal(1, index + 1, vec![0x5a; 256])],
        ..Message::new(MessageType::MsgApp)
    }
}

fn stream(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, a_raft, a_url, b, b_raft) = runtime.block_on(async {
        let (a, a_raft, a_url) = node(1).await;
        let (b, b_raft, b_url) = node(2).await;
        a.add_peer(2, vec![b_url]);
        b.add_peer(1, vec![a_url.clone()]);
        while a.active_since(2).is_none() || b.active_since(1).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (a, a_raft, a_url, b, b_raft)
    });
    let _ = a_url;
    let mut group = c.benchmark_group("rafthttp_stream");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1000));
    let mut next = 0u64;
    group.bench_function("one_way_1000_msgs_300B", |bench| {
        bench.iter(|| {
            runtime.block_on(async {
                for _ in 0..10 {
                    a.send((next..next + 100).map(app).collect());
                    next += 100;
                    // Let the queue drain as a raft loop would between Readies.
                    tokio::task::yield_now().await;
                }
                b_raft.wait_for(next).await;
            })
        })
    });

    b_raft.echo.set(b.clone()).ok();
    group.throughput(Throughput::Elements(1));
    group.bench_function("ping_pong", |bench| {
        bench.iter(|| {
            runtime.block_on(async {
                let target = a_raft.processed.load(Ordering::SeqCst) + 1;
                a.send(vec![app(next)]);
                next += 1;
                a_raft.wait_for(target).await;
            })
        })
    });
    group.finish();
    a.stop();
    b.stop();
}

criterion_group!(benches, stream);
criterion_main!(benches);
