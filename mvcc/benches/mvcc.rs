use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mvcc::*;

fn open(dir: &std::path::Path) -> Store {
    let backend =
        Arc::new(Backend::open(dir.join("db"), BackendConfig::default(), &TABLES).unwrap());
    Store::open(backend, StoreConfig::default()).unwrap()
}

/// A put applied as the next raft entry, as the server applies it.
fn put(s: &Store, req: PutRequest) -> PutResponse {
    let index = s.consistent_index().0 + 1;
    s.apply(index, 1, |t| t.put(req))
        .expect("the next entry applies")
        .unwrap()
}

fn put_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let value = vec![b'v'; 256];
    let mut i = 0u64;
    let mut g = c.benchmark_group("mvcc_put");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_puts_256B_redb_batched", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                i += 1;
                let key = format!("key/{:08}", i % 100_000);
                put(&s, PutRequest::new(key, value.clone()));
            }
        })
    });
    g.finish();
}

fn range_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..10_000u32 {
        put(&s, PutRequest::new(format!("key/{i:08}"), vec![b'v'; 256]));
    }
    s.commit().unwrap();
    let mut g = c.benchmark_group("mvcc_range");
    g.throughput(Throughput::Elements(1000));
    let mut i = 0u32;
    g.bench_function("1000_single_key_gets", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                i = (i + 7919) % 10_000;
                let r = s.range(&RangeRequest::key(format!("key/{i:08}"))).unwrap();
                assert_eq!(r.kvs.len(), 1);
            }
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("range_of_100_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % 9_900;
            let mut req = RangeRequest::range(format!("key/{i:08}"), "\0");
            req.limit = 100;
            assert_eq!(s.range(&req).unwrap().kvs.len(), 100);
        })
    });
    g.finish();
}

fn watch_fan_out(c: &mut Criterion) {
    let backend = Arc::new(Backend::in_memory(BackendConfig::default(), &TABLES).unwrap());
    let config = StoreConfig {
        watch_stream_capacity: 1024,
        ..StoreConfig::default()
    };
    let s = Store::open(backend, config).unwrap();
    let mut streams: Vec<WatchStream> = (0..100).map(|_| s.watch_stream()).collect();
    for stream in &mut streams {
        for _ in 0..100 {
            stream
                .watch(&WatchRequest {
                    key: b"hot".to_vec(),
                    ..Default::default()
                })
                .unwrap();
        }
    }
    let mut g = c.benchmark_group("watch_fan_out");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("one_put_to_10000_watchers", |b| {
        b.iter_batched(
            || (),
            |()| {
                put(&s, PutRequest::new("hot", "v"));
                let mut delivered = 0;
                for stream in &mut streams {
                    while let Some(r) = stream.try_recv() {
                        delivered += r.events.len();
                    }
                }
                assert_eq!(delivered, 10_000);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = put_throughput, range_throughput, watch_fan_out
}
criterion_main!(benches);
