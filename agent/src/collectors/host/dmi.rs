//! `dmi`: `node_dmi_info` with the firmware's description of the machine (vendor, product,
//! BIOS) from /sys/class/dmi/id; labels the kernel does not provide, or lets only root read
//! (serials, UUID), are left out as node_exporter does.

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// /sys/class/dmi/id files and their label names.
const FIELDS: [(&str, &str); 20] = [
    ("bios_date", "bios_date"),
    ("bios_release", "bios_release"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("board_asset_tag", "board_asset_tag"),
    ("board_name", "board_name"),
    ("board_serial", "board_serial"),
    ("board_vendor", "board_vendor"),
    ("board_version", "board_version"),
    ("chassis_asset_tag", "chassis_asset_tag"),
    ("chassis_serial", "chassis_serial"),
    ("chassis_vendor", "chassis_vendor"),
    ("chassis_version", "chassis_version"),
    ("product_family", "product_family"),
    ("product_name", "product_name"),
    ("product_serial", "product_serial"),
    ("product_sku", "product_sku"),
    ("product_uuid", "product_uuid"),
    ("product_version", "product_version"),
    ("sys_vendor", "system_vendor"),
];

/// The dmi collector.
#[derive(Debug, Default)]
pub(super) struct Dmi {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Dmi {
    fn name(&self) -> &'static str {
        "dmi"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let dir = paths.sys("class/dmi/id");
        std::fs::metadata(&dir)?;
        let mut values: Vec<(&str, String)> = Vec::new();
        for (file, label) in FIELDS {
            if let Ok(value) = read_value(&dir.join(file), &mut self.text) {
                if !value.is_empty() {
                    values.push((label, value.to_string()));
                }
            }
        }
        let labels: Vec<(&str, &str)> = values.iter().map(|(l, v)| (*l, v.as_str())).collect();
        out.gauge(
            "node_dmi_info",
            "A metric with a constant '1' value labeled by bios_date, bios_release, bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, product_family, product_name, product_serial, product_sku, product_uuid, product_version, system_vendor if provided by DMI.",
            &labels,
            1.0,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_unreadable_fields_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("sys_vendor"), "Supermicro\n").unwrap();
        std::fs::write(id.join("product_name"), "AS -4125GS-TNRT\n").unwrap();
        std::fs::write(id.join("board_asset_tag"), "\n").unwrap();
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        Dmi::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        assert!(
            text.contains(
                "node_dmi_info{product_name=\"AS -4125GS-TNRT\",system_vendor=\"Supermicro\"} 1\n"
            ),
            "{text}"
        );
    }
}
