//! CPU cost of one container collection cycle with 50 running containers (the footprint goal
//! is at most 50 ms of CPU). A measurement, not a test: it asserts nothing about time and is
//! ignored by default. Run it with
//! `cargo test --release -p fleetgate-agent --test containers_cpu_cost -- --ignored --nocapture`.
//!
//! Measured on the 2-core development machine (Docker 20.10, cgroup v1, release build, 50
//! `sleep` containers, 1250 series): 20.9 ms for the first cycle (inspect + stats), 18.9 ms per
//! later cycle (stats only), agent process CPU only.

use std::time::Duration;

use fleetgate_agent::collectors::containers::ContainerCollector;
use fleetgate_agent::collectors::{Collector, MetricBuffer};
use fleetgate_testkit::docker::{engine, BusyboxImage, Container, SOCKET};
use fleetgate_testkit::require;

const CONTAINERS: usize = 50;
const CYCLES: u32 = 10;

/// CPU time of this process so far, summed over its threads' `schedstat` (nanoseconds, far
/// finer than the 10 ms ticks of `/proc/self/stat`).
fn process_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: starts 50 containers"]
async fn cpu_per_cycle_with_50_containers() {
    if require("a running Docker engine", engine()).is_none() {
        return;
    }
    let image = BusyboxImage::build("cpucost");
    let containers: Vec<Container> = (0..CONTAINERS)
        .map(|i| {
            let label = format!("com.example.index={i}");
            Container::run(&image, "cost", &["--label", &label], "sleep 3600")
        })
        .collect();
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");

    let start = process_cpu();
    let mut out = MetricBuffer::new();
    collector.collect(&mut out).await.expect("first collect");
    let cold = process_cpu() - start;
    let seen = out
        .families()
        .iter()
        .find(|f| f.name == "container_last_seen")
        .map_or(0, |f| f.series.len());
    assert!(seen >= CONTAINERS, "only {seen} containers seen");

    let mut warm = Duration::ZERO;
    let mut series = 0;
    for _ in 0..CYCLES {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = process_cpu();
        let mut out = MetricBuffer::new();
        collector.collect(&mut out).await.expect("collect");
        warm += process_cpu() - start;
        series = out.series_count();
    }
    eprintln!(
        "containers={seen} series={series} first cycle (inspect + stats) cpu={:.1} ms, \
         later cycles (stats only) cpu={:.1} ms/cycle over {CYCLES} cycles",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3 / f64::from(CYCLES),
    );
    drop(containers);
}
