//! Decode + validate + pre-render + store of one node's push (1,000 series) into a store that
//! already holds 1,000 such nodes.

#![allow(clippy::unwrap_used)]

mod workload;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleetgate_hub::config::Limits;
use workload::*;

fn ingest_bench(c: &mut Criterion) {
    let store = filled_store();
    let limits = Limits::default();
    let bodies: Vec<Vec<u8>> = (0..NODES)
        .map(|i| fleetgate_shared::encode(&node_snapshot(i, 2)))
        .collect();
    let labels: Vec<_> = (0..NODES).map(node_labels).collect();
    let samples = ingest(&store, 0, &labels[0], &bodies[0], &limits);
    eprintln!(
        "encoded push: {} bytes for {SERIES_PER_NODE} series",
        bodies[0].len()
    );
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(samples as u64));
    let mut next = 0;
    group.bench_function("decode_validate_render_store_1000_series", |b| {
        b.iter(|| {
            next = (next + 1) % NODES;
            ingest(&store, next, &labels[next], &bodies[next], &limits)
        })
    });
    group.finish();
}

criterion_group!(benches, ingest_bench);
criterion_main!(benches);
