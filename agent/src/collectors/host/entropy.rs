//! `entropy`: the kernel's available entropy and pool size.

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The entropy collector.
#[derive(Debug, Default)]
pub(super) struct Entropy {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let available = read_value(
            &paths.proc("sys/kernel/random/entropy_avail"),
            &mut self.text,
        )?
        .parse::<f64>()
        .map_err(|e| SubError::Failed(format!("entropy_avail: {e}")))?;
        out.gauge(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            &[],
            available,
        );
        let pool = read_value(&paths.proc("sys/kernel/random/poolsize"), &mut self.text)?
            .parse::<f64>()
            .map_err(|e| SubError::Failed(format!("poolsize: {e}")))?;
        out.gauge(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            &[],
            pool,
        );
        Ok(())
    }
}
