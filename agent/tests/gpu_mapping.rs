//! The NVML to dcgm-exporter mapping on raw readings recorded from an H100 80GB HBM3 (idle and
//! busy, by `examples/gpu_readings`) and modelled on two A10Gs: family names, types, label names
//! and order, unit conversions, and omission of fields a GPU does not support.

use std::collections::BTreeSet;

use fleetgate_agent::collectors::gpu::dcgm::{write_families, GpuHost, GpuReading};
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

fn families(out: &MetricBuffer) -> BTreeSet<&str> {
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

/// Every family the collector wrote on the H100 the readings were recorded from.
const H100_FAMILIES: [&str; 28] = [
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
];

#[test]
fn h100_readings_map_to_dcgm_names_labels_and_units() {
    // Recorded on an H100 while a PyTorch loop ran bf16 matmuls and host<->device copies.
    let (out, fixture) = load("h100_80gb_hbm3_load.json");
    let raw = &fixture.gpus[0];

    assert_eq!(families(&out), H100_FAMILIES.into());
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
    for name in H100_FAMILIES {
        if kind(name) != Some(MetricType::Counter) {
            assert_eq!(kind(name), Some(MetricType::Gauge), "{name}");
        }
    }
}

#[test]
fn idle_h100_keeps_supported_zeros() {
    let (out, fixture) = load("h100_80gb_hbm3_idle.json");
    // The same families as under load: an idle GPU's activity is a real 0, not an absent one.
    assert_eq!(families(&out), H100_FAMILIES.into());
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
fn mapping_matches_what_the_agent_printed_on_the_h100() {
    // `fleetgate-agent --once --collectors gpu` on the same machine, a few seconds apart from
    // the readings: names, types, HELP and label sets must agree; values differ with time.
    let path = format!(
        "{}/tests/fixtures/gpu/h100_80gb_hbm3_once.prom",
        env!("CARGO_MANIFEST_DIR")
    );
    let printed = fleetgate_shared::text::parse(&std::fs::read_to_string(path).expect("fixture"))
        .expect("recorded exposition parses");
    let (out, _) = load("h100_80gb_hbm3_load.json");
    assert_eq!(printed.len(), out.families().len());
    for (real, mapped) in printed.iter().zip(out.families()) {
        assert_eq!(real.name, mapped.name);
        assert_eq!(real.kind, mapped.kind, "{}", real.name);
        assert_eq!(real.help, mapped.help, "{}", real.name);
        let labels = |f: &fleetgate_shared::Family| -> Vec<Vec<(String, String)>> {
            f.series
                .iter()
                .map(|s| {
                    s.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect()
                })
                .collect()
        };
        assert_eq!(labels(real), labels(mapped), "{}", real.name);
    }
}

#[test]
fn unsupported_fields_are_omitted_not_zero() {
    let (out, _) = load("a10g_x2.json");

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
        assert!(!families(&out).contains(absent), "{absent} must be omitted");
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
        "a10g_x2.json",
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
