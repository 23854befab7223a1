//! `schedstat`: per-CPU scheduler time from /proc/schedstat (absent on kernels built without
//! CONFIG_SCHEDSTATS, then skipped).

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The schedstat collector.
#[derive(Debug, Default)]
pub(super) struct Schedstat {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Schedstat {
    fn name(&self) -> &'static str {
        "schedstat"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("schedstat"), &mut self.text)?;
        for (cpu, [running, waiting, slices]) in self.text.lines().filter_map(parse_line) {
            let labels = [("cpu", cpu)];
            out.counter(
                "node_schedstat_running_seconds_total",
                "Number of seconds CPU spent running a process.",
                &labels,
                running / 1e9,
            );
            out.counter(
                "node_schedstat_waiting_seconds_total",
                "Number of seconds spent by processing waiting for this CPU.",
                &labels,
                waiting / 1e9,
            );
            out.counter(
                "node_schedstat_timeslices_total",
                "Number of timeslices executed by CPU.",
                &labels,
                slices,
            );
        }
        Ok(())
    }
}

/// `cpuN` and its running nanoseconds, waiting nanoseconds and timeslices (the 7th to 9th
/// numbers of the line).
fn parse_line(line: &str) -> Option<(&str, [f64; 3])> {
    let mut fields = line.split_ascii_whitespace();
    let cpu = fields.next()?.strip_prefix("cpu")?;
    if cpu.is_empty() {
        return None;
    }
    let numbers: Vec<f64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if numbers.len() != 9 {
        return None;
    }
    Some((cpu, [numbers[6], numbers[7], numbers[8]]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_line() {
        assert_eq!(
            super::parse_line("cpu0 0 0 0 0 0 0 2045936778163039 343796328169361 4767485306"),
            Some(("0", [2045936778163039.0, 343796328169361.0, 4767485306.0]))
        );
        assert_eq!(super::parse_line("domain0 3 1 2 3 4 5 6 7 8 9"), None);
        assert_eq!(super::parse_line("version 15"), None);
    }
}
