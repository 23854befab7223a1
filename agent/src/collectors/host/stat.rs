//! `stat`: boot time, context switches, forks, interrupts and process states from /proc/stat.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The stat collector.
#[derive(Debug, Default)]
pub(super) struct Stat {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Stat {
    fn name(&self) -> &'static str {
        "stat"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("stat"), &mut self.text)?;
        for line in self.text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match key {
                "intr" => out.counter(
                    "node_intr_total",
                    "Total number of interrupts serviced.",
                    &[],
                    value,
                ),
                "ctxt" => out.counter(
                    "node_context_switches_total",
                    "Total number of context switches.",
                    &[],
                    value,
                ),
                "btime" => out.gauge(
                    "node_boot_time_seconds",
                    "Node boot time, in unixtime.",
                    &[],
                    value,
                ),
                "processes" => {
                    out.counter("node_forks_total", "Total number of forks.", &[], value)
                }
                "procs_running" => out.gauge(
                    "node_procs_running",
                    "Number of processes in runnable state.",
                    &[],
                    value,
                ),
                "procs_blocked" => out.gauge(
                    "node_procs_blocked",
                    "Number of processes blocked waiting for I/O to complete.",
                    &[],
                    value,
                ),
                _ => {}
            }
        }
        Ok(())
    }
}
