//! `vmstat`: the /proc/vmstat fields node_exporter exports by default
//! (`^(oom_kill|pgpg|pswp|pg.*fault).*`), untyped like node_exporter.

use fleetgate_shared::MetricType;

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The vmstat collector.
#[derive(Debug, Default)]
pub(super) struct Vmstat {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("vmstat"), &mut self.text)?;
        for line in self.text.lines() {
            let Some((field, value)) = line.split_once(' ') else {
                continue;
            };
            if !is_default_field(field) {
                continue;
            }
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            out.sample(
                &format!("node_vmstat_{field}"),
                &format!("/proc/vmstat information field {field}."),
                MetricType::Untyped,
                &[],
                value,
            );
        }
        Ok(())
    }
}

/// node_exporter's default `--collector.vmstat.fields`: `^(oom_kill|pgpg|pswp|pg.*fault).*`.
fn is_default_field(field: &str) -> bool {
    field.starts_with("oom_kill")
        || field.starts_with("pgpg")
        || field.starts_with("pswp")
        || field
            .strip_prefix("pg")
            .is_some_and(|r| r.contains("fault"))
}

#[cfg(test)]
mod tests {
    use super::is_default_field;

    #[test]
    fn default_fields() {
        for f in [
            "oom_kill",
            "pgfault",
            "pgmajfault",
            "pgpgin",
            "pgpgout",
            "pswpin",
        ] {
            assert!(is_default_field(f), "{f}");
        }
        for f in [
            "nr_free_pages",
            "pgalloc_normal",
            "workingset_refault_anon",
            "thp_fault_alloc",
        ] {
            assert!(!is_default_field(f), "{f}");
        }
    }
}
