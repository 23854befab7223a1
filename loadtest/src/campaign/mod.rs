//! `fleetgate-campaign`: the reliability campaign against real hub and agent processes — a soak
//! with kills, stops and restarts ([`soak`]), network faults between agents and hub in network
//! namespaces ([`faults`]), abusive clients ([`abuse`]) and overload ([`overload`]). Each prints
//! its figures, writes them with `--json`, and exits non-zero when one of its checks fails.
//! `--quick` runs the short version the test command uses.

pub mod abuse;
pub mod faults;
pub mod fleet;
pub mod overload;
pub mod procs;
pub mod relay;
pub mod soak;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Command line of `fleetgate-campaign`.
#[derive(Debug, Parser)]
#[command(
    name = "fleetgate-campaign",
    version,
    about = "Reliability campaign against real hub and agent processes"
)]
pub struct Cli {
    /// Which part of the campaign.
    #[command(subcommand)]
    pub part: Part,
    /// The short version (the test command's), whatever the other options say.
    #[arg(long, global = true)]
    pub quick: bool,
    /// Write the figures and checks as JSON here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Hub binary.
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_CAMPAIGN_HUB_BIN",
        default_value = "target/release/fleetgate-hub"
    )]
    pub hub_bin: PathBuf,
    /// Agent binary.
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_CAMPAIGN_AGENT_BIN",
        default_value = "target/release/fleetgate-agent"
    )]
    pub agent_bin: PathBuf,
    /// Keep the scratch directory (data, logs) instead of removing it.
    #[arg(long, global = true)]
    pub keep: bool,
}

/// The parts of the campaign.
#[derive(Debug, Subcommand)]
pub enum Part {
    /// Simulated fleet plus a real agent while the hub is killed, stopped and restarted.
    Soak(soak::Args),
    /// Loss, delay, rate limit and a partition between real agents and the hub.
    Faults(faults::Args),
    /// Idle connections, slowloris, trickled bodies, bad tokens and oversized headers while
    /// real pushes go on.
    Abuse(abuse::Args),
    /// More pushes than the hub may queue: 429 with Retry-After, and every node recovers.
    Overload(overload::Args),
}

/// The binaries a part starts.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `fleetgate-hub`.
    pub hub: PathBuf,
    /// `fleetgate-agent`.
    pub agent: PathBuf,
}

/// What a part found: figures and pass/fail checks.
#[derive(Debug)]
pub struct Report {
    /// The part's name.
    pub part: &'static str,
    /// Figures, in the order taken.
    pub figures: serde_json::Map<String, serde_json::Value>,
    /// (what, passed, detail).
    pub checks: Vec<(String, bool, String)>,
    /// The hub's last log lines, printed when a check failed.
    pub log_tail: Option<String>,
}

impl Report {
    /// An empty report of `part`.
    pub fn new(part: &'static str) -> Self {
        Report {
            part,
            figures: serde_json::Map::new(),
            checks: Vec::new(),
            log_tail: None,
        }
    }

    /// Records a figure.
    pub fn figure(&mut self, name: &str, value: serde_json::Value) {
        self.figures.insert(name.to_string(), value);
    }

    /// Records a check.
    pub fn check(&mut self, what: &str, passed: bool, detail: String) {
        self.checks.push((what.to_string(), passed, detail));
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok, _)| *ok)
    }

    fn to_json(&self, command: &str) -> serde_json::Value {
        json!({
            "part": self.part,
            "command": command,
            "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "figures": self.figures,
            "checks": self.checks.iter().map(|(w, ok, d)| json!({"check": w, "passed": ok, "detail": d})).collect::<Vec<_>>(),
        })
    }
}

/// Runs the part the command line names.
pub async fn main(cli: Cli, command: String) -> Result<()> {
    let bins = Bins {
        hub: cli.hub_bin.clone(),
        agent: cli.agent_bin.clone(),
    };
    for (what, path) in [("hub", &bins.hub), ("agent", &bins.agent)] {
        if !path.is_file() {
            bail!(
                "{what} binary {} not found: build it with `cargo build --release -p fleetgate-{what}` or pass --{what}-bin",
                path.display()
            );
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("fleetgate-campaign-")
        .tempdir()?;
    let dir = scratch.path().to_path_buf();
    let report = match cli.part {
        Part::Soak(a) => {
            soak::run(if cli.quick { soak::Args::quick() } else { a }, &bins, &dir).await
        }
        Part::Faults(a) => {
            faults::run(
                if cli.quick { faults::Args::quick() } else { a },
                &bins,
                &dir,
            )
            .await
        }
        Part::Abuse(a) => {
            abuse::run(
                if cli.quick { abuse::Args::quick() } else { a },
                &bins,
                &dir,
            )
            .await
        }
        Part::Overload(a) => {
            overload::run(
                if cli.quick {
                    overload::Args::quick()
                } else {
                    a
                },
                &bins,
                &dir,
            )
            .await
        }
    };
    if cli.keep {
        let kept = scratch.keep();
        eprintln!("scratch directory kept: {}", kept.display());
    }
    let report = report?;
    print(&report);
    if let Some(path) = &cli.json {
        write_json(path, &report.to_json(&command))?;
    }
    if !report.passed() {
        if let Some(tail) = &report.log_tail {
            eprintln!("--- hub log (last lines) ---\n{tail}");
        }
        bail!(
            "{}: {} check(s) failed",
            report.part,
            report.checks.iter().filter(|c| !c.1).count()
        );
    }
    Ok(())
}

fn print(report: &Report) {
    println!("== {} ==", report.part);
    for (name, value) in &report.figures {
        println!("{name}: {value}");
    }
    for (what, ok, detail) in &report.checks {
        println!("[{}] {what} — {detail}", if *ok { "PASS" } else { "FAIL" });
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}
