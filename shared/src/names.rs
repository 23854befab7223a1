//! Metric and label name rules of the Prometheus data model.

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Turns arbitrary text (a Docker label key, say) into a valid label-name fragment the way
/// cAdvisor does: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize_label_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_metric_name("node_cpu_seconds_total"));
        assert!(is_valid_metric_name("job:rate5m"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("a-b"));
        assert!(is_valid_label_name("_x9"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name("9"));
        assert_eq!(
            sanitize_label_name("com.docker.compose.project"),
            "com_docker_compose_project"
        );
    }
}
