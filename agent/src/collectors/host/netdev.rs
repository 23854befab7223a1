//! `netdev`: per-interface traffic counters from /proc/net/dev, named
//! `node_network_{receive,transmit}_<stat>_total`, plus `receive_nohandler` from sysfs (what
//! node_exporter's netlink reader reports and /proc/net/dev does not).

use super::{read_to, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// /proc/net/dev columns after the interface name, in order.
const COLUMNS: [&str; 16] = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
];

/// The netdev collector.
#[derive(Debug)]
pub(super) struct Netdev {
    /// Reused read buffer.
    text: String,
    /// Reused buffer for the sysfs value.
    value: String,
    /// Family name and HELP per column, built once.
    families: Vec<(String, String)>,
}

impl Default for Netdev {
    fn default() -> Self {
        let families = COLUMNS
            .iter()
            .chain(&["receive_nohandler"])
            .map(|c| {
                (
                    format!("node_network_{c}_total"),
                    format!("Network device statistic {c}."),
                )
            })
            .collect();
        Netdev {
            text: String::new(),
            value: String::new(),
            families,
        }
    }
}

impl Subcollector for Netdev {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("net/dev"), &mut self.text)?;
        for (device, values) in self.text.lines().filter_map(parse_line) {
            let labels = [("device", device)];
            for ((family, help), value) in self.families.iter().zip(values) {
                out.counter(family, help, &labels, value);
            }
            let nohandler = paths.sys(&format!("class/net/{device}/statistics/rx_nohandler"));
            if let Ok(Ok(value)) = read_value(&nohandler, &mut self.value).map(str::parse::<f64>) {
                let (family, help) = &self.families[COLUMNS.len()];
                out.counter(family, help, &labels, value);
            }
        }
        Ok(())
    }
}

/// One interface line of /proc/net/dev: `  eth0: 375199417 ...`; `None` for the headers.
fn parse_line(line: &str) -> Option<(&str, [f64; 16])> {
    let (device, columns) = line.split_once(':')?;
    let device = device.trim();
    let mut values = [0.0; 16];
    let mut n = 0;
    for (slot, field) in values.iter_mut().zip(columns.split_ascii_whitespace()) {
        *slot = field.parse().ok()?;
        n += 1;
    }
    (n == values.len() && !device.is_empty()).then_some((device, values))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_interface_lines() {
        let text = "Inter-|   Receive                            |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo: 1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0\n  \
eth0: 375199417 251010 1 2 3 4 5 6 9185633 96005 7 8 9 10 11 12\n";
        let lines: Vec<_> = text.lines().filter_map(super::parse_line).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, "lo");
        assert_eq!(lines[1].0, "eth0");
        assert_eq!(lines[1].1[0], 375199417.0);
        assert_eq!(lines[1].1[15], 12.0);
    }
}
