//! GPU metrics with dcgm-exporter's `DCGM_FI_*` names through NVML, loaded at run time: a
//! machine without the NVIDIA driver runs the agent with this collector unavailable. This
//! module only reads NVML into [`dcgm::GpuReading`]s; [`dcgm`] owns the mapping.

pub mod dcgm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_MEMORY_TEMP, NVML_FI_DEV_REMAPPED_COR, NVML_FI_DEV_REMAPPED_FAILURE,
    NVML_FI_DEV_REMAPPED_UNC,
};
use nvml_wrapper::{Device, EventSet, GpmSample, Nvml};

use self::dcgm::{GpuHost, GpuReading};
use super::{CollectError, CollectFuture, Collector, MetricBuffer};

/// XID events drained per cycle at most, so a storm of events cannot stall a collection.
const MAX_EVENTS_PER_CYCLE: usize = 256;

/// Shortest window GPM metrics are computed over. The agent's interval is the usual window;
/// this only matters for the first collection after start (`--once`), which waits for it.
const MIN_GPM_WINDOW: Duration = Duration::from_millis(200);

/// The GPM metrics read each cycle, in the order of [`GpmValues`]'s fields.
pub const GPM_METRICS: [GpmMetricId; 10] = [
    GpmMetricId::GraphicsUtil,
    GpmMetricId::SmUtil,
    GpmMetricId::SmOccupancy,
    GpmMetricId::AnyTensorUtil,
    GpmMetricId::DramBwUtil,
    GpmMetricId::Fp64Util,
    GpmMetricId::Fp32Util,
    GpmMetricId::Fp16Util,
    GpmMetricId::PcieTxPerSec,
    GpmMetricId::PcieRxPerSec,
];

/// Collects dcgm-exporter-compatible metrics for every GPU NVML sees.
#[derive(Debug)]
pub struct GpuCollector {
    /// State shared with the blocking thread that does the NVML calls.
    shared: Arc<Shared>,
}

/// What the NVML-reading thread needs.
struct Shared {
    /// NVML stays loaded for the life of the process: device handles and the event set borrow
    /// it, so it is leaked once rather than dropped (construction happens once per process).
    nvml: &'static Nvml,
    /// Number of GPUs found at start.
    device_count: u32,
    /// Hostname and driver version, labels on every series.
    host: GpuHost,
    /// XID watching: the event set (if any GPU supports XID events) and the last XID per GPU.
    xid: Mutex<XidWatch>,
    /// Per GPU index that supports GPM (Hopper and newer): the previous sample and when it was
    /// taken. Profiling ratios are computed between it and the next one.
    gpm: Mutex<HashMap<u32, (GpmSample<'static>, Instant)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("device_count", &self.device_count)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// XID events registered at start and the last XID seen per GPU index.
struct XidWatch {
    /// The event set; `None` when no GPU supports critical XID events.
    events: Option<EventSet<'static>>,
    /// GPU indices registered for XID events; others omit `DCGM_FI_DEV_XID_ERRORS`.
    watched: Vec<u32>,
    /// Last XID value per GPU index.
    last: HashMap<u32, u64>,
}

impl GpuCollector {
    /// Loads NVML and finds the GPUs. Without the driver (or without any GPU) this is
    /// [`CollectError::Unavailable`] naming NVML.
    pub fn new() -> Result<Self, CollectError> {
        let nvml = Nvml::init().map_err(|e| {
            CollectError::Unavailable(format!(
                "NVML could not be loaded or initialised (is the NVIDIA driver installed?): {e}"
            ))
        })?;
        let device_count = nvml
            .device_count()
            .map_err(|e| CollectError::Unavailable(format!("NVML device count: {e}")))?;
        if device_count == 0 {
            return Err(CollectError::Unavailable(
                "NVML is loaded but reports no GPU".to_string(),
            ));
        }
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let host = GpuHost {
            hostname: hostname(),
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
        };
        let xid = Mutex::new(watch_xid(nvml, device_count));
        let gpm = Mutex::new(first_gpm_samples(nvml, device_count));
        Ok(GpuCollector {
            shared: Arc::new(Shared {
                nvml,
                device_count,
                host,
                xid,
                gpm,
            }),
        })
    }

    /// Hostname and driver version, the labels every GPU series carries.
    pub fn host(&self) -> &GpuHost {
        &self.shared.host
    }

    /// Reads every GPU once, in NVML's units: what [`dcgm::write_families`] maps. Blocks (NVML
    /// calls, and the first call waits for the GPM window); the collector itself runs this on a
    /// blocking thread. Used to record fixtures from real devices.
    pub fn read_blocking(&self) -> Result<Vec<GpuReading>, CollectError> {
        self.shared.read_all()
    }

    /// Number of GPUs NVML found at start.
    pub fn device_count(&self) -> u32 {
        self.shared.device_count
    }

    async fn collect_into(&mut self, out: &mut MetricBuffer) -> Result<(), CollectError> {
        // NVML calls block (PCIe throughput samples for 20 ms), so they run off the runtime.
        let shared = Arc::clone(&self.shared);
        let readings = tokio::task::spawn_blocking(move || shared.read_all())
            .await
            .map_err(|e| CollectError::Failed(format!("NVML reading thread: {e}")))??;
        dcgm::write_families(&readings, &self.shared.host, out);
        Ok(())
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
        Box::pin(self.collect_into(out))
    }
}

impl Shared {
    fn read_all(&self) -> Result<Vec<GpuReading>, CollectError> {
        let last_xid = self.drain_xid();
        let mut readings = Vec::with_capacity(self.device_count as usize);
        for index in 0..self.device_count {
            let device = match self.nvml.device_by_index(index) {
                Ok(device) => device,
                Err(e) => {
                    tracing::warn!(gpu = index, error = %e, "NVML lost a GPU");
                    continue;
                }
            };
            let gpm = self.read_gpm(&device, index);
            // GPM's PCIe rates cover the whole window; NVML's older counter samples 20 ms.
            let gpm_pcie = gpm.as_ref().is_some_and(|g| g.pcie_tx.is_some());
            let mut reading = read_device(&device, index, !gpm_pcie);
            reading.last_xid = last_xid.get(&index).copied();
            if let Some(gpm) = gpm {
                gpm.apply(&mut reading);
            }
            readings.push(reading);
        }
        if readings.is_empty() {
            return Err(CollectError::Failed(
                "NVML returned no readable GPU".to_string(),
            ));
        }
        Ok(readings)
    }

    /// Takes a GPM sample and computes the metrics over the window since the previous one,
    /// which it replaces. `None` for GPUs without GPM, or when NVML fails (logged at debug).
    fn read_gpm(&self, device: &Device<'static>, index: u32) -> Option<GpmValues> {
        let mut samples = self.gpm.lock().ok()?;
        let (_, taken) = samples.get(&index)?;
        let age = taken.elapsed();
        if age < MIN_GPM_WINDOW {
            std::thread::sleep(MIN_GPM_WINDOW - age);
        }
        let sample = match device.gpm_sample() {
            Ok(sample) => sample,
            Err(e) => {
                tracing::debug!(gpu = index, error = %e, "GPM sample failed");
                return None;
            }
        };
        let now = Instant::now();
        let (previous, _) = samples.insert(index, (sample, now))?;
        let (current, _) = samples.get(&index)?;
        match gpm_metrics_get(self.nvml, &previous, current, &GPM_METRICS) {
            Ok(results) => {
                let value = |i: usize| -> Option<f64> {
                    let v = results.get(i)?.as_ref().ok()?.value;
                    v.is_finite().then_some(v)
                };
                Some(GpmValues {
                    graphics: value(0),
                    sm: value(1),
                    occupancy: value(2),
                    tensor: value(3),
                    dram: value(4),
                    fp64: value(5),
                    fp32: value(6),
                    fp16: value(7),
                    pcie_tx: value(8),
                    pcie_rx: value(9),
                })
            }
            Err(e) => {
                tracing::debug!(gpu = index, error = %e, "GPM metrics failed");
                None
            }
        }
    }

    /// Takes pending XID events; returns the last XID (0 if none yet) of every watched GPU.
    fn drain_xid(&self) -> HashMap<u32, u64> {
        let Ok(mut watch) = self.xid.lock() else {
            return HashMap::new();
        };
        let XidWatch {
            events,
            watched,
            last,
        } = &mut *watch;
        if let Some(events) = events {
            for _ in 0..MAX_EVENTS_PER_CYCLE {
                match events.wait(0) {
                    Ok(event) => {
                        if let (Some(XidError::Value(xid)), Ok(index)) =
                            (event.event_data, event.device.index())
                        {
                            last.insert(index, xid);
                        }
                    }
                    Err(NvmlError::Timeout) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "NVML event wait failed");
                        break;
                    }
                }
            }
        }
        watched
            .iter()
            .map(|&i| (i, last.get(&i).copied().unwrap_or(0)))
            .collect()
    }
}

/// GPM metrics of one GPU over one window, in NVML's units (percent, MiB/s).
struct GpmValues {
    graphics: Option<f64>,
    sm: Option<f64>,
    occupancy: Option<f64>,
    tensor: Option<f64>,
    dram: Option<f64>,
    fp64: Option<f64>,
    fp32: Option<f64>,
    fp16: Option<f64>,
    pcie_tx: Option<f64>,
    pcie_rx: Option<f64>,
}

impl GpmValues {
    fn apply(self, reading: &mut GpuReading) {
        reading.gpm_graphics_util_pct = self.graphics;
        reading.gpm_sm_util_pct = self.sm;
        reading.gpm_sm_occupancy_pct = self.occupancy;
        reading.gpm_tensor_util_pct = self.tensor;
        reading.gpm_dram_bw_util_pct = self.dram;
        reading.gpm_fp64_util_pct = self.fp64;
        reading.gpm_fp32_util_pct = self.fp32;
        reading.gpm_fp16_util_pct = self.fp16;
        reading.gpm_pcie_tx_mib_per_s = self.pcie_tx;
        reading.gpm_pcie_rx_mib_per_s = self.pcie_rx;
    }
}

/// Takes a first GPM sample of every GPU that supports GPM, so the first collection has a
/// window to compute over. GPUs without GPM (before Hopper, or a driver without it) are left
/// out and never get `DCGM_FI_PROF_*` activity ratios.
fn first_gpm_samples(
    nvml: &'static Nvml,
    device_count: u32,
) -> HashMap<u32, (GpmSample<'static>, Instant)> {
    let mut samples = HashMap::new();
    for index in 0..device_count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        match device.gpm_support() {
            Ok(true) => match device.gpm_sample() {
                Ok(sample) => {
                    samples.insert(index, (sample, Instant::now()));
                }
                Err(e) => tracing::info!(gpu = index, error = %e, "GPM sampling failed"),
            },
            Ok(false) => tracing::debug!(gpu = index, "no GPM on this GPU"),
            Err(e) => tracing::debug!(gpu = index, error = %e, "no GPM on this GPU"),
        }
    }
    samples
}

/// Registers every GPU that supports it for critical XID events.
fn watch_xid(nvml: &'static Nvml, device_count: u32) -> XidWatch {
    let mut events: Option<EventSet<'static>> = None;
    let mut watched = Vec::new();
    for index in 0..device_count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let set = match events.take() {
            Some(set) => set,
            None => match nvml.create_event_set() {
                Ok(set) => set,
                Err(e) => {
                    tracing::info!(error = %e, "NVML event sets unavailable, no XID metrics");
                    break;
                }
            },
        };
        // A failed registration releases the set; the next GPU starts a fresh one.
        match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(set) => {
                events = Some(set);
                watched.push(index);
            }
            Err(e) => tracing::debug!(gpu = index, error = %e.error, "no XID events for GPU"),
        }
    }
    XidWatch {
        events,
        watched,
        last: HashMap::new(),
    }
}

/// One GPU's readings; every field NVML does not support stays `None`.
fn read_device(device: &Device<'_>, index: u32, pcie_throughput: bool) -> GpuReading {
    let pcie = |counter| {
        pcie_throughput
            .then(|| device.pcie_throughput(counter).ok())
            .flatten()
    };
    let utilization = device.utilization_rates().ok();
    // ECC counts exist only while ECC is on; NVML refuses them otherwise.
    let ecc_enabled = device.is_ecc_enabled().is_ok_and(|m| m.currently_enabled);
    let ecc = |error| {
        ecc_enabled
            .then(|| device.total_ecc_errors(error, EccCounter::Volatile).ok())
            .flatten()
    };
    let memory = device.memory_info().ok();
    let fields = device
        .field_values_for(&[
            FieldId(NVML_FI_DEV_MEMORY_TEMP),
            FieldId(NVML_FI_DEV_REMAPPED_COR),
            FieldId(NVML_FI_DEV_REMAPPED_UNC),
            FieldId(NVML_FI_DEV_REMAPPED_FAILURE),
        ])
        .unwrap_or_default();
    let field = |i: usize| -> Option<u64> {
        match fields.get(i)?.as_ref().ok()?.value.as_ref().ok()? {
            SampleValue::U32(v) => Some(u64::from(*v)),
            SampleValue::U64(v) => Some(*v),
            SampleValue::I64(v) => u64::try_from(*v).ok(),
            SampleValue::F64(v) => (*v >= 0.0).then_some(*v as u64),
        }
    };
    GpuReading {
        index,
        uuid: device.uuid().unwrap_or_default(),
        pci_bus_id: device.pci_info().map(|p| p.bus_id).unwrap_or_default(),
        name: device.name().unwrap_or_default(),
        sm_clock_mhz: device.clock_info(Clock::SM).ok(),
        mem_clock_mhz: device.clock_info(Clock::Memory).ok(),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        memory_temperature_c: field(0),
        power_mw: device.power_usage().ok(),
        total_energy_mj: device.total_energy_consumption().ok(),
        pcie_replay_counter: device.pcie_replay_counter().ok(),
        gpu_util_pct: utilization.as_ref().map(|u| u.gpu),
        mem_copy_util_pct: utilization.as_ref().map(|u| u.memory),
        enc_util_pct: device.encoder_utilization().ok().map(|u| u.utilization),
        dec_util_pct: device.decoder_utilization().ok().map(|u| u.utilization),
        last_xid: None,
        fb_free_bytes: memory.as_ref().map(|m| m.free),
        fb_used_bytes: memory.as_ref().map(|m| m.used),
        fb_reserved_bytes: memory.as_ref().map(|m| m.reserved),
        correctable_remapped_rows: field(1),
        uncorrectable_remapped_rows: field(2),
        row_remap_failure: field(3),
        // All reasons NVML defines (up to 0x100) are kept; bits a newer driver adds are not.
        clocks_event_reasons: device.current_throttle_reasons().ok().map(|r| r.bits()),
        ecc_sbe_volatile_total: ecc(MemoryError::Corrected),
        ecc_dbe_volatile_total: ecc(MemoryError::Uncorrected),
        // Filled in by `Shared::read_gpm` on GPUs with GPM.
        gpm_graphics_util_pct: None,
        gpm_sm_util_pct: None,
        gpm_sm_occupancy_pct: None,
        gpm_tensor_util_pct: None,
        gpm_dram_bw_util_pct: None,
        gpm_fp64_util_pct: None,
        gpm_fp32_util_pct: None,
        gpm_fp16_util_pct: None,
        gpm_pcie_tx_mib_per_s: None,
        gpm_pcie_rx_mib_per_s: None,
        pcie_tx_kb_per_s: pcie(PcieUtilCounter::Send),
        pcie_rx_kb_per_s: pcie(PcieUtilCounter::Receive),
    }
}

/// The kernel's hostname, as dcgm-exporter's `Hostname` label carries it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
