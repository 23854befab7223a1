//! Resident memory and CPU time of a process, read from `/proc/<pid>/status` and
//! `/proc/<pid>/stat` — the same numbers `top` shows, for the hub, Pushgateway and the rig itself.

use std::time::Instant;

/// Linux reports `utime`/`stime` in USER_HZ ticks, fixed at 100 on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process's memory and CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// `VmRSS` in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// When the reading was taken, to turn CPU seconds into a utilisation.
    pub at: Instant,
}

/// Reads `/proc/<pid>` (`"self"` for this process); `None` once the process is gone.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample {
        rss_bytes: parse_rss(&status)?,
        cpu_seconds: parse_cpu(&stat)?,
        at: Instant::now(),
    })
}

/// `VmRSS:   123456 kB` → bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime (fields 14 and 15) in seconds; the command name in parentheses may contain
/// spaces, so fields are counted after the last `)`.
fn parse_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th item and stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_proc_files_of_this_process() {
        let s = sample("self").unwrap();
        assert!(s.rss_bytes > 1 << 20, "rss {}", s.rss_bytes);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn command_names_with_spaces_and_parens_do_not_shift_fields() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_cpu(stat), Some(3.0));
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2 << 20));
    }
}
