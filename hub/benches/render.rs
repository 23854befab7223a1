//! Rendering `/metrics` for 1,000 nodes × 1,000 series (1M series), plus the memory the store
//! holds per series: nodes of one kind (sharing their family blocks), and nodes that share
//! nothing (a label unique to the node on every series).

#![allow(clippy::unwrap_used)]

mod workload;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::Compression;
use fleetgate_hub::exposition::{render_exposition, ExpositionWriter, NodeLine, CHUNK_BYTES};
use fleetgate_hub::gzip::ParallelGzip;
use workload::*;

/// Fills a store with `snapshot`s and reports what it holds per series.
fn measured(
    what: &str,
    snapshot: fn(usize, u64) -> fleetgate_shared::Snapshot,
) -> std::sync::Arc<fleetgate_hub::Store> {
    let series = NODES * SERIES_PER_NODE;
    let before = rss_bytes();
    let store = filled_store_with(snapshot);
    let after = rss_bytes();
    eprintln!(
        "store, {what}: {} blocks, {} accounted bytes = {:.1} B/series; process RSS grew {} bytes = {:.1} B/series",
        store.blocks(),
        store.stored_bytes(),
        store.stored_bytes() as f64 / series as f64,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / series as f64
    );
    store
}

fn render_bench(c: &mut Criterion) {
    // Both kept until the end, so neither's growth reuses memory the other freed.
    let store = measured("one kind of node", node_snapshot);
    let unshared = measured("nothing shared", node_snapshot_unshared);
    let mut out = Vec::new();
    let lines: Vec<NodeLine> = (0..NODES)
        .map(|i| NodeLine {
            labels: node_labels(i),
            up: true,
            last_push: Some(1.7e9),
            series: SERIES_PER_NODE,
        })
        .collect();
    // On-CPU time per render, which a busy machine does not inflate as it does wall time.
    for (what, s) in [("one kind of node", &store), ("nothing shared", &unshared)] {
        let started = cpu_time();
        for _ in 0..5 {
            out.clear();
            render_exposition(&s.view(), &lines, &mut out);
        }
        let each = (cpu_time() - started) / 5;
        eprintln!(
            "exposition, {what}: {} bytes; {:.1} ms on-CPU per render = {:.1} M series/s",
            out.len(),
            each.as_secs_f64() * 1e3,
            (NODES * SERIES_PER_NODE) as f64 / each.as_secs_f64() / 1e6
        );
    }
    let series = NODES * SERIES_PER_NODE;
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
    group.bench_function("exposition_unshared_1000_nodes_x_1000_series", |b| {
        b.iter(|| {
            out.clear();
            render_exposition(&unshared.view(), &lines, &mut out);
            out.len()
        })
    });
    // What `GET /metrics` does: `CHUNK_BYTES` chunks, each handed on (here: dropped) before the
    // next.
    group.bench_function("exposition_chunked_1000_nodes_x_1000_series", |b| {
        b.iter(|| {
            let view = store.view();
            let mut writer = ExpositionWriter::new(&view, &lines);
            let mut chunk = Vec::with_capacity(CHUNK_BYTES * 2);
            let mut total = 0;
            loop {
                let more = writer.fill(&mut chunk, CHUNK_BYTES);
                total += chunk.len();
                chunk.clear();
                if !more {
                    break total;
                }
            }
        })
    });
    // As `GET /metrics` compresses: each chunk deflated on its own, on one thread and on as
    // many as the hub gives a scrape that renders alone (`gzip::threads`, the cores up to 4).
    for (name, threads) in [
        ("exposition_gzip_fast_chunked_1000_nodes_x_1000_series", 1),
        (
            "exposition_gzip_fast_chunked_parallel_1000_nodes_x_1000_series",
            fleetgate_hub::gzip::threads(1),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let view = store.view();
                let mut writer = ExpositionWriter::new(&view, &lines);
                let mut total = 0;
                let mut out = |piece: Vec<u8>| {
                    total += piece.len();
                    true
                };
                std::thread::scope(|scope| {
                    let mut gz = ParallelGzip::start(scope, threads, Compression::fast());
                    loop {
                        let mut chunk = Vec::with_capacity(CHUNK_BYTES * 2);
                        let more = writer.fill(&mut chunk, CHUNK_BYTES);
                        gz.push(chunk, &mut out).unwrap();
                        if !more {
                            break gz.finish(&mut out).unwrap();
                        }
                    }
                });
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render_bench);
criterion_main!(benches);
