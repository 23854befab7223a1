//! Child processes of a test: their log file, `kill -9`, signals, bounded waits; and memory and
//! CPU of any process from `/proc`, as a user would measure them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of a process's log printed when a test fails while it runs.
const LOG_LINES_ON_FAILURE: usize = 200;

/// A child process whose stdout and stderr go to a log file; killed and reaped on drop, and its
/// log's tail printed when that happens during a panic (a failing test).
#[derive(Debug)]
pub(crate) struct Process {
    /// The running child.
    child: Child,
    /// What it is, for messages (`fleetgate-hub`).
    name: String,
    /// Its log file (appended to by every process started with the same path).
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` (from [`crate::bins::command`]), its output appended to `log`.
    pub(crate) fn spawn(mut cmd: Command, name: &str, log: &Path) -> Process {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Process {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on a child")
    }

    /// SIGKILL and reap.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`TERM`, `INT`, ...) with `kill(1)`.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit on its own, at most `within`.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}; log:\n{}",
                self.name,
                tail(&self.log(), LOG_LINES_ON_FAILURE)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}), last {LOG_LINES_ON_FAILURE} lines ---\n{}\n--- end of {} log ---",
                self.name,
                self.log.display(),
                tail(&self.log(), LOG_LINES_ON_FAILURE),
                self.name
            );
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Memory of a process from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, what `ps` and `top` show.
    pub rss: u64,
    /// `VmHWM`: the peak of `VmRSS` so far.
    pub hwm: u64,
    /// `RssAnon`: heap and stacks.
    pub anon: u64,
    /// `RssFile`: mapped files (the binary and libraries) resident.
    pub file: u64,
    /// `Threads`: a count, not bytes.
    pub threads: u64,
}

/// Reads [`Memory`] of `pid`; `None` when the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let value: u64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => m.rss = value * 1024,
            "VmHWM" => m.hwm = value * 1024,
            "RssAnon" => m.anon = value * 1024,
            "RssFile" => m.file = value * 1024,
            "Threads" => m.threads = value,
            _ => {}
        }
    }
    Some(m)
}

/// CPU time (user + system, every thread, live and exited) of `pid` from `/proc/<pid>/stat`;
/// `None` when the process is gone. Resolution is the kernel's clock tick (10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = text.rsplit_once(')')?.1;
    let ticks: u64 = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let m = memory(std::process::id()).expect("own /proc status");
        assert!(m.rss > 0 && m.hwm >= m.rss && m.threads >= 1, "{m:?}");
        // Burn a little CPU so at least one tick is counted.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(cpu_time(std::process::id()).expect("own /proc stat") > Duration::ZERO);
        assert_eq!(memory(u32::MAX), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
