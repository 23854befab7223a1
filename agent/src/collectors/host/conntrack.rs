//! `conntrack`: netfilter connection tracking table use and limit, plus the per-CPU statistics
//! of /proc/net/stat/nf_conntrack summed over CPUs; absent when the module is not loaded.

use super::{read_to, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Statistics columns node_exporter exports, with their HELP texts.
const STATS: [(&str, &str); 8] = [
    ("found", "Number of searched entries which were successful."),
    ("invalid", "Number of packets seen which can not be tracked."),
    ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
    ("insert", "Number of entries inserted into the list."),
    ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
    ("drop", "Number of packets dropped due to conntrack failure."),
    ("early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
    ("search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
];

/// The conntrack collector.
#[derive(Debug, Default)]
pub(super) struct Conntrack {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Conntrack {
    fn name(&self) -> &'static str {
        "conntrack"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let parse = |v: &str| {
            v.parse::<f64>()
                .map_err(|e| SubError::Failed(format!("conntrack value {v:?}: {e}")))
        };
        let entries = parse(read_value(
            &paths.proc("sys/net/netfilter/nf_conntrack_count"),
            &mut self.text,
        )?)?;
        out.gauge(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            &[],
            entries,
        );
        let limit = parse(read_value(
            &paths.proc("sys/net/netfilter/nf_conntrack_max"),
            &mut self.text,
        )?)?;
        out.gauge(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            &[],
            limit,
        );
        if read_to(&paths.proc("net/stat/nf_conntrack"), &mut self.text).is_ok() {
            for (column, help) in STATS {
                if let Some(sum) = column_sum(&self.text, column) {
                    out.gauge(&format!("node_nf_conntrack_stat_{column}"), help, &[], sum);
                }
            }
        }
        Ok(())
    }
}

/// The sum over all CPU lines of the hexadecimal column named `column` in the header.
fn column_sum(text: &str, column: &str) -> Option<f64> {
    let mut lines = text.lines();
    let index = lines
        .next()?
        .split_ascii_whitespace()
        .position(|c| c == column)?;
    let mut sum = 0.0;
    for line in lines {
        let field = line.split_ascii_whitespace().nth(index)?;
        sum += u64::from_str_radix(field, 16).ok()? as f64;
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_hex_columns_over_cpus() {
        let text = "entries  clashres found new invalid\n00000005  00000000 0000000a 00000000 00000001\n00000005  00000000 00000010 00000000 00000000\n";
        assert_eq!(super::column_sum(text, "found"), Some(26.0));
        assert_eq!(super::column_sum(text, "invalid"), Some(1.0));
        assert_eq!(super::column_sum(text, "search_restart"), None);
    }
}
