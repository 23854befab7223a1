//! Rendering `/metrics` for 1,000 nodes × 1,000 series (1M series), plus the memory the store
//! holds per series.

#![allow(clippy::unwrap_used)]

mod workload;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleetgate_hub::exposition::{render_exposition, NodeLine};
use workload::*;

fn render_bench(c: &mut Criterion) {
    let before = rss_bytes();
    let store = filled_store();
    let after = rss_bytes();
    let series = NODES * SERIES_PER_NODE;
    eprintln!(
        "store: {} accounted bytes = {:.1} B/series; process RSS grew {} bytes = {:.1} B/series",
        store.stored_bytes(),
        store.stored_bytes() as f64 / series as f64,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / series as f64
    );
    let lines: Vec<NodeLine> = (0..NODES)
        .map(|i| NodeLine {
            labels: node_labels(i),
            up: true,
            last_push: Some(1.7e9),
            series: SERIES_PER_NODE,
        })
        .collect();
    let mut out = Vec::new();
    render_exposition(&store.view(), &lines, &mut out);
    eprintln!("exposition: {} bytes", out.len());
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(series as u64));
    group.sample_size(10);
    group.bench_function("exposition_1000_nodes_x_1000_series", |b| {
        b.iter(|| {
            out.clear();
            render_exposition(&store.view(), &lines, &mut out);
            out.len()
        })
    });
    group.bench_function("exposition_gzip_fast_1000_nodes_x_1000_series", |b| {
        b.iter(|| {
            out.clear();
            render_exposition(&store.view(), &lines, &mut out);
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &out).unwrap();
            enc.finish().unwrap().len()
        })
    });
    group.finish();
}

criterion_group!(benches, render_bench);
criterion_main!(benches);
