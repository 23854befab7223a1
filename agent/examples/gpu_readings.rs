//! Records the GPU collector's raw NVML readings from this machine's GPUs as a mapping fixture
//! (the format of `agent/tests/fixtures/gpu/*.json`), so the NVML-to-DCGM mapping is tested on
//! values that came from real devices. Also prints, on stderr, the unit NVML gives for every GPM
//! metric the collector reads, which fixes the unit conversions in
//! `agent/src/collectors/gpu/dcgm.rs`.
//!
//! ```text
//! cargo build --release -p fleetgate-agent --example gpu_readings
//! target/release/examples/gpu_readings "what the GPU was doing" > h100.json
//! ```

use std::time::Duration;

use anyhow::Context;
use fleetgate_agent::collectors::gpu::{GpuCollector, GPM_METRICS};
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::Nvml;

fn main() -> anyhow::Result<()> {
    let about = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "raw NVML readings recorded by examples/gpu_readings".to_string());
    let collector = GpuCollector::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let gpus = collector
        .read_blocking()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let fixture = serde_json::json!({
        "about": about,
        "host": collector.host(),
        "gpus": gpus,
    });
    println!("{}", serde_json::to_string_pretty(&fixture)?);
    print_gpm_units().context("GPM units")?;
    Ok(())
}

/// Prints the NVML name and unit of each GPM metric the collector reads, for GPU 0 (stderr).
fn print_gpm_units() -> anyhow::Result<()> {
    let nvml = Nvml::init()?;
    let device = nvml.device_by_index(0)?;
    if !device.gpm_support().unwrap_or(false) {
        eprintln!("GPU 0 has no GPM");
        return Ok(());
    }
    let first = device.gpm_sample()?;
    std::thread::sleep(Duration::from_millis(200));
    let second = device.gpm_sample()?;
    for (id, result) in
        GPM_METRICS
            .iter()
            .zip(gpm_metrics_get(&nvml, &first, &second, &GPM_METRICS)?)
    {
        match result {
            Ok(r) => eprintln!(
                "GPM {id:?}: {} ({}) unit={:?} value={}",
                r.metric_info.short_name, r.metric_info.long_name, r.metric_info.unit, r.value
            ),
            Err(e) => eprintln!("GPM {id:?}: {e}"),
        }
    }
    Ok(())
}
