//! Decode + validate + pre-render + store of one node's push (1,000 series) into a store that
//! already holds 1,000 such nodes; and the same for a values push (decode, check the base,
//! rewrite the stored text's values, store).

#![allow(clippy::unwrap_used)]

mod workload;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_hub::config::Limits;
use fleetgate_hub::decode::decode_values_body;
use fleetgate_hub::prepare::revalue;
use fleetgate_hub::store::{Outcome, Store};
use fleetgate_shared::{encode_values, layout_hash, sample_values, ContentEncoding, ValuesHeader};
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

/// A values push of node `i` from the values of generation `from` to those of `to`.
fn values_body(i: usize, from: u64, to: u64) -> Vec<u8> {
    let (a, b) = (node_snapshot(i, from), node_snapshot(i, to));
    let header = ValuesHeader {
        seq: to,
        interval_ms: 15_000,
        timestamp_ms: 0,
        base_seq: from,
        layout: layout_hash(&b.families),
    };
    encode_values(
        &header,
        &sample_values(&a.families),
        &sample_values(&b.families),
    )
}

/// What the push route does with a values push body, minus HTTP and auth.
fn apply_values(store: &Store, node: &str, body: &[u8], limits: &Limits) -> usize {
    let push = decode_values_body(
        ContentEncoding::Identity,
        body,
        limits.max_decompressed_bytes,
    )
    .unwrap();
    let base = store.base(node, 1, push.header.base_seq).unwrap();
    let revalued = revalue(base.base(), &push).unwrap();
    let samples = revalued.samples;
    let outcome = store.apply_values(
        node,
        1,
        push.header.seq,
        &base,
        revalued,
        Duration::from_secs(3600),
    );
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    samples
}

fn values_bench(c: &mut Criterion) {
    // Every node stored at generation 1; each visit moves it to 2 and the next one back to 1
    // (the store does not insist that sequence numbers grow; the push route does).
    let store: Arc<Store> = filled_store();
    let limits = Limits::default();
    let forth: Vec<Vec<u8>> = (0..NODES).map(|i| values_body(i, 1, 2)).collect();
    let back: Vec<Vec<u8>> = (0..NODES).map(|i| values_body(i, 2, 1)).collect();
    let names: Vec<String> = (0..NODES).map(node_name).collect();
    eprintln!(
        "values push: {} bytes for {SERIES_PER_NODE} series",
        forth[0].len()
    );
    let samples = apply_values(&store, &names[0], &forth[0], &limits);
    apply_values(&store, &names[0], &back[0], &limits);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(samples as u64));
    let mut next = 0;
    let mut moved = vec![false; NODES];
    group.bench_function("values_push_1000_series", |b| {
        b.iter(|| {
            next = (next + 1) % NODES;
            let body = if moved[next] { &back } else { &forth };
            moved[next] = !moved[next];
            apply_values(&store, &names[next], &body[next], &limits)
        })
    });
    group.finish();
}

criterion_group!(benches, ingest_bench, values_bench);
criterion_main!(benches);
