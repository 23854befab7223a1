//! `pressure`: pressure stall information from /proc/pressure/{cpu,io,memory}; kernels without
//! PSI have no such directory and the collector is skipped.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Resource file, line kind (`some` or `full`), family, HELP.
const LINES: [(&str, &str, &str, &str); 5] = [
    (
        "cpu",
        "some",
        "node_pressure_cpu_waiting_seconds_total",
        "Total time in seconds that processes have waited for CPU time",
    ),
    (
        "io",
        "some",
        "node_pressure_io_waiting_seconds_total",
        "Total time in seconds that processes have waited due to IO congestion",
    ),
    (
        "io",
        "full",
        "node_pressure_io_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IO congestion",
    ),
    (
        "memory",
        "some",
        "node_pressure_memory_waiting_seconds_total",
        "Total time in seconds that processes have waited for memory",
    ),
    (
        "memory",
        "full",
        "node_pressure_memory_stalled_seconds_total",
        "Total time in seconds no process could make progress due to memory congestion",
    ),
];

/// The pressure collector.
#[derive(Debug, Default)]
pub(super) struct Pressure {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let mut loaded = "";
        for (resource, kind, family, help) in LINES {
            if loaded != resource {
                read_to(&paths.proc(&format!("pressure/{resource}")), &mut self.text)?;
                loaded = resource;
            }
            if let Some(micros) = total_micros(&self.text, kind) {
                out.counter(family, help, &[], micros / 1e6);
            }
        }
        Ok(())
    }
}

/// `total=` of the `some` or `full` line, in microseconds.
fn total_micros(text: &str, kind: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_ascii_whitespace().next() == Some(kind))?
        .split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn totals() {
        let text = "some avg10=60.56 avg60=26.53 avg300=16.03 total=99752952\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=12\n";
        assert_eq!(super::total_micros(text, "some"), Some(99752952.0));
        assert_eq!(super::total_micros(text, "full"), Some(12.0));
        assert_eq!(super::total_micros("", "full"), None);
    }
}
