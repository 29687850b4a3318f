//! WAL save throughput (entries/s for batches of 1 and 64 entries of ~100 bytes; each save is one fdatasync,
//! so saves/s of `batch_1` is the WAL's fsync rate) and, for comparison, the raw fdatasync rate of the disk
//! under the temporary directory: append 128 bytes to a preallocated file and fdatasync.
//!
//! Run with `cargo bench -p wal --bench save`. Set `WAL_BENCH_DIR` to measure another filesystem.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wal::{HardState, Wal};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("WAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn save_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_save");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for batch in [1u64, 64] {
        let dir = bench_dir();
        let mut wal = Wal::create(dir.path().join("wal"), b"bench").expect("create");
        let payload = vec![0xab; 100];
        let mut next = 1;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}_entries_100B"), |b| {
            b.iter_batched(
                || {
                    let entries: Vec<_> = (next..next + batch)
                        .map(|index| wal::testing::raft_entry(1, index, &payload))
                        .collect();
                    next += batch;
                    entries
                },
                |entries| {
                    let state = HardState {
                        term: 1,
                        vote: 1,
                        commit: entries[0].index(),
                    };
                    wal.save(&state, &entries).expect("save");
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn raw_fdatasync(c: &mut Criterion) {
    let dir = bench_dir();
    let path = dir.path().join("raw");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let size = 256 * 1024 * 1024;
    file.set_len(size).expect("extend");
    file.sync_all().expect("sync");
    let block = [0x5a; 128];
    let mut offset = 0;
    let mut group = c.benchmark_group("raw");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("write_128B_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(&block, offset).expect("write");
            file.sync_data().expect("fdatasync");
            offset = (offset + 128) % size;
        })
    });
    group.finish();
}

criterion_group!(benches, save_throughput, raw_fdatasync);
criterion_main!(benches);
