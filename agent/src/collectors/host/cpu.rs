//! `cpu`: seconds per CPU and mode from /proc/stat (USER_HZ ticks), with node_exporter's guard
//! that keeps these counters from going backwards (iowait can, on Linux).

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// Clock ticks per second of /proc/stat; fixed at 100 on every Linux architecture's ABI.
const USER_HZ: f64 = 100.0;
/// The modes of `node_cpu_seconds_total`, in /proc/stat's column order.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// An idle counter dropping by this much means the CPU was hot-plugged: start over, as
/// node_exporter does.
const JUMP_BACK_SECONDS: f64 = 3.0;

/// The cpu collector.
#[derive(Debug, Default)]
pub(super) struct Cpu {
    /// Reused read buffer.
    text: String,
    /// Last exported seconds per CPU: the eight modes, then guest and guest_nice.
    last: Vec<[f64; 10]>,
}

impl Subcollector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("stat"), &mut self.text)?;
        for line in self.text.lines() {
            let Some((cpu, now)) = parse_cpu_line(line) else {
                continue;
            };
            let Ok(index) = cpu.parse::<usize>() else {
                continue;
            };
            if self.last.len() <= index {
                self.last.resize(index + 1, [0.0; 10]);
            }
            let kept = &mut self.last[index];
            update_monotonic(kept, &now);
            for (mode, seconds) in MODES.iter().zip(kept.iter()) {
                out.counter(
                    "node_cpu_seconds_total",
                    "Seconds the CPUs spent in each mode.",
                    &[("cpu", cpu), ("mode", mode)],
                    *seconds,
                );
            }
            // Guest time is also counted in user and nice; node_exporter exposes it apart.
            for (mode, seconds) in [("user", kept[8]), ("nice", kept[9])] {
                out.counter(
                    "node_cpu_guest_seconds_total",
                    "Seconds the CPUs spent in guests (VMs) for each mode.",
                    &[("cpu", cpu), ("mode", mode)],
                    seconds,
                );
            }
        }
        Ok(())
    }
}

/// Splits a `cpuN ...` line of /proc/stat into `N` and its ten columns in seconds; `None` for
/// the aggregate `cpu` line and every other line.
fn parse_cpu_line(line: &str) -> Option<(&str, [f64; 10])> {
    let rest = line.strip_prefix("cpu")?;
    let (cpu, columns) = rest.split_once(' ')?;
    if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut seconds = [0.0; 10];
    for (slot, field) in seconds.iter_mut().zip(columns.split_ascii_whitespace()) {
        *slot = field.parse::<f64>().ok()? / USER_HZ;
    }
    Some((cpu, seconds))
}

/// Keeps every column from decreasing, unless idle fell so far that the CPU must have been
/// re-plugged, in which case the new values replace the old ones.
fn update_monotonic(kept: &mut [f64; 10], now: &[f64; 10]) {
    if kept[3] - now[3] >= JUMP_BACK_SECONDS {
        *kept = *now;
        return;
    }
    for (k, n) in kept.iter_mut().zip(now) {
        if *n > *k {
            *k = *n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_per_cpu_lines_only() {
        assert!(parse_cpu_line("cpu  1 2 3 4 5 6 7 8 9 10").is_none());
        assert!(parse_cpu_line("ctxt 519704").is_none());
        let (cpu, s) = parse_cpu_line("cpu1 17976 0 6673 28897 546 0 92 25 0 0").unwrap();
        assert_eq!(cpu, "1");
        assert_eq!(s[0], 179.76);
        assert_eq!(s[3], 288.97);
        assert_eq!(s[7], 0.25);
    }

    #[test]
    fn counters_never_go_backwards_unless_replugged() {
        let mut kept = [0.0; 10];
        update_monotonic(
            &mut kept,
            &[1.0, 0.0, 0.0, 100.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        update_monotonic(
            &mut kept,
            &[2.0, 0.0, 0.0, 101.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(kept[4], 5.0, "iowait dip is hidden");
        assert_eq!(kept[0], 2.0);
        update_monotonic(
            &mut kept,
            &[0.5, 0.0, 0.0, 1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(kept[3], 1.0, "hot-plug resets");
    }
}
