//! The NVML to dcgm-exporter mapping: raw per-GPU readings in NVML's units become
//! `DCGM_FI_*` families with dcgm-exporter's labels and units. Pure functions over plain data,
//! so the mapping is tested on readings recorded from real devices without a GPU. Which
//! families exist, with their types and HELP texts, is the list in `families.txt`, shared with
//! the tests, the dashboard proof and the load test.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use fleetgate_shared::{Label, MetricType, Series, Value};

use crate::collectors::MetricBuffer;

const MIB: u64 = 1024 * 1024;

/// The list of families, one `NAME TYPE HELP` per line (`#` starts a comment line).
pub const FAMILIES_TXT: &str = include_str!("families.txt");

/// One family of [`FAMILIES_TXT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcgmFamily {
    /// `DCGM_FI_...`.
    pub name: &'static str,
    /// Gauge or counter, as dcgm-exporter declares it.
    pub kind: MetricType,
    /// dcgm-exporter's HELP text.
    pub help: &'static str,
}

static FAMILIES: LazyLock<Vec<DcgmFamily>> = LazyLock::new(|| parse_families(FAMILIES_TXT));

/// Every family the collector can emit, in the order it writes them for each GPU.
pub fn families() -> &'static [DcgmFamily] {
    &FAMILIES
}

/// The lines of `text` that are `NAME gauge|counter HELP`; anything else is left out (a test
/// checks that every non-comment line of the list parses).
fn parse_families(text: &'static str) -> Vec<DcgmFamily> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let name = parts.next()?;
            let kind = match parts.next()? {
                "gauge" => MetricType::Gauge,
                "counter" => MetricType::Counter,
                _ => return None,
            };
            let help = parts.next()?.trim();
            Some(DcgmFamily { name, kind, help })
        })
        .collect()
}

/// One GPU's raw readings in NVML's own units. `None` means NVML does not support the field on
/// this GPU (or could not read it); such fields are omitted from the output, never sent as 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuReading {
    /// NVML device index; the `gpu` label and the `N` of `device="nvidiaN"`.
    pub index: u32,
    /// `GPU-xxxxxxxx-...` as NVML reports it.
    pub uuid: String,
    /// NVML's bus id, `00000000:18:00.0`.
    pub pci_bus_id: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`; the `modelName` label.
    pub name: String,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock, MHz.
    pub mem_clock_mhz: Option<u32>,
    /// GPU die temperature, °C.
    pub temperature_c: Option<u32>,
    /// Memory (HBM) temperature, °C, from `NVML_FI_DEV_MEMORY_TEMP`.
    pub memory_temperature_c: Option<u64>,
    /// Board power draw, milliwatts.
    pub power_mw: Option<u32>,
    /// Energy since the driver was loaded, millijoules.
    pub total_energy_mj: Option<u64>,
    /// PCIe replay (retry) count.
    pub pcie_replay_counter: Option<u32>,
    /// Percent of the last sample period a kernel was running.
    pub gpu_util_pct: Option<u32>,
    /// Percent of the last sample period device memory was read or written.
    pub mem_copy_util_pct: Option<u32>,
    /// Encoder utilisation, percent.
    pub enc_util_pct: Option<u32>,
    /// Decoder utilisation, percent.
    pub dec_util_pct: Option<u32>,
    /// Last XID error seen since start; `Some(0)` while XID events are watched and none came.
    pub last_xid: Option<u64>,
    /// Framebuffer free, bytes (`nvmlMemory_v2_t.free`).
    pub fb_free_bytes: Option<u64>,
    /// Framebuffer used, bytes (`nvmlMemory_v2_t.used`).
    pub fb_used_bytes: Option<u64>,
    /// Framebuffer reserved by the driver, bytes (`nvmlMemory_v2_t.reserved`).
    pub fb_reserved_bytes: Option<u64>,
    /// Rows remapped for correctable errors (`NVML_FI_DEV_REMAPPED_COR`).
    pub correctable_remapped_rows: Option<u64>,
    /// Rows remapped for uncorrectable errors (`NVML_FI_DEV_REMAPPED_UNC`).
    pub uncorrectable_remapped_rows: Option<u64>,
    /// Whether a row remapping failed (`NVML_FI_DEV_REMAPPED_FAILURE`), 0 or 1.
    pub row_remap_failure: Option<u64>,
    /// Why the clocks are below their maximum now: NVML's bitmask of clock event (throttle)
    /// reasons, `nvmlDeviceGetCurrentClocksEventReasons` (0x4 software power cap, 0x8 hardware
    /// slowdown, 0x20 / 0x40 software / hardware thermal, 0x80 hardware power brake, ...).
    pub clocks_event_reasons: Option<u64>,
    /// Corrected (single-bit) ECC errors since the driver loaded, `nvmlDeviceGetTotalEccErrors`
    /// (corrected, volatile); `None` where ECC is unsupported or disabled.
    pub ecc_sbe_volatile_total: Option<u64>,
    /// Uncorrected (double-bit) ECC errors since the driver loaded (uncorrected, volatile);
    /// `None` where ECC is unsupported or disabled.
    pub ecc_dbe_volatile_total: Option<u64>,
    /// GPM graphics engine utilisation, percent (Hopper and newer; `GRAPHICS_UTIL`).
    pub gpm_graphics_util_pct: Option<f64>,
    /// GPM share of SMs busy, percent (`SM_UTIL`).
    pub gpm_sm_util_pct: Option<f64>,
    /// GPM warps resident against the SMs' maximum, percent (`SM_OCCUPANCY`).
    pub gpm_sm_occupancy_pct: Option<f64>,
    /// GPM any-tensor pipe utilisation, percent (`ANY_TENSOR_UTIL`).
    pub gpm_tensor_util_pct: Option<f64>,
    /// GPM DRAM bandwidth utilisation, percent (`DRAM_BW_UTIL`).
    pub gpm_dram_bw_util_pct: Option<f64>,
    /// GPM FP64 pipe utilisation, percent (`FP64_UTIL`).
    pub gpm_fp64_util_pct: Option<f64>,
    /// GPM FP32 pipe utilisation, percent (`FP32_UTIL`).
    pub gpm_fp32_util_pct: Option<f64>,
    /// GPM FP16 pipe utilisation, percent (`FP16_UTIL`).
    pub gpm_fp16_util_pct: Option<f64>,
    /// GPM PCIe transmit rate, MiB/s (`PCIE_TX_PER_SEC`); preferred over `pcie_tx_kb_per_s`.
    pub gpm_pcie_tx_mib_per_s: Option<f64>,
    /// GPM PCIe receive rate, MiB/s (`PCIE_RX_PER_SEC`); preferred over `pcie_rx_kb_per_s`.
    pub gpm_pcie_rx_mib_per_s: Option<f64>,
    /// PCIe transmit throughput, KB/s (`nvmlDeviceGetPcieThroughput`, TX).
    pub pcie_tx_kb_per_s: Option<u32>,
    /// PCIe receive throughput, KB/s (`nvmlDeviceGetPcieThroughput`, RX).
    pub pcie_rx_kb_per_s: Option<u32>,
}

/// Labels shared by every GPU of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuHost {
    /// The machine's hostname; the `Hostname` label.
    pub hostname: String,
    /// NVIDIA driver version, e.g. `550.54.15`; the `DCGM_FI_DRIVER_VERSION` label.
    pub driver_version: String,
}

/// Appends the `DCGM_FI_*` families of `readings` to `out`.
pub fn write_families(readings: &[GpuReading], host: &GpuHost, out: &mut MetricBuffer) {
    for gpu in readings {
        let index = gpu.index.to_string();
        let labels = [
            Label::new("gpu", index.as_str()),
            Label::new("UUID", gpu.uuid.as_str()),
            Label::new("pci_bus_id", gpu.pci_bus_id.as_str()),
            Label::new("device", format!("nvidia{index}")),
            Label::new("modelName", gpu.name.as_str()),
            Label::new("Hostname", host.hostname.as_str()),
            Label::new("DCGM_FI_DRIVER_VERSION", host.driver_version.as_str()),
        ];
        let mut w = GpuWriter {
            out: &mut *out,
            labels: &labels,
        };
        write_gpu(&mut w, gpu);
    }
}

/// Appends series that share one GPU's labels.
struct GpuWriter<'a> {
    out: &'a mut MetricBuffer,
    labels: &'a [Label],
}

impl GpuWriter<'_> {
    /// Appends the series of family `name` (type and HELP from the list) when there is a value.
    fn put(&mut self, name: &str, value: Option<f64>) {
        let (Some(value), Some(family)) = (value, families().iter().find(|f| f.name == name))
        else {
            return;
        };
        self.out
            .family(family.name, family.help, family.kind)
            .series
            .push(Series {
                labels: self.labels.to_vec(),
                value: Value::Scalar(value),
            });
    }
}

fn f(v: Option<impl Into<f64>>) -> Option<f64> {
    v.map(Into::into)
}

/// Whole MiB, as DCGM reports framebuffer sizes.
fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| (b / MIB) as f64)
}

fn write_gpu(w: &mut GpuWriter<'_>, gpu: &GpuReading) {
    w.put("DCGM_FI_DEV_SM_CLOCK", f(gpu.sm_clock_mhz));
    w.put("DCGM_FI_DEV_MEM_CLOCK", f(gpu.mem_clock_mhz));
    w.put(
        "DCGM_FI_DEV_MEMORY_TEMP",
        gpu.memory_temperature_c.map(|t| t as f64),
    );
    w.put("DCGM_FI_DEV_GPU_TEMP", f(gpu.temperature_c));
    w.put(
        "DCGM_FI_DEV_POWER_USAGE",
        gpu.power_mw.map(|mw| f64::from(mw) / 1000.0),
    );
    w.put(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        gpu.total_energy_mj.map(|mj| mj as f64),
    );
    w.put(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        f(gpu.pcie_replay_counter),
    );
    w.put("DCGM_FI_DEV_GPU_UTIL", f(gpu.gpu_util_pct));
    w.put("DCGM_FI_DEV_MEM_COPY_UTIL", f(gpu.mem_copy_util_pct));
    w.put("DCGM_FI_DEV_ENC_UTIL", f(gpu.enc_util_pct));
    w.put("DCGM_FI_DEV_DEC_UTIL", f(gpu.dec_util_pct));
    w.put("DCGM_FI_DEV_XID_ERRORS", gpu.last_xid.map(|x| x as f64));
    w.put("DCGM_FI_DEV_FB_FREE", mib(gpu.fb_free_bytes));
    w.put("DCGM_FI_DEV_FB_USED", mib(gpu.fb_used_bytes));
    w.put("DCGM_FI_DEV_FB_RESERVED", mib(gpu.fb_reserved_bytes));
    w.put(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        gpu.uncorrectable_remapped_rows.map(|r| r as f64),
    );
    w.put(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        gpu.correctable_remapped_rows.map(|r| r as f64),
    );
    w.put(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        gpu.row_remap_failure.map(|r| r as f64),
    );
    // Not in dcgm-exporter's default list (an operator adds it to the counters CSV, as a
    // gauge: a bitmask, not a count); the HELP is DCGM's description of field 112.
    w.put(
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        gpu.clocks_event_reasons.map(|r| r as f64),
    );
    w.put(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        gpu.ecc_sbe_volatile_total.map(|n| n as f64),
    );
    w.put(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        gpu.ecc_dbe_volatile_total.map(|n| n as f64),
    );
    // DCGM's profiling fields are ratios (0-1); GPM reports percent.
    let ratio = |pct: Option<f64>| pct.map(|p| p / 100.0);
    w.put(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        ratio(gpu.gpm_graphics_util_pct),
    );
    w.put("DCGM_FI_PROF_SM_ACTIVE", ratio(gpu.gpm_sm_util_pct));
    w.put("DCGM_FI_PROF_SM_OCCUPANCY", ratio(gpu.gpm_sm_occupancy_pct));
    w.put(
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        ratio(gpu.gpm_tensor_util_pct),
    );
    w.put("DCGM_FI_PROF_DRAM_ACTIVE", ratio(gpu.gpm_dram_bw_util_pct));
    w.put(
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
        ratio(gpu.gpm_fp64_util_pct),
    );
    w.put(
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
        ratio(gpu.gpm_fp32_util_pct),
    );
    w.put(
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
        ratio(gpu.gpm_fp16_util_pct),
    );
    // GPM measures PCIe over the whole sampling window in MiB/s; without GPM, NVML's
    // pcie_throughput() samples 20 ms in KB/s. DCGM reports bytes per second.
    let pcie = |gpm_mib: Option<f64>, kb: Option<u32>| {
        gpm_mib
            .map(|m| m * MIB as f64)
            .or_else(|| kb.map(|kb| f64::from(kb) * 1024.0))
    };
    w.put(
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        pcie(gpu.gpm_pcie_tx_mib_per_s, gpu.pcie_tx_kb_per_s),
    );
    w.put(
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        pcie(gpu.gpm_pcie_rx_mib_per_s, gpu.pcie_rx_kb_per_s),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_list_is_a_family() {
        let lines = FAMILIES_TXT
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(
            families().len(),
            lines,
            "a line of families.txt does not parse"
        );
        let mut names: Vec<&str> = families().iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), lines, "a family is listed twice");
        assert!(families()
            .iter()
            .all(|f| f.name.starts_with("DCGM_FI_") && !f.help.is_empty()));
    }

    #[test]
    fn a_gpu_with_every_field_emits_exactly_the_list_in_its_order() {
        let gpu = GpuReading {
            sm_clock_mhz: Some(1),
            mem_clock_mhz: Some(1),
            temperature_c: Some(1),
            memory_temperature_c: Some(1),
            power_mw: Some(1),
            total_energy_mj: Some(1),
            pcie_replay_counter: Some(1),
            gpu_util_pct: Some(1),
            mem_copy_util_pct: Some(1),
            enc_util_pct: Some(1),
            dec_util_pct: Some(1),
            last_xid: Some(1),
            fb_free_bytes: Some(1),
            fb_used_bytes: Some(1),
            fb_reserved_bytes: Some(1),
            correctable_remapped_rows: Some(1),
            uncorrectable_remapped_rows: Some(1),
            row_remap_failure: Some(1),
            clocks_event_reasons: Some(1),
            ecc_sbe_volatile_total: Some(1),
            ecc_dbe_volatile_total: Some(1),
            gpm_graphics_util_pct: Some(1.0),
            gpm_sm_util_pct: Some(1.0),
            gpm_sm_occupancy_pct: Some(1.0),
            gpm_tensor_util_pct: Some(1.0),
            gpm_dram_bw_util_pct: Some(1.0),
            gpm_fp64_util_pct: Some(1.0),
            gpm_fp32_util_pct: Some(1.0),
            gpm_fp16_util_pct: Some(1.0),
            gpm_pcie_tx_mib_per_s: Some(1.0),
            gpm_pcie_rx_mib_per_s: Some(1.0),
            pcie_tx_kb_per_s: Some(1),
            pcie_rx_kb_per_s: Some(1),
            ..Default::default()
        };
        let mut out = MetricBuffer::new();
        write_families(&[gpu], &GpuHost::default(), &mut out);
        let written: Vec<(&str, MetricType, &str)> = out
            .families()
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.help.as_str()))
            .collect();
        let listed: Vec<(&str, MetricType, &str)> = families()
            .iter()
            .map(|f| (f.name, f.kind, f.help))
            .collect();
        assert_eq!(written, listed);
    }

    #[test]
    fn gpm_percent_becomes_a_ratio_and_missing_fields_are_omitted() {
        let gpu = GpuReading {
            index: 3,
            uuid: "GPU-x".into(),
            gpm_tensor_util_pct: Some(42.5),
            ..Default::default()
        };
        let mut out = MetricBuffer::new();
        write_families(&[gpu], &GpuHost::default(), &mut out);
        let names: Vec<&str> = out.families().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"]);
        let series = &out.families()[0].series[0];
        assert_eq!(series.value, Value::Scalar(0.425));
        assert_eq!(series.labels[3], Label::new("device", "nvidia3"));
    }

    #[test]
    fn clock_event_reasons_and_ecc_counts_keep_their_value_and_type() {
        let gpu = GpuReading {
            // Hardware slowdown and hardware thermal slowdown at once.
            clocks_event_reasons: Some(0x8 | 0x40),
            ecc_sbe_volatile_total: Some(17),
            ecc_dbe_volatile_total: Some(0),
            ..Default::default()
        };
        let mut out = MetricBuffer::new();
        write_families(&[gpu], &GpuHost::default(), &mut out);
        let got: Vec<(&str, MetricType, Value)> = out
            .families()
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.series[0].value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                    MetricType::Gauge,
                    Value::Scalar(72.0)
                ),
                (
                    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                    MetricType::Counter,
                    Value::Scalar(17.0)
                ),
                (
                    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                    MetricType::Counter,
                    Value::Scalar(0.0)
                ),
            ]
        );

        // ECC off or unsupported: no ECC series at all, not zeros.
        let no_ecc = GpuReading {
            clocks_event_reasons: Some(0),
            ..Default::default()
        };
        let mut out = MetricBuffer::new();
        write_families(&[no_ecc], &GpuHost::default(), &mut out);
        let names: Vec<&str> = out.families().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["DCGM_FI_DEV_CLOCKS_EVENT_REASONS"]);
    }

    #[test]
    fn pcie_rates_prefer_gpm_mib_and_fall_back_to_the_kb_counter() {
        let both = GpuReading {
            gpm_pcie_tx_mib_per_s: Some(1.5),
            pcie_tx_kb_per_s: Some(999),
            pcie_rx_kb_per_s: Some(4),
            ..Default::default()
        };
        let mut out = MetricBuffer::new();
        write_families(&[both], &GpuHost::default(), &mut out);
        let value = |name: &str| {
            out.families()
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.series[0].value.clone())
        };
        assert_eq!(
            value("DCGM_FI_PROF_PCIE_TX_BYTES"),
            Some(Value::Scalar(1.5 * 1048576.0)),
            "GPM MiB/s wins"
        );
        assert_eq!(
            value("DCGM_FI_PROF_PCIE_RX_BYTES"),
            Some(Value::Scalar(4096.0)),
            "KB/s when GPM has no value"
        );
    }
}
