//! `softnet`: per-CPU packet processing from /proc/net/softnet_stat (hexadecimal columns).

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The softnet collector.
#[derive(Debug, Default)]
pub(super) struct Softnet {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Softnet {
    fn name(&self) -> &'static str {
        "softnet"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("net/softnet_stat"), &mut self.text)?;
        for (cpu, line) in self.text.lines().enumerate() {
            let mut fields = line
                .split_ascii_whitespace()
                .map(|f| u64::from_str_radix(f, 16).map(|v| v as f64));
            let (Some(Ok(processed)), Some(Ok(dropped)), Some(Ok(squeezed))) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(SubError::Failed(format!(
                    "malformed softnet_stat line {line:?}"
                )));
            };
            let cpu = cpu.to_string();
            let labels = [("cpu", cpu.as_str())];
            out.counter(
                "node_softnet_processed_total",
                "Number of processed packets",
                &labels,
                processed,
            );
            out.counter(
                "node_softnet_dropped_total",
                "Number of dropped packets",
                &labels,
                dropped,
            );
            out.counter(
                "node_softnet_times_squeezed_total",
                "Number of times processing packets ran out of quota",
                &labels,
                squeezed,
            );
        }
        Ok(())
    }
}
