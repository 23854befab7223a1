//! Prometheus text pushes, the way any script would send them: plain with the real curl, gzip
//! and zstd compressed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write;
use std::process::{Command, Stdio};

use fleetgate_testkit::exposition::lines_with;
use fleetgate_testkit::{require_tool, Hub};

const BODY: &str = "# HELP script_jobs_total Jobs done.\n# TYPE script_jobs_total counter\nscript_jobs_total{queue=\"a\"} 3\nscript_jobs_total{queue=\"b\"} 4\nscript_temp 21.5\n";

#[tokio::test]
async fn text_pushes_plain_gzip_and_zstd() {
    let hub = Hub::start(&[]);
    let plain = hub.enroll("curl-node", &[("node_type", "cpu")]).await;
    let gz = hub.enroll("gzip-node", &[]).await;
    let zs = hub.enroll("zstd-node", &[]).await;

    let curl = require_tool("curl");
    if let Some(curl) = &curl {
        let mut child = Command::new(curl)
            .args(["-sS", "--fail-with-body", "--data-binary", "@-", "-H"])
            .arg(format!("Authorization: Bearer {plain}"))
            .arg(hub.url("/push"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(BODY.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"series\":3"));
    }

    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(BODY.as_bytes()).unwrap();
    let resp = hub
        .push_raw(
            &gz,
            "text/plain; version=0.0.4",
            Some("gzip"),
            enc.finish().unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let resp = hub
        .push_raw(
            &zs,
            "text/plain",
            Some("zstd"),
            zstd::stream::encode_all(BODY.as_bytes(), 3).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let text = hub.metrics_text().await;
    let fams = fleetgate_shared::text::parse(&text).unwrap();
    let jobs = fams.iter().find(|f| f.name == "script_jobs_total").unwrap();
    let expected_nodes = if curl.is_some() { 3 } else { 2 };
    assert_eq!(jobs.series.len(), 2 * expected_nodes, "{text}");
    assert_eq!(text.matches("# TYPE script_jobs_total counter").count(), 1);
    for node in ["gzip-node", "zstd-node"] {
        assert_eq!(
            lines_with(&text, "script_jobs_total", "node", node).len(),
            2
        );
        assert_eq!(lines_with(&text, "script_temp", "instance", node).len(), 1);
    }
    if expected_nodes == 3 {
        assert!(
            text.contains("script_jobs_total{queue=\"a\",instance=\"curl-node\",node=\"curl-node\",node_type=\"cpu\"} 3\n"),
            "{text}"
        );
    }
}
