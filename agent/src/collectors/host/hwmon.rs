//! `hwmon`: hardware sensors from /sys/class/hwmon (temperatures, voltages, fans, power), with
//! node_exporter's chip naming, metric names, units and HELP texts. Absent in most VMs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use fleetgate_shared::MetricType;

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Sensor types node_exporter reads.
const SENSOR_TYPES: [&str; 13] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// Properties of one sensor (`temp1`): property (`input`, `max`, `label`, "" for a bare file) to
/// raw value.
type Sensor = BTreeMap<String, String>;

/// The hwmon collector.
#[derive(Debug, Default)]
pub(super) struct Hwmon {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Hwmon {
    fn name(&self) -> &'static str {
        "hwmon"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let mut dirs: Vec<_> = fs::read_dir(paths.sys("class/hwmon"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        dirs.sort_unstable();
        for dir in dirs {
            let chip = chip_name(&dir);
            if let Ok(name) = read_value(&dir.join("name"), &mut self.text) {
                out.gauge(
                    "node_hwmon_chip_names",
                    "Annotation metric for human-readable chip names",
                    &[("chip", &chip), ("chip_name", name)],
                    1.0,
                );
            }
            // Older drivers keep their sensor files under device/; the hwmon directory wins.
            let mut sensors: BTreeMap<(String, String), Sensor> = BTreeMap::new();
            self.read_sensors(&dir.join("device"), &mut sensors);
            self.read_sensors(&dir, &mut sensors);
            for ((kind, id), properties) in &sensors {
                emit_sensor(out, &chip, &format!("{kind}{id}"), kind, properties);
            }
        }
        Ok(())
    }
}

impl Hwmon {
    /// Adds the sensor files of `dir` (`temp1_input`, `fan2_min`, ...) to `sensors`.
    fn read_sensors(&mut self, dir: &Path, sensors: &mut BTreeMap<(String, String), Sensor>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let Some((kind, id, property)) = split_sensor_file(&file) else {
                continue;
            };
            if !SENSOR_TYPES.contains(&kind) {
                continue;
            }
            // Write-only or failing attributes (EIO from a sleeping chip) are skipped.
            let Ok(value) = read_value(&entry.path(), &mut self.text) else {
                continue;
            };
            sensors
                .entry((kind.to_string(), id.to_string()))
                .or_default()
                .insert(property.to_string(), value.to_string());
        }
    }
}

/// `^([^0-9]+)([0-9]*)(_(.+))?$`: `temp1_crit_alarm` -> (`temp`, `1`, `crit_alarm`); without
/// digits the whole name is the type (`beep_enable`).
fn split_sensor_file(file: &str) -> Option<(&str, &str, &str)> {
    let kind_end = file
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(file.len());
    let (kind, rest) = file.split_at(kind_end);
    let id_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (id, rest) = rest.split_at(id_end);
    let property = match rest.strip_prefix('_') {
        Some(p) if !p.is_empty() => p,
        Some(_) => return None,
        None if rest.is_empty() => "",
        None => return None,
    };
    (!kind.is_empty()).then_some((kind, id, property))
}

/// Appends the families of one sensor, named and scaled as node_exporter does.
fn emit_sensor(out: &mut MetricBuffer, chip: &str, sensor: &str, kind: &str, props: &Sensor) {
    let labels = [("chip", chip), ("sensor", sensor)];
    if let Some(label) = props.get("label") {
        out.gauge(
            "node_hwmon_sensor_label",
            "Label for given chip and sensor",
            &[("chip", chip), ("label", label), ("sensor", sensor)],
            1.0,
        );
    }
    let gauge = MetricType::Gauge;
    for (element, raw) in props {
        let Ok(value) = raw.parse::<f64>() else {
            continue;
        };
        match kind {
            "beep_enable" => {
                out.gauge(
                    "node_hwmon_beep_enabled",
                    "Hardware beep enabled",
                    &labels,
                    value,
                );
                continue;
            }
            "vrm" => {
                out.gauge(
                    "node_hwmon_voltage_regulator_version",
                    "Hardware voltage regulator",
                    &labels,
                    value,
                );
                continue;
            }
            "update_interval" => {
                out.gauge(
                    "node_hwmon_update_interval_seconds",
                    "Hardware monitor update interval",
                    &labels,
                    value * 0.001,
                );
                continue;
            }
            _ => {}
        }
        if element == "label" {
            continue;
        }
        let mut name = format!("node_hwmon_{kind}");
        if element == "input" {
            if props.contains_key("") {
                name.push_str("_input");
            }
        } else if !element.is_empty() {
            name.push('_');
            name.push_str(&clean_name(element));
        }
        let (suffix, help, scale, kind_) = match (kind, element.as_str()) {
            (_, "fault" | "alarm" | "beep") => (
                "",
                format!("Hardware sensor {element} status ({kind})"),
                1.0,
                gauge,
            ),
            ("in" | "cpu", _) => (
                "_volts",
                format!("Hardware monitor for voltage ({element})"),
                0.001,
                gauge,
            ),
            ("temp", e) if e != "type" => {
                let e = if e.is_empty() { "input" } else { e };
                (
                    "_celsius",
                    format!("Hardware monitor for temperature ({e})"),
                    0.001,
                    gauge,
                )
            }
            ("curr", _) => (
                "_amps",
                format!("Hardware monitor for current ({element})"),
                0.001,
                gauge,
            ),
            ("energy", _) => (
                "_joule_total",
                format!("Hardware monitor for joules used so far ({element})"),
                1e-6,
                MetricType::Counter,
            ),
            ("power", "accuracy") => (
                "",
                "Hardware monitor power meter accuracy, as a ratio".to_string(),
                1e-6,
                gauge,
            ),
            ("power", "average_interval" | "average_interval_min" | "average_interval_max") => (
                "_seconds",
                format!("Hardware monitor power usage update interval ({element})"),
                0.001,
                gauge,
            ),
            ("power", _) => (
                "_watt",
                format!("Hardware monitor for power usage in watts ({element})"),
                1e-6,
                gauge,
            ),
            ("humidity", _) => (
                "",
                format!("Hardware monitor for humidity ({element})"),
                1e-6,
                gauge,
            ),
            ("fan", "input" | "min" | "max" | "target") => (
                "_rpm",
                format!("Hardware monitor for fan revolutions per minute ({element})"),
                1.0,
                gauge,
            ),
            _ => (
                "",
                format!("Hardware monitor {kind} element {element}"),
                1.0,
                gauge,
            ),
        };
        name.push_str(suffix);
        out.sample(&name, &help, kind_, &labels, value * scale);
    }
}

/// node_exporter's stable chip name: `<bus>_<device>` from the device symlink
/// (`platform_coretemp_0`), else the cleaned `name` file, else `hwmonN`.
fn chip_name(dir: &Path) -> String {
    if let Ok(device) = fs::canonicalize(dir.join("device")) {
        let dev_name = device.file_name().and_then(|n| n.to_str()).map(clean_name);
        let dev_type = device
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(clean_name);
        match (dev_type, dev_name) {
            (Some(t), Some(n)) if !t.is_empty() && !n.is_empty() => return format!("{t}_{n}"),
            (_, Some(n)) if !n.is_empty() => return n,
            _ => {}
        }
    }
    if let Ok(name) = fs::read_to_string(dir.join("name")) {
        let name = clean_name(&name);
        if !name.is_empty() {
            return name;
        }
    }
    let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    real.file_name()
        .and_then(|n| n.to_str())
        .map(clean_name)
        .unwrap_or_default()
}

/// Lower case, `[^a-z0-9:_]` replaced by `_`, surrounding `_` and whitespace trimmed.
fn clean_name(raw: &str) -> String {
    let replaced: String = raw
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | ':' | '_' => c,
            _ => '_',
        })
        .collect();
    replaced
        .trim_matches(|c: char| c == '_' || c.is_whitespace())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_file_names() {
        assert_eq!(
            split_sensor_file("temp1_input"),
            Some(("temp", "1", "input"))
        );
        assert_eq!(
            split_sensor_file("temp1_crit_alarm"),
            Some(("temp", "1", "crit_alarm"))
        );
        assert_eq!(split_sensor_file("fan2"), Some(("fan", "2", "")));
        assert_eq!(
            split_sensor_file("beep_enable"),
            Some(("beep_enable", "", ""))
        );
        assert_eq!(split_sensor_file("name"), Some(("name", "", "")));
    }

    #[test]
    fn recorded_coretemp() {
        let dir = tempfile::tempdir().unwrap();
        let hwmon = dir.path().join("class/hwmon/hwmon0");
        fs::create_dir_all(&hwmon).unwrap();
        for (file, value) in [
            ("name", "coretemp"),
            ("temp1_input", "45000"),
            ("temp1_crit", "100000"),
            ("temp1_label", "Package id 0"),
            ("fan1_input", "1200"),
            ("in0_input", "1200"),
        ] {
            fs::write(hwmon.join(file), format!("{value}\n")).unwrap();
        }
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        Hwmon::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        for line in [
            "node_hwmon_chip_names{chip=\"coretemp\",chip_name=\"coretemp\"} 1\n",
            "node_hwmon_temp_celsius{chip=\"coretemp\",sensor=\"temp1\"} 45\n",
            "node_hwmon_temp_crit_celsius{chip=\"coretemp\",sensor=\"temp1\"} 100\n",
            "node_hwmon_sensor_label{chip=\"coretemp\",label=\"Package id 0\",sensor=\"temp1\"} 1\n",
            "node_hwmon_fan_rpm{chip=\"coretemp\",sensor=\"fan1\"} 1200\n",
            "node_hwmon_in_volts{chip=\"coretemp\",sensor=\"in0\"} 1.2\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
