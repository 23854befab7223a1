//! `arp`: ARP table entries per device from /proc/net/arp.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The arp collector.
#[derive(Debug, Default)]
pub(super) struct Arp {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Arp {
    fn name(&self) -> &'static str {
        "arp"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("net/arp"), &mut self.text)?;
        for (device, count) in count_by_device(&self.text) {
            out.gauge(
                "node_arp_entries",
                "ARP entries by device",
                &[("device", device)],
                count as f64,
            );
        }
        Ok(())
    }
}

/// Entries per device (the last column), sorted by device; the header line is skipped.
fn count_by_device(text: &str) -> Vec<(&str, usize)> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for line in text.lines().skip(1) {
        let Some(device) = line.split_ascii_whitespace().nth(5) else {
            continue;
        };
        match counts.iter_mut().find(|(d, _)| *d == device) {
            Some((_, n)) => *n += 1,
            None => counts.push((device, 1)),
        }
    }
    counts.sort_unstable();
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_per_device() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
10.0.0.1         0x1         0x2         02:fc:00:00:00:02     *        eth0\n\
10.0.0.2         0x1         0x2         02:fc:00:00:00:03     *        eth0\n\
172.17.0.2       0x1         0x2         02:42:ac:11:00:02     *        docker0\n";
        assert_eq!(super::count_by_device(text), [("docker0", 1), ("eth0", 2)]);
    }
}
