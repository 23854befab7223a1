//! Lookups in a parsed exposition (`/metrics` of the hub, an agent's `--once`), the real
//! `promtool check metrics`, and a loopback scrape target serving a fixed text.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use fleetgate_shared::{Family, Value};

/// The value of the first scalar series of `name` whose labels include all of `labels`.
pub fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series_labels(families, name, labels).map(|(_, v)| v)
}

/// The full label set and value of the first scalar series of `name` matching `labels`.
pub fn series_labels(
    families: &[Family],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<(BTreeMap<String, String>, f64)> {
    scalars(families, name, labels).into_iter().next()
}

/// The sum of every scalar series of `name` matching `labels` (0 when there is none).
pub fn sum(families: &[Family], name: &str, labels: &[(&str, &str)]) -> f64 {
    scalars(families, name, labels).iter().map(|(_, v)| v).sum()
}

fn scalars(
    families: &[Family],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<(BTreeMap<String, String>, f64)> {
    families
        .iter()
        .filter(|f| f.name == name)
        .flat_map(|f| &f.series)
        .filter_map(|s| {
            let Value::Scalar(v) = s.value else {
                return None;
            };
            let all: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels
                .iter()
                .all(|(k, want)| all.get(*k).map(String::as_str) == Some(*want))
                .then_some((all, v))
        })
        .collect()
}

/// Sample lines of the exposition `text` whose metric name is `metric` and that carry
/// `label="value"`.
pub fn lines_with<'a>(text: &'a str, metric: &str, label: &str, value: &str) -> Vec<&'a str> {
    let needle = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(metric) && l.contains(&needle))
        .collect()
}

/// Serves `body` as `200 text/plain` to every request on a free loopback port, from a task of the
/// test's tokio runtime (so it lives as long as the test); returns `http://127.0.0.1:PORT/metrics`.
pub async fn serve(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = std::sync::Arc::clone(&body);
            tokio::spawn(async move {
                // The request head only (a GET has no body); at most 64 KiB of it.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    fleetgate_shared::text::CONTENT_TYPE,
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metrics")
}

/// Runs `promtool check metrics` (the executable at `promtool`) on `text`: its exit code (0 clean,
/// 1 parse error, 3 lint problems) and its output.
pub fn promtool_check_metrics(promtool: &Path, text: &str) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", promtool.display()));
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    let text = text.to_string();
    // Written from another thread: promtool may answer before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for promtool");
    let _ = writer.join();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# TYPE up gauge\nup{job=\"a\",node=\"n1\"} 1\nup{job=\"b\",node=\"n1\"} 0\n\
                        up{job=\"a\",node=\"n2\"} 1\n";

    #[test]
    fn lookups_match_every_given_label() {
        let fams = fleetgate_shared::text::parse(TEXT).expect("parses");
        assert_eq!(value(&fams, "up", &[("job", "b")]), Some(0.0));
        assert_eq!(value(&fams, "up", &[("job", "c")]), None);
        assert_eq!(sum(&fams, "up", &[("job", "a")]), 2.0);
        assert_eq!(sum(&fams, "down", &[]), 0.0);
        let (labels, v) = series_labels(&fams, "up", &[("node", "n2")]).expect("n2");
        assert_eq!((labels["job"].as_str(), v), ("a", 1.0));
        assert_eq!(lines_with(TEXT, "up", "node", "n1").len(), 2);
    }
}
