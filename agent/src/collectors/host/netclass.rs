//! `netclass`: interface properties from /sys/class/net/<iface>: `node_network_up`,
//! `node_network_info{address,broadcast,duplex,ifalias,operstate}` and one gauge or counter per
//! numeric attribute. An attribute the kernel refuses to read (carrier of a down link, speed
//! of a virtual one) is left out, as node_exporter does.

use fleetgate_shared::MetricType;

use super::{parse_int, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Numeric attributes: sysfs file, metric suffix, type, scale.
const ATTRIBUTES: [(&str, &str, MetricType, i64); 17] = [
    (
        "addr_assign_type",
        "address_assign_type",
        MetricType::Gauge,
        1,
    ),
    ("carrier", "carrier", MetricType::Gauge, 1),
    (
        "carrier_changes",
        "carrier_changes_total",
        MetricType::Counter,
        1,
    ),
    (
        "carrier_up_count",
        "carrier_up_changes_total",
        MetricType::Counter,
        1,
    ),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        MetricType::Counter,
        1,
    ),
    ("dev_id", "device_id", MetricType::Gauge, 1),
    ("dormant", "dormant", MetricType::Gauge, 1),
    ("flags", "flags", MetricType::Gauge, 1),
    ("ifindex", "iface_id", MetricType::Gauge, 1),
    ("iflink", "iface_link", MetricType::Gauge, 1),
    ("link_mode", "iface_link_mode", MetricType::Gauge, 1),
    ("mtu", "mtu_bytes", MetricType::Gauge, 1),
    ("name_assign_type", "name_assign_type", MetricType::Gauge, 1),
    ("netdev_group", "net_dev_group", MetricType::Gauge, 1),
    // Mbit/s to bytes/s; -1 (unknown) stays negative like node_exporter 1.x by default.
    ("speed", "speed_bytes", MetricType::Gauge, 125_000),
    (
        "tx_queue_len",
        "transmit_queue_length",
        MetricType::Gauge,
        1,
    ),
    ("type", "protocol_type", MetricType::Gauge, 1),
];

/// The non-numeric attributes of `node_network_info`, with their label names.
const INFO: [(&str, &str); 5] = [
    ("address", "address"),
    ("broadcast", "broadcast"),
    ("duplex", "duplex"),
    ("ifalias", "ifalias"),
    ("operstate", "operstate"),
];

/// The netclass collector.
#[derive(Debug)]
pub(super) struct Netclass {
    /// Reused read buffer.
    value: String,
    /// Family name and HELP per numeric attribute, built once.
    families: Vec<(String, String)>,
}

impl Default for Netclass {
    fn default() -> Self {
        let families = ATTRIBUTES
            .iter()
            .map(|(_, suffix, _, _)| {
                (
                    format!("node_network_{suffix}"),
                    format!("Network device property: {suffix}"),
                )
            })
            .collect();
        Netclass {
            value: String::new(),
            families,
        }
    }
}

impl Subcollector for Netclass {
    fn name(&self) -> &'static str {
        "netclass"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let mut devices: Vec<(String, std::path::PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(paths.sys("class/net"))? {
            let entry = entry?;
            // Entries are symlinks to device directories; `bonding_masters` is a plain file.
            if !entry.path().is_dir() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                devices.push((name, entry.path()));
            }
        }
        devices.sort_unstable();
        for (device, dir) in &devices {
            let mut info: Vec<(&str, String)> = Vec::with_capacity(INFO.len());
            for (file, label) in INFO {
                let value = read_value(&dir.join(file), &mut self.value).unwrap_or("");
                info.push((label, value.to_string()));
            }
            let operstate = info.last().map_or("", |(_, v)| v.as_str());
            out.gauge(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                &[("device", device)],
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            let mut labels: Vec<(&str, &str)> = vec![("device", device)];
            labels.extend(info.iter().map(|(l, v)| (*l, v.as_str())));
            out.gauge(
                "node_network_info",
                "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                &labels,
                1.0,
            );
            for ((file, _, kind, scale), (family, help)) in ATTRIBUTES.iter().zip(&self.families) {
                let Ok(text) = read_value(&dir.join(file), &mut self.value) else {
                    continue;
                };
                if let Some(v) = parse_int(text) {
                    out.sample(
                        family,
                        help,
                        *kind,
                        &[("device", device)],
                        (v * scale) as f64,
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_recorded_interface() {
        let dir = tempfile::tempdir().unwrap();
        let eth0 = dir.path().join("class/net/eth0");
        std::fs::create_dir_all(&eth0).unwrap();
        for (file, value) in [
            ("address", "02:fc:00:00:00:01"),
            ("broadcast", "ff:ff:ff:ff:ff:ff"),
            ("duplex", "unknown"),
            ("ifalias", ""),
            ("operstate", "up"),
            ("flags", "0x1003"),
            ("mtu", "1400"),
            ("speed", "-1"),
            ("carrier_changes", "2"),
        ] {
            std::fs::write(eth0.join(file), format!("{value}\n")).unwrap();
        }
        std::fs::write(dir.path().join("class/net/bonding_masters"), "").unwrap();
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        Netclass::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        for line in [
            "node_network_up{device=\"eth0\"} 1\n",
            "node_network_info{device=\"eth0\",address=\"02:fc:00:00:00:01\",broadcast=\"ff:ff:ff:ff:ff:ff\",duplex=\"unknown\",ifalias=\"\",operstate=\"up\"} 1\n",
            "node_network_flags{device=\"eth0\"} 4099\n",
            "node_network_mtu_bytes{device=\"eth0\"} 1400\n",
            "node_network_speed_bytes{device=\"eth0\"} -125000\n",
            "# TYPE node_network_carrier_changes_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("node_network_carrier{"),
            "unreadable attributes are left out"
        );
    }
}
