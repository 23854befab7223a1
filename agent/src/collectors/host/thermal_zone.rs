//! `thermal_zone`: temperatures of /sys/class/thermal/thermal_zone* and the states of the
//! cooling devices (fans, CPU throttling) under /sys/class/thermal/cooling_device*.

use super::{numbered_entries, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The thermal_zone collector.
#[derive(Debug, Default)]
pub(super) struct ThermalZone {
    /// Reused read buffer.
    text: String,
    /// Reused buffer for a zone's or device's type.
    kind: String,
}

impl Subcollector for ThermalZone {
    fn name(&self) -> &'static str {
        "thermal_zone"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let dir = paths.sys("class/thermal");
        for (n, zone) in numbered_entries(&dir, "thermal_zone")? {
            // A zone whose sensor is asleep or broken answers EINVAL/EAGAIN/ENODATA: skip it.
            let Ok(kind) = read_value(&zone.join("type"), &mut self.kind) else {
                continue;
            };
            let Ok(Ok(millis)) =
                read_value(&zone.join("temp"), &mut self.text).map(str::parse::<f64>)
            else {
                continue;
            };
            out.gauge(
                "node_thermal_zone_temp",
                "Zone temperature in Celsius",
                &[("type", kind), ("zone", &n.to_string())],
                millis / 1000.0,
            );
        }
        for (n, device) in numbered_entries(&dir, "cooling_device")? {
            let Ok(kind) = read_value(&device.join("type"), &mut self.kind) else {
                continue;
            };
            let name = n.to_string();
            for (file, family, help) in [
                (
                    "cur_state",
                    "node_cooling_device_cur_state",
                    "Current throttle state of the cooling device",
                ),
                (
                    "max_state",
                    "node_cooling_device_max_state",
                    "Maximum throttle state of the cooling device",
                ),
            ] {
                if let Ok(Ok(v)) =
                    read_value(&device.join(file), &mut self.text).map(str::parse::<f64>)
                {
                    out.gauge(family, help, &[("name", &name), ("type", kind)], v);
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
    fn recorded_zone_and_cooling_device() {
        let dir = tempfile::tempdir().unwrap();
        let thermal = dir.path().join("class/thermal");
        for (sub, files) in [
            (
                "thermal_zone0",
                vec![("type", "x86_pkg_temp"), ("temp", "48000")],
            ),
            ("thermal_zone1", vec![("type", "acpitz")]),
            (
                "cooling_device3",
                vec![
                    ("type", "Processor"),
                    ("cur_state", "0"),
                    ("max_state", "10"),
                ],
            ),
        ] {
            std::fs::create_dir_all(thermal.join(sub)).unwrap();
            for (file, value) in files {
                std::fs::write(thermal.join(sub).join(file), format!("{value}\n")).unwrap();
            }
        }
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        ThermalZone::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        assert!(
            text.contains("node_thermal_zone_temp{type=\"x86_pkg_temp\",zone=\"0\"} 48\n"),
            "{text}"
        );
        assert!(
            !text.contains("acpitz"),
            "a zone without a readable temperature is skipped"
        );
        assert!(text.contains("node_cooling_device_max_state{name=\"3\",type=\"Processor\"} 10\n"));
    }
}
