//! `nvme`: `node_nvme_info` per NVMe controller from /sys/class/nvme.

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Controller attributes and their label names.
const FIELDS: [(&str, &str); 4] = [
    ("firmware_rev", "firmware_revision"),
    ("model", "model"),
    ("serial", "serial"),
    ("state", "state"),
];

/// The nvme collector.
#[derive(Debug, Default)]
pub(super) struct Nvme {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Nvme {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let mut devices: Vec<_> = std::fs::read_dir(paths.sys("class/nvme"))?
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        devices.sort_unstable();
        for (device, dir) in &devices {
            let mut values: Vec<(&str, String)> = vec![("device", device.clone())];
            for (file, label) in FIELDS {
                let value = read_value(&dir.join(file), &mut self.text).unwrap_or("");
                values.push((label, value.to_string()));
            }
            let labels: Vec<(&str, &str)> = values.iter().map(|(l, v)| (*l, v.as_str())).collect();
            out.gauge(
                "node_nvme_info",
                "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
                &labels,
                1.0,
            );
        }
        Ok(())
    }
}
