//! `diskstats`: per-device I/O counters from /proc/diskstats in node_exporter's units (sectors
//! of 512 bytes to bytes, milliseconds to seconds), with its default device exclusion, plus
//! `node_disk_info` from udev's database where the host has one.

use fleetgate_shared::MetricType;

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// /proc/diskstats counts sectors of 512 bytes whatever the device's real sector size.
const SECTOR_BYTES: f64 = 512.0;
/// Milliseconds to seconds.
const MS: f64 = 0.001;

/// One /proc/diskstats column after major, minor and name: family, HELP, type, scale.
type Column = (&'static str, &'static str, MetricType, f64);

/// The columns in /proc/diskstats order (kernel 5.5+ has all 17; older kernels fewer).
const COLUMNS: [Column; 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        MetricType::Counter,
        SECTOR_BYTES,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        MetricType::Counter,
        SECTOR_BYTES,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        MetricType::Gauge,
        1.0,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        MetricType::Counter,
        MS,
    ),
];

/// udev properties of `node_disk_info`, with their label names.
const UDEV_LABELS: [(&str, &str); 5] = [
    ("ID_PATH", "path"),
    ("ID_WWN", "wwn"),
    ("ID_MODEL", "model"),
    ("ID_SERIAL_SHORT", "serial"),
    ("ID_REVISION", "revision"),
];

/// The diskstats collector.
#[derive(Debug, Default)]
pub(super) struct Diskstats {
    /// Reused read buffer for /proc/diskstats.
    text: String,
    /// Reused read buffer for udev's per-device file.
    udev: String,
}

impl Subcollector for Diskstats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("diskstats"), &mut self.text)?;
        let udev_dir = paths.rootfs("run/udev/data");
        for line in self.text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(major), Some(minor), Some(device)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if is_ignored_device(device) {
                continue;
            }
            let labels = [("device", device)];
            for ((family, help, kind, scale), value) in COLUMNS.iter().zip(fields) {
                if let Ok(value) = value.parse::<f64>() {
                    out.sample(family, help, *kind, &labels, value * scale);
                }
            }
            // Absent on hosts without udev (containers, minimal VMs): labels stay empty.
            let udev_file = udev_dir.join(format!("b{major}:{minor}"));
            if read_to(&udev_file, &mut self.udev).is_err() {
                self.udev.clear();
            }
            let mut info = vec![("device", device), ("major", major), ("minor", minor)];
            for (key, label) in UDEV_LABELS {
                info.push((label, udev_property(&self.udev, key)));
            }
            out.gauge(
                "node_disk_info",
                "Info of /sys/block/<block_device>.",
                &info,
                1.0,
            );
        }
        Ok(())
    }
}

/// node_exporter's default `--collector.diskstats.device-exclude`:
/// `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$` (partitions and RAM-backed devices).
fn is_ignored_device(device: &str) -> bool {
    let stem = device.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == device.len() {
        return false;
    }
    // Every alternative ends in a non-digit, so the trailing `\d+` is exactly the digit run.
    matches!(stem, "ram" | "zram" | "loop" | "fd")
        || is_whole_disk_name(stem)
        || is_nvme_namespace(stem)
}

/// `(h|s|v|xv)d[a-z]`: a disk name whose partitions are numbered right after it.
fn is_whole_disk_name(stem: &str) -> bool {
    let Some(prefix) = stem.strip_suffix(|c: char| c.is_ascii_lowercase()) else {
        return false;
    };
    matches!(prefix, "hd" | "sd" | "vd" | "xvd")
}

/// `nvme\d+n\d+p`: an NVMe namespace followed by a partition number.
fn is_nvme_namespace(stem: &str) -> bool {
    let Some(rest) = stem.strip_prefix("nvme").and_then(|r| r.strip_suffix('p')) else {
        return false;
    };
    let Some((controller, namespace)) = rest.split_once('n') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(controller) && digits(namespace)
}

/// The value of `E:<key>=<value>` in a udev database file, or "".
fn udev_property<'a>(udev: &'a str, key: &str) -> &'a str {
    udev.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_matches_node_exporter_regex() {
        for d in [
            "sda1",
            "vda3",
            "xvdb12",
            "hda1",
            "nvme0n1p2",
            "ram0",
            "zram0",
            "loop7",
            "fd0",
        ] {
            assert!(is_ignored_device(d), "{d} should be ignored");
        }
        for d in [
            "sda", "vda", "nvme0n1", "dm-0", "md0", "sr0", "mmcblk0", "nvme0n1p", "sdaa",
        ] {
            assert!(!is_ignored_device(d), "{d} should be kept");
        }
    }

    #[test]
    fn udev_properties() {
        let db = "S:disk/by-id/x\nE:ID_MODEL=Samsung SSD\nE:ID_SERIAL_SHORT=S1234\n";
        assert_eq!(udev_property(db, "ID_MODEL"), "Samsung SSD");
        assert_eq!(udev_property(db, "ID_SERIAL_SHORT"), "S1234");
        assert_eq!(udev_property(db, "ID_WWN"), "");
    }

    #[test]
    fn units_and_filtering_on_a_recorded_snippet() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir(&proc).unwrap();
        std::fs::write(
            proc.join("diskstats"),
            " 254       0 vda 48605 7780 4745369 51945 25733 77101 34155008 164931 0 18204 217994 5881 42 653328 1000 2577 118\n \
             254       1 vda1 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
               7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        let paths = HostPaths {
            proc,
            sys: dir.path().join("sys"),
            rootfs: dir.path().to_path_buf(),
        };
        let mut out = MetricBuffer::new();
        Diskstats::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        assert!(
            text.contains("node_disk_read_bytes_total{device=\"vda\"} 2429628928\n"),
            "{text}"
        );
        assert!(text.contains("node_disk_write_time_seconds_total{device=\"vda\"} 164.931\n"));
        assert!(text.contains("node_disk_flush_requests_total{device=\"vda\"} 2577\n"));
        assert!(!text.contains("vda1") && !text.contains("loop0"));
        assert!(text.contains("node_disk_info{device=\"vda\",major=\"254\",minor=\"0\",path=\"\""));
    }
}
