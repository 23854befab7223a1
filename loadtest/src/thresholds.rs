//! Pass/fail limits on a run's figures (`--max-failed`, `--max-p99`, `--min-ingest-ratio`), so a
//! run in CI fails when Fleetgate misses them instead of printing figures nobody reads.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::report::Comparison;

/// The limits given on the command line; `None` ones are not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Most failed Fleetgate pushes allowed in the steady phase.
    pub max_failed: Option<u64>,
    /// Highest Fleetgate push p99 allowed in the steady phase.
    pub max_p99: Option<Duration>,
    /// Lowest steady-state ingest of Fleetgate over Pushgateway's, both measured in the same run.
    pub min_ingest_ratio: Option<f64>,
}

impl Thresholds {
    /// Refuses limits the selected systems cannot be judged on, before anything runs.
    pub fn validate(&self, systems: &[String]) -> Result<()> {
        let has = |s: &str| systems.iter().any(|x| x == s);
        if (self.max_failed.is_some() || self.max_p99.is_some() || self.min_ingest_ratio.is_some())
            && !has("fleetgate")
        {
            bail!("--max-failed, --max-p99 and --min-ingest-ratio judge fleetgate: add it to --systems");
        }
        if let Some(r) = self.min_ingest_ratio {
            if !has("pushgateway") {
                bail!("--min-ingest-ratio compares with Pushgateway: add pushgateway to --systems");
            }
            if !(r.is_finite() && r > 0.0) {
                bail!("--min-ingest-ratio must be a positive number, got {r}");
            }
        }
        Ok(())
    }

    /// Every limit `c` misses, each naming the flag, the limit and the measured figure.
    pub fn missed(&self, c: &Comparison) -> Vec<String> {
        let mut out = Vec::new();
        let Some(f) = &c.fleetgate else {
            return out;
        };
        let at = format!("{} nodes", f.nodes);
        if let Some(max) = self.max_failed {
            if f.failed_pushes > max {
                out.push(format!(
                    "--max-failed {max}: fleetgate failed {} pushes at {at} ({:?})",
                    f.failed_pushes, f.failure_reasons
                ));
            }
        }
        if let Some(max) = self.max_p99 {
            let max_ms = max.as_secs_f64() * 1e3;
            if f.pushes == 0 {
                out.push(format!(
                    "--max-p99 {max:?}: fleetgate had no successful push at {at} to measure"
                ));
            } else if f.push_p99_ms > max_ms {
                out.push(format!(
                    "--max-p99 {max:?}: fleetgate push p99 was {:.1} ms at {at}",
                    f.push_p99_ms
                ));
            }
        }
        if let Some(min) = self.min_ingest_ratio {
            match &c.pushgateway {
                Some(p) if p.ingest_samples_per_sec > 0.0 => {
                    let ratio = f.ingest_samples_per_sec / p.ingest_samples_per_sec;
                    if ratio < min {
                        out.push(format!(
                            "--min-ingest-ratio {min}: fleetgate ingested {:.0} samples/s, \
                             pushgateway {:.0}, ratio {ratio:.2} at {at}",
                            f.ingest_samples_per_sec, p.ingest_samples_per_sec
                        ));
                    }
                }
                Some(_) => {
                    if f.ingest_samples_per_sec <= 0.0 {
                        out.push(format!(
                            "--min-ingest-ratio {min}: neither system ingested anything at {at}"
                        ));
                    }
                }
                None => out.push(format!(
                    "--min-ingest-ratio {min}: pushgateway was not measured at {at}"
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Figures;

    fn run(failed: u64, p99_ms: f64, fleetgate: f64, pushgateway: Option<f64>) -> Comparison {
        Comparison {
            fleetgate: Some(Figures {
                nodes: 20,
                pushes: 100,
                failed_pushes: failed,
                push_p99_ms: p99_ms,
                ingest_samples_per_sec: fleetgate,
                ..Figures::default()
            }),
            pushgateway: pushgateway.map(|ingest| Figures {
                ingest_samples_per_sec: ingest,
                ..Figures::default()
            }),
        }
    }

    #[test]
    fn each_missed_limit_is_named_with_its_figure() {
        let t = Thresholds {
            max_failed: Some(0),
            max_p99: Some(Duration::from_millis(50)),
            min_ingest_ratio: Some(5.0),
        };
        assert!(t.missed(&run(0, 49.0, 1000.0, Some(100.0))).is_empty());
        let missed = t.missed(&run(3, 51.5, 1000.0, Some(400.0)));
        assert_eq!(missed.len(), 3, "{missed:?}");
        assert!(missed[0].starts_with("--max-failed 0: fleetgate failed 3 pushes at 20 nodes"));
        assert!(missed[1].contains("--max-p99 50ms") && missed[1].contains("51.5 ms"));
        assert!(missed[2].contains("--min-ingest-ratio 5") && missed[2].contains("ratio 2.50"));
        // No limit given, nothing checked.
        assert!(Thresholds::default()
            .missed(&run(9, 1e6, 0.0, None))
            .is_empty());
    }

    #[test]
    fn a_ratio_needs_both_systems_and_a_p99_needs_a_push() {
        let ratio = Thresholds {
            min_ingest_ratio: Some(2.0),
            ..Thresholds::default()
        };
        assert_eq!(ratio.missed(&run(0, 1.0, 1000.0, None)).len(), 1);
        // Pushgateway ingested nothing: any Fleetgate ingest is an infinite ratio.
        assert!(ratio.missed(&run(0, 1.0, 1000.0, Some(0.0))).is_empty());
        let p99 = Thresholds {
            max_p99: Some(Duration::from_millis(10)),
            ..Thresholds::default()
        };
        let mut none = run(50, 0.0, 0.0, None);
        if let Some(f) = none.fleetgate.as_mut() {
            f.pushes = 0;
        }
        assert!(p99.missed(&none)[0].contains("no successful push"));
    }

    #[test]
    fn limits_the_systems_cannot_judge_are_refused_up_front() {
        let both = ["fleetgate".to_string(), "pushgateway".to_string()];
        let fleetgate = ["fleetgate".to_string()];
        let pushgateway = ["pushgateway".to_string()];
        let ratio = Thresholds {
            min_ingest_ratio: Some(2.0),
            ..Thresholds::default()
        };
        assert!(ratio.validate(&both).is_ok());
        let err = ratio.validate(&fleetgate).unwrap_err().to_string();
        assert!(err.contains("add pushgateway"), "{err}");
        let failed = Thresholds {
            max_failed: Some(0),
            ..Thresholds::default()
        };
        assert!(failed.validate(&pushgateway).is_err());
        let bad = Thresholds {
            min_ingest_ratio: Some(f64::NAN),
            ..Thresholds::default()
        };
        assert!(bad.validate(&both).is_err());
    }
}
