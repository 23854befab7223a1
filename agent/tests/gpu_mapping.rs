//! The NVML to dcgm-exporter mapping on raw readings modelled on real devices (an H100 80GB
//! HBM3 and two A10Gs): family names, types, label names and order, unit conversions, and
//! omission of fields a GPU does not support.

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

#[test]
fn h100_readings_map_to_dcgm_names_labels_and_units() {
    let (out, fixture) = load("h100_80gb_hbm3.json");

    let expected: BTreeSet<&str> = [
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_MEMORY_TEMP",
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
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "DCGM_FI_PROF_PCIE_RX_BYTES",
    ]
    .into();
    // GPM readings are absent in the fixture, so the three PROF activity ratios are omitted.
    assert_eq!(families(&out), expected);

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
            "GPU-5b3c9f2e-8a41-d7c6-0e19-4f2a6b8d1c73",
            "00000000:18:00.0",
            "nvidia0",
            "NVIDIA H100 80GB HBM3",
            &fixture.host.hostname,
            "550.54.15",
        ]
    );

    assert_eq!(
        value(&out, "DCGM_FI_DEV_SM_CLOCK", "0"),
        Some(1980.0),
        "MHz"
    );
    assert_eq!(value(&out, "DCGM_FI_DEV_MEM_CLOCK", "0"), Some(2619.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_GPU_TEMP", "0"), Some(36.0), "°C");
    assert_eq!(value(&out, "DCGM_FI_DEV_MEMORY_TEMP", "0"), Some(45.0));
    assert_eq!(
        value(&out, "DCGM_FI_DEV_POWER_USAGE", "0"),
        Some(312.457),
        "W from mW"
    );
    let energy = value(&out, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0");
    assert_eq!(energy, Some(48_213_577_342.0), "mJ unchanged");
    assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", "0"), Some(87.0), "%");
    assert_eq!(value(&out, "DCGM_FI_DEV_MEM_COPY_UTIL", "0"), Some(41.0));
    // Whole MiB, floored: 54744825856 B = 52208.5 MiB, 30200315904 B = 28801.27 MiB.
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_USED", "0"), Some(52208.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_FREE", "0"), Some(28801.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_RESERVED", "0"), Some(549.0));
    assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", "0"), Some(0.0));
    let tx = value(&out, "DCGM_FI_PROF_PCIE_TX_BYTES", "0");
    assert_eq!(tx, Some(18432.0 * 1024.0), "B/s from KB/s");

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
    for gauge in [
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "DCGM_FI_PROF_PCIE_RX_BYTES",
    ] {
        assert_eq!(kind(gauge), Some(MetricType::Gauge), "{gauge}");
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
    for file in ["h100_80gb_hbm3.json", "a10g_x2.json"] {
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
