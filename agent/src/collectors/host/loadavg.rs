//! `loadavg`: node_load1, node_load5 and node_load15 from /proc/loadavg.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The loadavg collector.
#[derive(Debug, Default)]
pub(super) struct Loadavg {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Loadavg {
    fn name(&self) -> &'static str {
        "loadavg"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("loadavg"), &mut self.text)?;
        let loads = parse(&self.text)
            .ok_or_else(|| SubError::Failed(format!("malformed loadavg {:?}", self.text)))?;
        out.gauge("node_load1", "1m load average.", &[], loads[0]);
        out.gauge("node_load5", "5m load average.", &[], loads[1]);
        out.gauge("node_load15", "15m load average.", &[], loads[2]);
        Ok(())
    }
}

/// The three load averages of /proc/loadavg.
fn parse(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_three_averages() {
        assert_eq!(
            super::parse("0.70 1.15 0.61 2/345 1234\n"),
            Some([0.70, 1.15, 0.61])
        );
        assert_eq!(super::parse("0.70\n"), None);
    }
}
