use std::time::Duration;

use backend::{Backend, BackendConfig, Table};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const KEY: Table = Table::new("key");
const TABLES: &[Table] = &[KEY];

fn manual() -> BackendConfig {
    BackendConfig {
        batch_interval: Duration::from_secs(3600),
        batch_limit: usize::MAX,
    }
}

fn batch_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::open(dir.path().join("db"), manual(), TABLES).unwrap();
    let value = vec![b'v'; 256];
    let mut n = 0u64;
    let mut g = c.benchmark_group("backend_batch_commit");
    for batch in [1usize, 100, 10_000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("{batch}_writes_then_commit"), |bench| {
            bench.iter(|| {
                {
                    let mut tx = b.batch_tx();
                    for _ in 0..batch {
                        n += 1;
                        tx.put(KEY, n.to_be_bytes().to_vec(), value.clone());
                    }
                }
                b.force_commit().unwrap();
            })
        });
    }
    g.finish();
}

/// The apply loop writes a key and a reader reads it back at once: through the read buffer
/// (no commit needed) versus committing before the read (what a backend without a read
/// buffer has to do to show the reader every applied write).
fn read_after_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::open(dir.path().join("db"), manual(), TABLES).unwrap();
    let mut n = 0u64;
    let mut g = c.benchmark_group("backend_read_after_write");
    g.throughput(Throughput::Elements(1));
    g.bench_function("read_buffer", |bench| {
        bench.iter(|| {
            n += 1;
            b.batch_tx()
                .put(KEY, n.to_be_bytes().to_vec(), b"v".to_vec());
            assert!(b.read().get(KEY, &n.to_be_bytes()).unwrap().is_some());
        })
    });
    b.force_commit().unwrap();
    g.bench_function("commit_before_read", |bench| {
        bench.iter(|| {
            n += 1;
            b.batch_tx()
                .put(KEY, n.to_be_bytes().to_vec(), b"v".to_vec());
            b.force_commit().unwrap();
            assert!(b.read().get(KEY, &n.to_be_bytes()).unwrap().is_some());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = batch_commit, read_after_write
}
criterion_main!(benches);
