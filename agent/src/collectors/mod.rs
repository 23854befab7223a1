//! The collectors: one module each, every one a type that owns its long-lived handle and
//! implements [`Collector`]. They write into a shared [`MetricBuffer`]; a failing collector never
//! fails the others.

pub mod agent_self;
pub mod containers;
pub mod gpu;
pub mod host;
pub mod scrape;
pub mod textfile;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use fleetgate_shared::{Family, Label, MetricType, Series, Value};

/// Why a collector produced nothing this cycle.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The source is absent on this machine (no GPU driver, no Docker socket, no Triton):
    /// the collector is disabled, logged once, and reported as down.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The source exists but this collection failed; retried next cycle.
    #[error("collection failed: {0}")]
    Failed(String),
}

/// Boxed future returned by [`Collector::collect`], so collectors can live in one `Vec<Box<dyn>>`.
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CollectError>> + Send + 'a>>;

/// One source of metrics.
pub trait Collector: Send {
    /// Stable short name, used as the `collector` label (`host`, `gpu`, `containers`, ...).
    fn name(&self) -> &'static str;
    /// Appends this cycle's families to `out`.
    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a>;
    /// Whether this collector's families must stay apart from everything else collected: they
    /// are merged after every other collector and the agent's own metrics, and a family whose
    /// name is taken already is dropped instead of joined. For data other programs write
    /// (textfiles), which may not add series to what the agent measures itself.
    fn exclusive(&self) -> bool {
        false
    }
}

/// The families of one collection cycle, appended to by every collector.
#[derive(Debug, Default)]
pub struct MetricBuffer {
    /// Families in order of first appearance.
    families: Vec<Family>,
    /// Family name to its position in `families`, so samples of one family stay together.
    index: HashMap<String, usize>,
}

impl MetricBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family `name`, created with `help` and `kind` if it does not exist yet.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Family {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    series: Vec::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    /// Appends one scalar sample.
    pub fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        self.family(name, help, kind).series.push(Series {
            labels,
            value: Value::Scalar(value),
        });
    }

    /// Shorthand for a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, MetricType::Gauge, labels, value);
    }

    /// Shorthand for a counter sample.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, MetricType::Counter, labels, value);
    }

    /// Appends a whole family (forwarded from a scraped endpoint); merges series into an
    /// existing family of the same name and type, drops it if the type conflicts.
    pub fn push_family(&mut self, family: Family) -> bool {
        match self.index.get(&family.name) {
            Some(&i) if self.families[i].kind != family.kind => false,
            Some(&i) => {
                self.families[i].series.extend(family.series);
                true
            }
            None => {
                self.index.insert(family.name.clone(), self.families.len());
                self.families.push(family);
                true
            }
        }
    }

    /// Appends a whole family unless one of that name exists already; returns whether it was
    /// added.
    pub fn push_new_family(&mut self, family: Family) -> bool {
        if self.index.contains_key(&family.name) {
            return false;
        }
        self.index.insert(family.name.clone(), self.families.len());
        self.families.push(family);
        true
    }

    /// Number of series collected so far.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// The collected families.
    pub fn into_families(self) -> Vec<Family> {
        self.families
    }

    /// The collected families, borrowed.
    pub fn families(&self) -> &[Family] {
        &self.families
    }
}
