//! `os`: `node_os_info` and `node_os_version` from the host's os-release file.

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// os-release keys and the label each becomes.
const KEYS: [(&str, &str); 12] = [
    ("BUILD_ID", "build_id"),
    ("ID", "id"),
    ("ID_LIKE", "id_like"),
    ("IMAGE_ID", "image_id"),
    ("IMAGE_VERSION", "image_version"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty_name"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant_id"),
    ("VERSION", "version"),
    ("VERSION_CODENAME", "version_codename"),
    ("VERSION_ID", "version_id"),
];

/// The os collector.
#[derive(Debug, Default)]
pub(super) struct Os {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Os {
    fn name(&self) -> &'static str {
        "os"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        if read_to(&paths.rootfs("etc/os-release"), &mut self.text).is_err() {
            read_to(&paths.rootfs("usr/lib/os-release"), &mut self.text)?;
        }
        let values: Vec<(&str, String)> = KEYS
            .iter()
            .map(|(key, label)| (*label, os_release_value(&self.text, key)))
            .collect();
        let labels: Vec<(&str, &str)> = values.iter().map(|(l, v)| (*l, v.as_str())).collect();
        out.gauge(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            &labels,
            1.0,
        );
        let get = |label: &str| {
            values
                .iter()
                .find(|(l, _)| *l == label)
                .map_or("", |(_, v)| v.as_str())
        };
        out.gauge(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            &[
                ("id", get("id")),
                ("id_like", get("id_like")),
                ("name", get("name")),
            ],
            major_minor(get("version_id")),
        );
        Ok(())
    }
}

/// The unquoted value of `key=` in an os-release file, or "".
fn os_release_value(text: &str, key: &str) -> String {
    let Some(raw) = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
    else {
        return String::new();
    };
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(raw);
    unquoted.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `^[0-9]+\.?[0-9]*` of VERSION_ID as a number (`22.04.3` -> 22.04), 0 when there is none.
fn major_minor(version_id: &str) -> f64 {
    let digits = version_id.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return 0.0;
    }
    let rest = &version_id[digits..];
    let end = match rest.strip_prefix('.') {
        Some(after) => digits + 1 + after.bytes().take_while(u8::is_ascii_digit).count(),
        None => digits,
    };
    version_id[..end]
        .trim_end_matches('.')
        .parse()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_release_value(text, "ID"), "debian");
        assert_eq!(os_release_value(text, "ID_LIKE"), "");
        assert_eq!(major_minor("12"), 12.0);
        assert_eq!(major_minor("22.04.3"), 22.04);
        assert_eq!(major_minor("rolling"), 0.0);
    }
}
