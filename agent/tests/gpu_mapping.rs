//! The NVML to dcgm-exporter mapping on raw NVML readings recorded from an H100 80GB HBM3 (idle
//! and busy, by `agent/examples/gpu_readings.rs`) and on readings modelled on two A10Gs (no A10G
//! was available): family names, types, label names and order, every value against the raw NVML
//! field it comes from with the unit conversion written out here, and omission of fields a GPU
//! does not support.

use std::collections::BTreeSet;

use fleetgate_agent::collectors::gpu::dcgm::{families, write_families, GpuHost, GpuReading};
use fleetgate_agent::collectors::MetricBuffer;
use fleetgate_shared::{MetricType, Series, Value};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Fixture {
    about: String,
    host: GpuHost,
    gpus: Vec<GpuReading>,
}

fn load(file: &str) -> (MetricBuffer, Fixture) {
    let path = format!("{}/tests/fixtures/gpu/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let mut out = MetricBuffer::new();
    write_families(&fixture.gpus, &fixture.host, &mut out);
    (out, fixture)
}

fn label<'a>(s: &'a Series, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

/// The value of `family` for GPU `gpu`, `None` if that GPU has no such series.
fn value(out: &MetricBuffer, family: &str, gpu: &str) -> Option<f64> {
    let found: Vec<f64> = out
        .families()
        .iter()
        .filter(|f| f.name == family)
        .flat_map(|f| f.series.iter())
        .filter(|s| label(s, "gpu") == Some(gpu))
        .map(|s| match s.value {
            Value::Scalar(v) => v,
            ref other => panic!("{family}: not a scalar: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{family} gpu={gpu}: {found:?}");
    found.first().copied()
}

fn names(out: &MetricBuffer) -> BTreeSet<&str> {
    out.families().iter().map(|f| f.name.as_str()).collect()
}

const LABELS: [&str; 7] = [
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "Hostname",
    "DCGM_FI_DRIVER_VERSION",
];

/// Every family of the list.
fn listed() -> BTreeSet<&'static str> {
    families().iter().map(|f| f.name).collect()
}

/// Families added to the collector after the H100 readings were recorded: the fixtures hold no
/// raw value for them, so they must be absent there. Their mapping is tested on written-out
/// readings in `gpu/dcgm.rs`; a new recording on a GPU (examples/gpu_readings) covers them.
const NOT_RECORDED: [&str; 3] = [
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
];

/// The families the H100 wrote: every listed one but [`NOT_RECORDED`].
fn recorded() -> BTreeSet<&'static str> {
    listed()
        .into_iter()
        .filter(|f| !NOT_RECORDED.contains(f))
        .collect()
}

const MIB: f64 = 1048576.0;

/// What each family must show for `raw`, computed from the NVML field it comes from with
/// dcgm-exporter's unit: `None` where the GPU does not support the field (then the family must be
/// absent). Written out here, apart from the mapping it checks.
fn expected(family: &str, raw: &GpuReading) -> Option<f64> {
    let n = |v: Option<u32>| v.map(f64::from);
    let n64 = |v: Option<u64>| v.map(|v| v as f64);
    let whole_mib = |v: Option<u64>| v.map(|b| (b as f64 / MIB).floor());
    let ratio = |pct: Option<f64>| pct.map(|p| p / 100.0);
    let pcie = |gpm_mib: Option<f64>, kb: Option<u32>| {
        gpm_mib
            .map(|m| m * MIB)
            .or(kb.map(|k| f64::from(k) * 1024.0))
    };
    match family {
        "DCGM_FI_DEV_SM_CLOCK" => n(raw.sm_clock_mhz),
        "DCGM_FI_DEV_MEM_CLOCK" => n(raw.mem_clock_mhz),
        "DCGM_FI_DEV_MEMORY_TEMP" => n64(raw.memory_temperature_c),
        "DCGM_FI_DEV_GPU_TEMP" => n(raw.temperature_c),
        "DCGM_FI_DEV_POWER_USAGE" => n(raw.power_mw).map(|mw| mw / 1000.0),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => n64(raw.total_energy_mj),
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" => n(raw.pcie_replay_counter),
        "DCGM_FI_DEV_GPU_UTIL" => n(raw.gpu_util_pct),
        "DCGM_FI_DEV_MEM_COPY_UTIL" => n(raw.mem_copy_util_pct),
        "DCGM_FI_DEV_ENC_UTIL" => n(raw.enc_util_pct),
        "DCGM_FI_DEV_DEC_UTIL" => n(raw.dec_util_pct),
        "DCGM_FI_DEV_XID_ERRORS" => n64(raw.last_xid),
        "DCGM_FI_DEV_FB_FREE" => whole_mib(raw.fb_free_bytes),
        "DCGM_FI_DEV_FB_USED" => whole_mib(raw.fb_used_bytes),
        "DCGM_FI_DEV_FB_RESERVED" => whole_mib(raw.fb_reserved_bytes),
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS" => n64(raw.uncorrectable_remapped_rows),
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS" => n64(raw.correctable_remapped_rows),
        "DCGM_FI_DEV_ROW_REMAP_FAILURE" => n64(raw.row_remap_failure),
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => n64(raw.clocks_event_reasons),
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" => n64(raw.ecc_sbe_volatile_total),
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" => n64(raw.ecc_dbe_volatile_total),
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE" => ratio(raw.gpm_graphics_util_pct),
        "DCGM_FI_PROF_SM_ACTIVE" => ratio(raw.gpm_sm_util_pct),
        "DCGM_FI_PROF_SM_OCCUPANCY" => ratio(raw.gpm_sm_occupancy_pct),
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE" => ratio(raw.gpm_tensor_util_pct),
        "DCGM_FI_PROF_DRAM_ACTIVE" => ratio(raw.gpm_dram_bw_util_pct),
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE" => ratio(raw.gpm_fp64_util_pct),
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE" => ratio(raw.gpm_fp32_util_pct),
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE" => ratio(raw.gpm_fp16_util_pct),
        "DCGM_FI_PROF_PCIE_TX_BYTES" => pcie(raw.gpm_pcie_tx_mib_per_s, raw.pcie_tx_kb_per_s),
        "DCGM_FI_PROF_PCIE_RX_BYTES" => pcie(raw.gpm_pcie_rx_mib_per_s, raw.pcie_rx_kb_per_s),
        other => panic!("{other} is in families.txt but this test has no NVML source for it"),
    }
}

/// Every listed family of every GPU of `file` against [`expected`]: present with that value
/// exactly when the raw reading has the field.
fn check_every_value(file: &str) {
    let (out, fixture) = load(file);
    for raw in &fixture.gpus {
        let gpu = raw.index.to_string();
        for family in listed() {
            assert_eq!(
                value(&out, family, &gpu),
                expected(family, raw),
                "{file}: {family} of GPU {gpu}"
            );
        }
    }
    for f in out.families() {
        assert!(
            listed().contains(f.name.as_str()),
            "{file}: {} is not listed",
            f.name
        );
    }
}

#[test]
fn every_value_follows_its_raw_nvml_field() {
    check_every_value("h100_80gb_hbm3_load.json");
    check_every_value("h100_80gb_hbm3_idle.json");
    check_every_value("a10g_x2_modelled.json");
}

#[test]
fn h100_readings_map_to_dcgm_names_labels_and_units() {
    // Recorded on an H100 while a PyTorch loop ran bf16 matmuls and host<->device copies.
    let (out, fixture) = load("h100_80gb_hbm3_load.json");
    let raw = &fixture.gpus[0];

    assert_eq!(names(&out), recorded());
    for family in out.families() {
        for series in &family.series {
            let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, LABELS, "{}", family.name);
        }
    }
    let series = &out.families()[0].series[0];
    let values: Vec<&str> = series.labels.iter().map(|l| l.value.as_str()).collect();
    assert_eq!(
        values,
        [
            "0",
            raw.uuid.as_str(),
            raw.pci_bus_id.as_str(),
            "nvidia0",
            "NVIDIA H100 80GB HBM3",
            fixture.host.hostname.as_str(),
            fixture.host.driver_version.as_str(),
        ]
    );

    // Units: each family against the raw NVML field it comes from.
    let get = |family: &str| value(&out, family, "0").expect(family);
    let some = |v: Option<u32>| f64::from(v.expect("recorded field"));
    assert_eq!(get("DCGM_FI_DEV_SM_CLOCK"), some(raw.sm_clock_mhz), "MHz");
    assert_eq!(get("DCGM_FI_DEV_GPU_TEMP"), some(raw.temperature_c), "°C");
    let mw = some(raw.power_mw);
    assert_eq!(get("DCGM_FI_DEV_POWER_USAGE"), mw / 1000.0, "W from mW");
    let energy = raw.total_energy_mj.expect("energy") as f64;
    assert_eq!(get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"), energy, "mJ");
    let used = raw.fb_used_bytes.expect("fb used");
    assert_eq!(
        get("DCGM_FI_DEV_FB_USED"),
        (used / 1048576) as f64,
        "whole MiB"
    );
    let pct = |v: Option<f64>| v.expect("GPM field") / 100.0;
    assert_eq!(
        get("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"),
        pct(raw.gpm_tensor_util_pct),
        "ratio from GPM percent"
    );
    assert_eq!(
        get("DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
        pct(raw.gpm_graphics_util_pct)
    );
    assert_eq!(
        get("DCGM_FI_PROF_PCIE_TX_BYTES"),
        raw.gpm_pcie_tx_mib_per_s.expect("GPM PCIe") * 1048576.0,
        "B/s from GPM MiB/s"
    );

    // What a busy H100 shows: clocks up, the tensor pipe and the PCIe copies visible.
    assert!(get("DCGM_FI_DEV_SM_CLOCK") > 1000.0);
    assert!(get("DCGM_FI_DEV_POWER_USAGE") > 200.0);
    for ratio in [
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE",
    ] {
        let v = get(ratio);
        assert!(v > 0.01 && v <= 1.0, "{ratio} = {v}");
    }
    assert!(get("DCGM_FI_PROF_PCIE_RX_BYTES") > 1e9, "GB/s of copies");

    let kind = |name: &str| {
        out.families()
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.kind)
    };
    for counter in [
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    ] {
        assert_eq!(kind(counter), Some(MetricType::Counter), "{counter}");
    }
    for name in recorded() {
        if kind(name) != Some(MetricType::Counter) {
            assert_eq!(kind(name), Some(MetricType::Gauge), "{name}");
        }
    }
}

#[test]
fn idle_h100_keeps_supported_zeros() {
    let (out, fixture) = load("h100_80gb_hbm3_idle.json");
    // The same families as under load: an idle GPU's activity is a real 0, not an absent one.
    assert_eq!(names(&out), recorded());
    for zero in [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_SM_ACTIVE",
    ] {
        assert_eq!(value(&out, zero, "0"), Some(0.0), "{zero}");
    }
    // GPM gave the PCIe rates, so NVML's 20 ms KB/s counter was not read.
    assert_eq!(fixture.gpus[0].pcie_tx_kb_per_s, None);
    assert!(value(&out, "DCGM_FI_PROF_PCIE_TX_BYTES", "0").is_some());
}

#[test]
fn unsupported_fields_are_omitted_not_zero_on_the_modelled_a10gs() {
    let (out, _) = load("a10g_x2_modelled.json");

    // GDDR6: no memory temperature, no row remapping; no GPM before Hopper.
    for absent in [
        "DCGM_FI_DEV_MEMORY_TEMP",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE",
    ] {
        assert!(!names(&out).contains(absent), "{absent} must be omitted");
    }
    // PCIe throughput was unsupported on GPU 1 only.
    assert_eq!(
        value(&out, "DCGM_FI_PROF_PCIE_RX_BYTES", "0"),
        Some(2048.0 * 1024.0)
    );
    assert_eq!(value(&out, "DCGM_FI_PROF_PCIE_RX_BYTES", "1"), None);

    // Supported zeros stay: an idle GPU's utilisation and used memory are real zeros.
    assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", "1"), Some(0.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_USED", "1"), Some(0.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_FREE", "1"), Some(22582.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", "1"), Some(43.0));
    assert_eq!(
        value(&out, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "1"),
        Some(2.0)
    );
    assert_eq!(value(&out, "DCGM_FI_DEV_POWER_USAGE", "0"), Some(148.221));
    assert_eq!(value(&out, "DCGM_FI_DEV_POWER_USAGE", "1"), Some(16.104));

    // Both GPUs' series of a family stay together, one per GPU, told apart by labels.
    let temps = out
        .families()
        .iter()
        .find(|f| f.name == "DCGM_FI_DEV_GPU_TEMP")
        .expect("GPU_TEMP");
    let devices: Vec<_> = temps
        .series
        .iter()
        .map(|s| label(s, "device").expect("device"))
        .collect();
    assert_eq!(devices, ["nvidia0", "nvidia1"]);
}

#[test]
fn exposition_of_the_mapping_parses_back_to_the_same_values() {
    for file in [
        "h100_80gb_hbm3_load.json",
        "h100_80gb_hbm3_idle.json",
        "a10g_x2_modelled.json",
    ] {
        let (out, _) = load(file);
        let text = fleetgate_shared::text::render(out.families());
        let parsed = fleetgate_shared::text::parse(&text).expect("exposition parses");
        assert_eq!(parsed.len(), out.families().len(), "{file}");
        for (back, family) in parsed.iter().zip(out.families()) {
            assert_eq!(back.name, family.name);
            assert_eq!(back.kind, family.kind);
            assert_eq!(back.series, family.series, "{}", family.name);
        }
    }
}
