//! `cpufreq`: current, minimum and maximum CPU frequencies from
//! /sys/devices/system/cpu/cpu*/cpufreq, where the platform exposes them.

use super::{numbered_entries, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The cpufreq files node_exporter reads (kHz), with the family and HELP of each.
const FILES: [(&str, &str, &str); 6] = [
    (
        "cpuinfo_cur_freq",
        "node_cpu_frequency_hertz",
        "Current cpu thread frequency in hertz.",
    ),
    (
        "cpuinfo_max_freq",
        "node_cpu_frequency_max_hertz",
        "Maximum cpu thread frequency in hertz.",
    ),
    (
        "cpuinfo_min_freq",
        "node_cpu_frequency_min_hertz",
        "Minimum cpu thread frequency in hertz.",
    ),
    (
        "scaling_cur_freq",
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_max_freq",
        "node_cpu_scaling_frequency_max_hertz",
        "Maximum scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_min_freq",
        "node_cpu_scaling_frequency_min_hertz",
        "Minimum scaled CPU thread frequency in hertz.",
    ),
];

/// The cpufreq collector.
#[derive(Debug, Default)]
pub(super) struct CpuFreq {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for CpuFreq {
    fn name(&self) -> &'static str {
        "cpufreq"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        // Virtual machines usually have no cpufreq at all: nothing to report, not an error.
        for (n, dir) in numbered_entries(&paths.sys("devices/system/cpu"), "cpu")? {
            let cpufreq = dir.join("cpufreq");
            if !cpufreq.is_dir() {
                continue;
            }
            let cpu = n.to_string();
            for (file, family, help) in FILES {
                // cpuinfo_cur_freq is readable by root only; skip what we cannot read.
                let Ok(value) = read_value(&cpufreq.join(file), &mut self.text) else {
                    continue;
                };
                if let Ok(khz) = value.parse::<f64>() {
                    out.gauge(family, help, &[("cpu", &cpu)], khz * 1000.0);
                }
            }
        }
        Ok(())
    }
}
