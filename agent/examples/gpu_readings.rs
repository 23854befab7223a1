//! Records the GPU collector's raw NVML readings from this machine's GPUs as a mapping fixture
//! (the format of `agent/tests/fixtures/gpu/*.json`), so the NVML-to-DCGM mapping is tested on
//! values that came from real devices. Also prints, on stderr, the unit NVML gives for every GPM
//! metric the collector reads, which fixes the unit conversions in `agent/src/collectors/gpu/dcgm.rs`, and NVML's raw
//! answers behind the clock event reasons and the ECC counts of every GPU (the ECC mode, each
//! count or the error NVML gave instead), which say why a field is present or left out.
//!
//! ```text
//! cargo build --release -p fleetgate-agent --example gpu_readings
//! target/release/examples/gpu_readings "what the GPU was doing" > h100.json
//! ```

use std::time::Duration;

use anyhow::Context;
use fleetgate_agent::collectors::gpu::{GpuCollector, GPM_METRICS};
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
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
    print_ecc_and_clock_events().context("ECC and clock event reasons")?;
    Ok(())
}

/// Prints, for every GPU (stderr), the clock event reasons with their names, the ECC mode and
/// the four total ECC counts (corrected and uncorrected, volatile and aggregate), each as NVML
/// returned it or the error it gave.
fn print_ecc_and_clock_events() -> anyhow::Result<()> {
    let nvml = Nvml::init()?;
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        match device.current_throttle_reasons() {
            Ok(reasons) => eprintln!(
                "GPU {index} clock event reasons: {:#x} {reasons:?}",
                reasons.bits()
            ),
            Err(e) => eprintln!("GPU {index} clock event reasons: {e}"),
        }
        match device.is_ecc_enabled() {
            Ok(mode) => eprintln!(
                "GPU {index} ECC mode: current={} pending={}",
                mode.currently_enabled, mode.pending_enabled
            ),
            Err(e) => eprintln!("GPU {index} ECC mode: {e}"),
        }
        for error in [MemoryError::Corrected, MemoryError::Uncorrected] {
            for counter in [EccCounter::Volatile, EccCounter::Aggregate] {
                match device.total_ecc_errors(error, counter) {
                    Ok(n) => eprintln!("GPU {index} ECC {error:?} {counter:?}: {n}"),
                    Err(e) => eprintln!("GPU {index} ECC {error:?} {counter:?}: {e}"),
                }
            }
        }
    }
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
