//! Propose -> commit -> apply throughput of a 3-node in-memory cluster (one thread, no I/O), with batches of 1
//! and 64 proposals of 128 bytes. Measures the raft core alone: message handling, log bookkeeping, Readies.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;

use common::Network;

fn cluster() -> Network {
    let mut net = Network::new(&[1, 2, 3], &[], |_| {});
    net.record = false;
    for n in net.nodes.values_mut() {
        n.keep_applied = false;
    }
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    net
}

/// Keeps memory flat over millions of iterations, as a server's periodic snapshots do.
fn compact(net: &mut Network) {
    for n in net.nodes.values_mut() {
        let applied = n.node.applied();
        if applied > n.storage.current_snapshot().index() + 10_000 {
            n.storage
                .create_snapshot(applied, Some(n.conf_state.clone()), Bytes::new())
                .unwrap();
            n.storage.compact(applied).unwrap();
        }
    }
}

fn propose_commit_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("propose_commit_apply_3_nodes");
    let payload = Bytes::from(vec![7u8; 128]);
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            let mut net = cluster();
            let mut iterations = 0u64;
            b.iter(|| {
                let target = net.node(1).node.last_index() + batch as u64;
                net.raw(1)
                    .propose_batch(vec![payload.clone(); batch])
                    .unwrap();
                net.stabilize();
                debug_assert!(net.nodes.values().all(|n| n.node.applied() >= target));
                iterations += 1;
                if iterations.is_multiple_of(1024) {
                    compact(&mut net);
                }
            });
            assert!(net
                .nodes
                .values()
                .all(|n| n.node.applied() == net.node(1).node.last_index()));
        });
    }
    group.finish();
}

criterion_group!(benches, propose_commit_apply);
criterion_main!(benches);
