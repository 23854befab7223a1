//! Real `fleetgate-agent` processes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::bins::{command, Binary};
use crate::hub::Hub;
use crate::process::{self, Memory, Process};

/// How long an agent may take to exit after SIGTERM (it finishes the push in flight).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The command line of an agent enrolled with a test's hub; fields are public so a test
/// changes what it needs before [`AgentArgs::args`].
#[derive(Debug, Clone)]
pub struct AgentArgs {
    /// `--hub`: the hub's base URL (a proxy's, to put something in between).
    pub hub_url: String,
    /// `--node`.
    pub node: String,
    /// `--enroll-token-file`: the hub's generated enrollment token.
    pub enroll_token_file: PathBuf,
    /// `--state-dir`, where the agent keeps its push token.
    pub state_dir: PathBuf,
    /// `--interval`: `200ms` unless changed, so tests see pushes quickly.
    pub interval: String,
    /// `--collectors`: empty unless changed (only the agent's own metrics), so tests do not
    /// depend on the host.
    pub collectors: String,
    /// Any further flags, appended as they are.
    pub extra: Vec<String>,
}

impl AgentArgs {
    /// An agent for `hub`, named `node`, keeping its state in `state_dir`.
    pub fn new(hub: &Hub, node: &str, state_dir: &Path) -> AgentArgs {
        AgentArgs {
            hub_url: hub.base_url(),
            node: node.to_string(),
            enroll_token_file: hub.enroll_token_file(),
            state_dir: state_dir.to_path_buf(),
            interval: "200ms".to_string(),
            collectors: String::new(),
            extra: Vec::new(),
        }
    }

    /// Appends flags to [`AgentArgs::extra`].
    pub fn with<I, S>(mut self, flags: I) -> AgentArgs
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra.extend(flags.into_iter().map(Into::into));
        self
    }

    /// The command line.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--hub".to_string(),
            self.hub_url.clone(),
            "--node".to_string(),
            self.node.clone(),
            "--enroll-token-file".to_string(),
            self.enroll_token_file.display().to_string(),
            "--state-dir".to_string(),
            self.state_dir.display().to_string(),
            "--interval".to_string(),
            self.interval.clone(),
            "--collectors".to_string(),
            self.collectors.clone(),
        ];
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A running `fleetgate-agent`, killed on drop. Its log (`RUST_LOG=info`, or
/// `FLEETGATE_TEST_LOG`; stdout and stderr) goes to a file of its own, printed when a test fails.
#[derive(Debug)]
pub struct Agent {
    /// The process.
    process: Process,
    /// Owns the log file.
    _scratch: tempfile::TempDir,
}

impl Agent {
    /// Starts `fleetgate-agent ARGS` (every `FLEETGATE_*` variable of the test's environment
    /// removed, so only `args` configure it).
    pub fn start<I, S>(args: I) -> Agent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = command(Binary::Agent);
        cmd.args(args);
        Agent::spawn(cmd)
    }

    /// Starts `cmd`: a [`command`]`(Binary::Agent)` to which the test gave its arguments and an
    /// environment of its own (proxy variables, say).
    pub fn spawn(cmd: Command) -> Agent {
        let scratch = tempfile::Builder::new()
            .prefix("fleetgate-testkit-agent")
            .tempdir()
            .expect("temporary directory for the agent's log");
        let process = Process::spawn(cmd, "fleetgate-agent", &scratch.path().join("agent.log"));
        Agent {
            process,
            _scratch: scratch,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Where its log is.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.exited().is_none()
    }

    /// Its memory now, from `/proc/<pid>/status`; panics when it has exited.
    pub fn memory(&self) -> Memory {
        process::memory(self.pid()).expect("the agent is not running")
    }

    /// Its CPU time so far (user + system), from `/proc/<pid>/stat`; panics when it has exited.
    pub fn cpu_time(&self) -> Duration {
        process::cpu_time(self.pid()).expect("the agent is not running")
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process.signal("TERM");
        self.process.wait_exit(STOP_TIMEOUT).await
    }

    /// Waits (at most `within`) for it to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.process.wait_exit(within).await
    }
}

/// Asserts that an agent's `log` says once that its pushing to a hub stopped (its node was
/// removed there) and holds `enrollments` enrollments in all: a removed node is not enrolled
/// again, at that hub or any other.
pub fn assert_stopped_once(log: &str, enrollments: usize) {
    assert_eq!(log.matches("pushing stopped").count(), 1, "{log}");
    assert_eq!(
        log.matches("enrolled; push token stored").count(),
        enrollments,
        "{log}"
    );
}
