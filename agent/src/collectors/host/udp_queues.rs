//! `udp_queues`: memory queued in UDP sockets, summed from /proc/net/udp and /proc/net/udp6.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The udp_queues collector.
#[derive(Debug, Default)]
pub(super) struct UdpQueues {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for UdpQueues {
    fn name(&self) -> &'static str {
        "udp_queues"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            if let Err(e) = read_to(&paths.proc(file), &mut self.text) {
                // No IPv6 on this kernel: report IPv4 only.
                if ip == "v6" {
                    continue;
                }
                return Err(e.into());
            }
            let (tx, rx) = queue_sums(&self.text)
                .ok_or_else(|| SubError::Failed(format!("malformed /proc/{file}")))?;
            for (queue, value) in [("tx", tx), ("rx", rx)] {
                out.gauge(
                    "node_udp_queues",
                    "Number of allocated memory in the kernel for UDP datagrams in bytes.",
                    &[("ip", ip), ("queue", queue)],
                    value,
                );
            }
        }
        Ok(())
    }
}

/// Sums of the hexadecimal `tx_queue:rx_queue` column over all sockets.
fn queue_sums(text: &str) -> Option<(f64, f64)> {
    let (mut tx, mut rx) = (0.0, 0.0);
    for line in text.lines().skip(1) {
        let queues = line.split_ascii_whitespace().nth(4)?;
        let (t, r) = queues.split_once(':')?;
        tx += u64::from_str_radix(t, 16).ok()? as f64;
        rx += u64::from_str_radix(r, 16).ok()? as f64;
    }
    Some((tx, rx))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_queues() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 00000000:0044 00000000:0000 07 00000010:00000200 00:00000000 00000000     0        0 1 2 0000000000000000 0\n\
  124: 00000000:0045 00000000:0000 07 00000001:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n";
        assert_eq!(super::queue_sums(text), Some((17.0, 512.0)));
    }
}
