//! `edac`: memory errors counted by the kernel's EDAC memory controllers, per controller and per
//! chip-select row, from /sys/devices/system/edac/mc.

use std::path::{Path, PathBuf};

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The edac collector.
#[derive(Debug, Default)]
pub(super) struct Edac {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Edac {
    fn name(&self) -> &'static str {
        "edac"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        // A machine without EDAC (most VMs) has no controllers: nothing to report, as in
        // node_exporter, whose glob over the directory simply matches nothing.
        let controllers = match numbered(&paths.sys("devices/system/edac/mc"), "mc") {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for (controller, dir) in &controllers {
            let mc = [("controller", controller.as_str())];
            let unknown = [("controller", controller.as_str()), ("csrow", "unknown")];
            // Errors the driver could not attribute to a row go to the row "unknown".
            let ce = self.count(dir, "ce_count", controller)?;
            out.counter(CE, CE_HELP, &mc, ce);
            let ce_noinfo = self.count(dir, "ce_noinfo_count", controller)?;
            out.counter(CSROW_CE, CSROW_CE_HELP, &unknown, ce_noinfo);
            let ue = self.count(dir, "ue_count", controller)?;
            out.counter(UE, UE_HELP, &mc, ue);
            let ue_noinfo = self.count(dir, "ue_noinfo_count", controller)?;
            out.counter(CSROW_UE, CSROW_UE_HELP, &unknown, ue_noinfo);

            for (csrow, row_dir) in numbered(dir, "csrow")? {
                let labels = [
                    ("controller", controller.as_str()),
                    ("csrow", csrow.as_str()),
                ];
                let ce = self.count(&row_dir, "ce_count", controller)?;
                out.counter(CSROW_CE, CSROW_CE_HELP, &labels, ce);
                let ue = self.count(&row_dir, "ue_count", controller)?;
                out.counter(CSROW_UE, CSROW_UE_HELP, &labels, ue);
            }
        }
        Ok(())
    }
}

const CE: &str = "node_edac_correctable_errors_total";
const CE_HELP: &str = "Total correctable memory errors.";
const UE: &str = "node_edac_uncorrectable_errors_total";
const UE_HELP: &str = "Total uncorrectable memory errors.";
const CSROW_CE: &str = "node_edac_csrow_correctable_errors_total";
const CSROW_CE_HELP: &str = "Total correctable memory errors for this csrow.";
const CSROW_UE: &str = "node_edac_csrow_uncorrectable_errors_total";
const CSROW_UE_HELP: &str = "Total uncorrectable memory errors for this csrow.";

impl Edac {
    /// An unsigned decimal count file of a controller or row. A missing or unreadable count
    /// inside a controller that exists is a failure of the collector, as in node_exporter.
    fn count(&mut self, dir: &Path, file: &str, controller: &str) -> Result<f64, SubError> {
        let path = dir.join(file);
        let text = read_value(&path, &mut self.text).map_err(|e| {
            SubError::Failed(format!("controller {controller}: {}: {e}", path.display()))
        })?;
        text.parse::<u64>().map(|n| n as f64).map_err(|_| {
            SubError::Failed(format!(
                "controller {controller}: {} holds {text:?}, not a count",
                path.display()
            ))
        })
    }
}

/// Entries of `dir` named `prefix` followed by digits, with those digits as written (the label
/// value), in numeric order (`mc0`, `mc1`, ..., `mc10`).
fn numbered(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        found.push((digits.to_string(), entry.path()));
    }
    found.sort_by_key(|(digits, _)| (digits.len(), digits.clone()));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (file, value) in files {
            std::fs::write(dir.join(file), format!("{value}\n")).unwrap();
        }
    }

    fn collect(sys: &Path) -> (Result<(), SubError>, String) {
        let paths = HostPaths {
            sys: sys.to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        let result = Edac::default().collect(&paths, &mut out);
        (result, fleetgate_shared::text::render(out.families()))
    }

    const COUNTS: [(&str, &str); 4] = [
        ("ce_count", "3"),
        ("ce_noinfo_count", "1"),
        ("ue_count", "2"),
        ("ue_noinfo_count", "0"),
    ];

    #[test]
    fn controllers_and_rows_with_unattributed_errors_as_row_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let mc = dir.path().join("devices/system/edac/mc");
        write(&mc.join("mc0"), &COUNTS);
        write(
            &mc.join("mc0/csrow10"),
            &[("ce_count", "7"), ("ue_count", "2")],
        );
        write(
            &mc.join("mc0/csrow2"),
            &[("ce_count", "0"), ("ue_count", "0")],
        );
        write(&mc.join("power"), &[("control", "auto")]);
        let (result, text) = collect(dir.path());
        result.unwrap();
        for line in [
            "# TYPE node_edac_correctable_errors_total counter\n",
            "node_edac_correctable_errors_total{controller=\"0\"} 3\n",
            "node_edac_uncorrectable_errors_total{controller=\"0\"} 2\n",
            "node_edac_csrow_correctable_errors_total{controller=\"0\",csrow=\"unknown\"} 1\n",
            "node_edac_csrow_uncorrectable_errors_total{controller=\"0\",csrow=\"unknown\"} 0\n",
            "node_edac_csrow_correctable_errors_total{controller=\"0\",csrow=\"10\"} 7\n",
            "node_edac_csrow_uncorrectable_errors_total{controller=\"0\",csrow=\"2\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("node_edac_csrow_correctable"))
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows[1].contains("csrow=\"2\"") && rows[2].contains("csrow=\"10\""));
    }

    #[test]
    fn no_edac_directory_is_success_with_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (result, text) = collect(dir.path());
        result.unwrap();
        assert_eq!(text, "");
    }

    #[test]
    fn a_missing_or_garbled_count_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mc0 = dir.path().join("devices/system/edac/mc/mc0");
        write(&mc0, &COUNTS[..3]);
        let (result, _) = collect(dir.path());
        let Err(SubError::Failed(message)) = result else {
            panic!("expected a failure, got {result:?}");
        };
        assert!(message.contains("ue_noinfo_count"), "{message}");

        write(&mc0, &[("ue_noinfo_count", "many")]);
        let (result, _) = collect(dir.path());
        let Err(SubError::Failed(message)) = result else {
            panic!("expected a failure, got {result:?}");
        };
        assert!(message.contains("\"many\""), "{message}");
    }
}
