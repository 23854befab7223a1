//! `filefd`: allocated and maximum file handles from /proc/sys/fs/file-nr.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The filefd collector.
#[derive(Debug, Default)]
pub(super) struct Filefd {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Filefd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("sys/fs/file-nr"), &mut self.text)?;
        let fields: Vec<f64> = self
            .text
            .split_ascii_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [allocated, _, maximum] = fields[..] else {
            return Err(SubError::Failed(format!(
                "malformed file-nr {:?}",
                self.text
            )));
        };
        out.gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            &[],
            allocated,
        );
        out.gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            &[],
            maximum,
        );
        Ok(())
    }
}
