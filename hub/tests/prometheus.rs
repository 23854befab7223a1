//! A real Prometheus scrapes a real hub (one job, `honor_labels: true`): after three nodes push
//! it sees three distinct `instance` values; after `/remove_node` that node's series are gone
//! from the next query while the other two stay.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_shared::MetricType;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::{require_tool, Hub};

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(prometheus: &Path, target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fleetgate\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// The distinct `instance` values of `metric`, as Prometheus answers now.
async fn instances(client: &reqwest::Client, prom: &str, metric: &str) -> Option<Vec<String>> {
    let resp = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", format!("group by (instance) ({metric})"))])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = resp.json().await.ok()?;
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_string))
        .collect();
    out.sort();
    Some(out)
}

async fn wait_for(client: &reqwest::Client, prom: &str, metric: &str, want: &[&str]) {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(90) {
        last = instances(client, prom, metric).await;
        if last.as_deref().is_some_and(|got| got == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Prometheus never showed instances {want:?} for {metric}; last answer {last:?}");
}

#[tokio::test]
async fn prometheus_sees_each_node_and_forgets_removed_ones() {
    let Some(prometheus) = require_tool("prometheus") else {
        return;
    };
    let hub = Hub::start(&[]);
    let mut tokens = Vec::new();
    for node in ["gpu-1", "gpu-2", "cpu-1"] {
        let t = hub.enroll(node, &[("node_type", &node[..3])]).await;
        let snap = snapshot(
            1,
            600_000,
            vec![family(
                "fg_prom_test",
                MetricType::Gauge,
                vec![scalar(&[("instance", "forged")], 1.0)],
            )],
        );
        assert_eq!(hub.push(&t, &snap).await.status(), 200);
        tokens.push(t);
    }
    let prom = start_prometheus(&prometheus, hub.addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_for(
        &client,
        &prom.url,
        "fg_prom_test",
        &["cpu-1", "gpu-1", "gpu-2"],
    )
    .await;
    wait_for(
        &client,
        &prom.url,
        "fleetgate_node_up",
        &["cpu-1", "gpu-1", "gpu-2"],
    )
    .await;

    assert_eq!(hub.remove_node(&tokens[1], "gpu-2").await.status(), 200);
    // The next scrape no longer has gpu-2's series, so Prometheus marks them stale at once.
    wait_for(&client, &prom.url, "fg_prom_test", &["cpu-1", "gpu-1"]).await;
    let up = instances(&client, &prom.url, "fleetgate_node_up")
        .await
        .unwrap();
    assert_eq!(up, ["cpu-1", "gpu-1"]);
    // The hub's own metrics carry Prometheus' target instance, not a node's.
    let own = instances(&client, &prom.url, "fleetgate_hub_pushes_total")
        .await
        .unwrap();
    assert_eq!(own, vec![hub.addr()]);
}
