//! The one test harness for Fleetgate's whole-binary tests: real `fleetgate-hub` and
//! `fleetgate-agent` processes on loopback, each with its own temporary directory and log file,
//! killed when dropped, with their logs printed when the test fails.
//!
//! ```no_run
//! # async fn example() {
//! use fleetgate_testkit::{eventually, snapshot, Agent, AgentArgs, Hub};
//! use fleetgate_shared::MetricType;
//! use std::time::Duration;
//!
//! // A hub process with a temporary data dir; its generated tokens are read from there.
//! let hub = Hub::start(&[]);
//! let token = hub.enroll("node-1", &[("rack", "r1")]).await;
//! let snap = snapshot::snapshot(1, 60_000, vec![snapshot::family(
//!     "temperature", MetricType::Gauge, vec![snapshot::scalar(&[("room", "a")], 21.5)])]);
//! assert_eq!(hub.push(&token, &snap).await.status(), 200);
//!
//! // An agent process enrolling with that hub; its log is kept and printed if the test fails.
//! let state = tempfile::tempdir().unwrap();
//! let agent = Agent::start(AgentArgs::new(&hub, "node-2", state.path()).args());
//! eventually(Duration::from_secs(30), "node-2 on /metrics", || async {
//!     let families = hub.metrics().await;
//!     fleetgate_testkit::exposition::value(
//!         &families, "fleetgate_agent_snapshot_series", &[("node", "node-2")])
//! }).await;
//! # drop(agent);
//! # }
//! ```
//!
//! What is here:
//! - [`Hub`]: start (with extra flags, in a given data dir), `kill -9`, SIGTERM, restart on the
//!   same data dir and address, the tokens it generated, and its HTTP API (enroll, add/remove
//!   node, push snapshot/text/raw bodies, `/metrics` parsed, `/nodes`).
//! - [`Agent`] and [`AgentArgs`]: agent processes, their logs, memory and CPU, SIGTERM.
//! - [`binary`]: where the binaries under test are (`FLEETGATE_HUB_BIN`, `FLEETGATE_AGENT_BIN`,
//!   `FLEETGATE_LOADTEST_BIN`, `CARGO_BIN_EXE_*`, or the build's target directory), refusing
//!   stale ones; [`command`]: one of them with a clean environment, for runs to completion.
//! - [`eventually`]: bounded polling.
//! - [`require_tool`] / [`require`]: real components a test needs. Missing ones fail the test
//!   unless `FLEETGATE_ALLOW_SKIP=1`, when the test says it skipped and returns early.
//! - [`snapshot`]: snapshot builders; [`exposition`]: lookups in parsed `/metrics` and
//!   `promtool check metrics`; [`docker`]: busybox containers on the real engine; [`process`]:
//!   memory and CPU of any process from `/proc`.
//!
//! Process waits are async (tokio) where a test may have its own tasks running beside them
//! (proxies, fake servers); starting a process and reading files are plain blocking calls.

pub mod docker;
pub mod exposition;
pub mod process;
pub mod snapshot;

mod agent;
mod bins;
mod hub;
mod require;
mod wait;

pub use agent::{assert_stopped_once, Agent, AgentArgs};
pub use bins::{binary, command, Binary};
pub use hub::Hub;
pub use require::{require, require_tool, skipping_allowed};
pub use wait::eventually;
