//! `netstat`: protocol statistics from /proc/net/netstat, /proc/net/snmp and /proc/net/snmp6
//! as untyped `node_netstat_<Proto>_<Field>`, filtered by node_exporter's default field list.

use fleetgate_shared::MetricType;

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The netstat collector.
#[derive(Debug, Default)]
pub(super) struct Netstat {
    /// Reused read buffer.
    text: String,
    /// Reused `<Proto>_<Field>` buffer.
    key: String,
}

impl Subcollector for Netstat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        for file in ["net/netstat", "net/snmp"] {
            read_to(&paths.proc(file), &mut self.text)?;
            let mut lines = self.text.lines();
            while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
                let (Some((proto, names)), Some((_, values))) =
                    (names.split_once(':'), values.split_once(':'))
                else {
                    break;
                };
                for (field, value) in names
                    .split_ascii_whitespace()
                    .zip(values.split_ascii_whitespace())
                {
                    emit(out, &mut self.key, proto, field, value);
                }
            }
        }
        // Kernels without IPv6 have no snmp6; node_exporter then skips the IPv6 statistics.
        if read_to(&paths.proc("net/snmp6"), &mut self.text).is_ok() {
            for line in self.text.lines() {
                let mut fields = line.split_ascii_whitespace();
                let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                    continue;
                };
                // `Icmp6InMsgs` -> (`Icmp6`, `InMsgs`), split after the first `6`.
                let Some(six) = key.find('6') else {
                    continue;
                };
                let (proto, field) = key.split_at(six + 1);
                emit(out, &mut self.key, proto, field, value);
            }
        }
        Ok(())
    }
}

/// Appends one statistic if node_exporter's default filter keeps it.
fn emit(out: &mut MetricBuffer, key: &mut String, proto: &str, field: &str, value: &str) {
    key.clear();
    key.push_str(proto);
    key.push('_');
    key.push_str(field);
    if !is_default_field(key) {
        return;
    }
    let Ok(value) = value.parse::<f64>() else {
        return;
    };
    out.sample(
        &format!("node_netstat_{key}"),
        &format!("Statistic {proto}{field}."),
        MetricType::Untyped,
        &[],
        value,
    );
}

/// node_exporter's default `--collector.netstat.fields`:
/// `^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|
/// TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|
/// OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|
/// RcvbufErrors|SndbufErrors))$`.
fn is_default_field(key: &str) -> bool {
    if key.ends_with("_InErrors") || key.ends_with("_InErrs") || key == "Ip_Forwarding" {
        return true;
    }
    let Some((proto, field)) = key.split_once('_') else {
        return false;
    };
    match proto {
        "Ip6" | "IpExt" => matches!(field, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(field, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            field.starts_with("Listen")
                || field.starts_with("Syncookies")
                || matches!(field, "TCPSynRetrans" | "TCPTimeouts")
        }
        "Tcp" => matches!(
            field,
            "ActiveOpens"
                | "InSegs"
                | "OutSegs"
                | "OutRsts"
                | "PassiveOpens"
                | "RetransSegs"
                | "CurrEstab"
        ),
        "Udp" | "Udp6" => matches!(
            field,
            "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_field_filter() {
        for k in [
            "Tcp_CurrEstab",
            "Tcp_InErrs",
            "UdpLite_InErrors",
            "Icmp6_InErrors",
            "Ip_Forwarding",
            "IpExt_InOctets",
            "Ip6_OutOctets",
            "TcpExt_ListenDrops",
            "TcpExt_SyncookiesSent",
            "Udp6_NoPorts",
            "TcpExt_TCPTimeouts",
        ] {
            assert!(is_default_field(k), "{k}");
        }
        for k in [
            "Tcp_MaxConn",
            "Ip_InReceives",
            "IpExt_InMcastPkts",
            "TcpExt_TW",
            "UdpLite_InDatagrams",
        ] {
            assert!(!is_default_field(k), "{k}");
        }
    }

    #[test]
    fn reads_recorded_files() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        std::fs::create_dir(&net).unwrap();
        std::fs::write(
            net.join("netstat"),
            "TcpExt: SyncookiesSent TW ListenDrops\nTcpExt: 1 2 3\nIpExt: InOctets OutOctets\nIpExt: 10 20\n",
        )
        .unwrap();
        std::fs::write(
            net.join("snmp"),
            "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: MaxConn CurrEstab\nTcp: -1 5\n",
        )
        .unwrap();
        std::fs::write(
            net.join("snmp6"),
            "Ip6InOctets                  \t7\nUdpLite6InErrors 0\n",
        )
        .unwrap();
        let paths = HostPaths {
            proc: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut out = MetricBuffer::new();
        Netstat::default().collect(&paths, &mut out).unwrap();
        let names: Vec<&str> = out.families().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_netstat_TcpExt_SyncookiesSent",
                "node_netstat_TcpExt_ListenDrops",
                "node_netstat_IpExt_InOctets",
                "node_netstat_IpExt_OutOctets",
                "node_netstat_Ip_Forwarding",
                "node_netstat_Tcp_CurrEstab",
                "node_netstat_Ip6_InOctets",
                "node_netstat_UdpLite6_InErrors",
            ]
        );
        assert_eq!(out.families()[5].help, "Statistic TcpCurrEstab.");
    }
}
