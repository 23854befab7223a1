//! `sockstat`: socket counts per protocol from /proc/net/sockstat and /proc/net/sockstat6, as
//! `node_sockstat_<PROTO>_<field>` gauges; `mem` (pages) also as `mem_bytes`.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The sockstat collector.
#[derive(Debug)]
pub(super) struct Sockstat {
    /// Reused read buffer.
    text: String,
    /// The kernel's page size, the unit of the `mem` fields.
    page_size: f64,
}

impl Sockstat {
    /// A sockstat collector for this machine's page size.
    pub(super) fn new() -> Self {
        Sockstat {
            text: String::new(),
            page_size: page_size(),
        }
    }
}

impl Subcollector for Sockstat {
    fn name(&self) -> &'static str {
        "sockstat"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        read_to(&paths.proc("net/sockstat"), &mut self.text)?;
        emit(&self.text, self.page_size, out);
        // Without IPv6 there is no sockstat6; node_exporter then reports IPv4 only.
        if read_to(&paths.proc("net/sockstat6"), &mut self.text).is_ok() {
            emit(&self.text, self.page_size, out);
        }
        Ok(())
    }
}

/// Appends the families of one sockstat file (`TCP: inuse 4 orphan 0 tw 0 alloc 4 mem 0`).
fn emit(text: &str, page_size: f64, out: &mut MetricBuffer) {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        for pair in fields.chunks_exact(2) {
            let Ok(value) = pair[1].parse::<f64>() else {
                continue;
            };
            if proto == "sockets" {
                if pair[0] == "used" {
                    out.gauge(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        &[],
                        value,
                    );
                }
                continue;
            }
            let field = pair[0];
            out.gauge(
                &format!("node_sockstat_{proto}_{field}"),
                &format!("Number of {proto} sockets in state {field}."),
                &[],
                value,
            );
            if field == "mem" {
                out.gauge(
                    &format!("node_sockstat_{proto}_mem_bytes"),
                    &format!("Number of {proto} sockets in state mem_bytes."),
                    &[],
                    value * page_size,
                );
            }
        }
    }
}

/// The kernel page size.
#[allow(unsafe_code)]
fn page_size() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; it takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as f64
    } else {
        4096.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_sockstat() {
        let mut out = MetricBuffer::new();
        emit(
            "sockets: used 34\nTCP: inuse 4 orphan 0 tw 0 alloc 4 mem 3\nFRAG: inuse 0 memory 0\n",
            4096.0,
            &mut out,
        );
        let text = fleetgate_shared::text::render(out.families());
        assert!(text.contains("node_sockstat_sockets_used 34\n"));
        assert!(text.contains("node_sockstat_TCP_alloc 4\n"));
        assert!(text.contains("node_sockstat_TCP_mem_bytes 12288\n"));
        assert!(text.contains(
            "# HELP node_sockstat_FRAG_memory Number of FRAG sockets in state memory.\n"
        ));
    }
}
