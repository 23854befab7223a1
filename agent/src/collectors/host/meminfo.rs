//! `meminfo`: every /proc/meminfo field as `node_memory_<Field>[_bytes]`, named the way
//! node_exporter names them (`Active(anon)` becomes `Active_anon`; fields with a `kB` unit are
//! multiplied by 1024 and get `_bytes`, unitless counts such as `HugePages_Total` do not).

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The meminfo collector.
#[derive(Debug, Default)]
pub(super) struct Meminfo {
    /// Reused read buffer.
    text: String,
    /// Reused metric-name buffer.
    name: String,
}

impl Subcollector for Meminfo {
    fn name(&self) -> &'static str {
        "meminfo"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("meminfo"), &mut self.text)?;
        for line in self.text.lines() {
            let Some((value, _)) = parse_line(line, &mut self.name) else {
                continue;
            };
            let field = &self.name["node_memory_".len()..];
            let help = format!("Memory information field {field}.");
            out.gauge(&self.name, &help, &[], value);
        }
        Ok(())
    }
}

/// Parses one meminfo line, writing the metric name into `name`; returns the value in base
/// units and whether a unit suffix was added.
fn parse_line(line: &str, name: &mut String) -> Option<(f64, bool)> {
    let (key, rest) = line.split_once(':')?;
    let mut fields = rest.split_ascii_whitespace();
    let value: f64 = fields.next()?.parse().ok()?;
    let has_unit = fields.next().is_some();
    name.clear();
    name.push_str("node_memory_");
    // `Active(anon)` -> `Active_anon`, as node_exporter's `\((.*)\)` -> `_${1}`.
    for c in key.trim().chars() {
        match c {
            '(' => name.push('_'),
            ')' => {}
            c => name.push(c),
        }
    }
    if has_unit {
        name.push_str("_bytes");
        Some((value * 1024.0, true))
    } else {
        Some((value, false))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn names_follow_node_exporter() {
        let mut name = String::new();
        assert_eq!(
            parse_line("MemTotal:       24683040 kB", &mut name),
            Some((24683040.0 * 1024.0, true))
        );
        assert_eq!(name, "node_memory_MemTotal_bytes");
        parse_line("Active(anon):     123 kB", &mut name);
        assert_eq!(name, "node_memory_Active_anon_bytes");
        assert_eq!(
            parse_line("HugePages_Total:       4", &mut name),
            Some((4.0, false))
        );
        assert_eq!(name, "node_memory_HugePages_Total");
        assert_eq!(parse_line("garbage", &mut name), None);
    }
}
