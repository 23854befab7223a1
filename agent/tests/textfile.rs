//! The textfile collector side by side with node_exporter's: the same `*.prom` files read by a
//! real `prometheus-node-exporter` (only its textfile collector) and by `fleetgate-agent --once`
//! must give the same families, HELP, TYPE, series and values, the same
//! `node_textfile_mtime_seconds` and the same `node_textfile_scrape_error`. Then through a real
//! hub: textfile families reach `/metrics` with the node's labels, a rewritten file is picked up
//! at the next push, and a family the agent collects itself wins over a textfile's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetgate_shared::{Family, Value};
use fleetgate_testkit::{command, eventually, require_tool, Agent, AgentArgs, Binary, Hub};

/// Files node_exporter 1.5 reads in a way that does not depend on timing: good ones of every
/// type, ones it merges or reduces, and bad ones it skips whole.
const FILES: &[(&str, &str)] = &[
    (
        "backup.prom",
        "# HELP backup_last_success_seconds Last successful backup.\n\
         # TYPE backup_last_success_seconds gauge\n\
         backup_last_success_seconds{job=\"db\"} 1.7e+09\n\
         backup_last_success_seconds{job=\"files\",target=\"nas\"} 1699999999\n\
         # TYPE backup_runs_total counter\n\
         backup_runs_total 42\n\
         backup_size_bytes 123456789\n\
         # TYPE backup_duration_seconds histogram\n\
         backup_duration_seconds_bucket{le=\"60\"} 3\n\
         backup_duration_seconds_bucket{le=\"600\"} 9\n\
         backup_duration_seconds_bucket{le=\"+Inf\"} 10\n\
         backup_duration_seconds_sum 2345.5\n\
         backup_duration_seconds_count 10\n\
         # TYPE backup_lag_seconds summary\n\
         backup_lag_seconds{quantile=\"0.5\"} 1.5\n\
         backup_lag_seconds{quantile=\"0.99\"} 9\n\
         backup_lag_seconds_sum 30\n\
         backup_lag_seconds_count 12\n",
    ),
    // Same families from a second file: merged when HELP and TYPE agree; a repeated series
    // keeps the first value; a family without HELP everywhere gets one naming both files.
    (
        "deploy.prom",
        "# HELP backup_last_success_seconds Last successful backup.\n\
         # TYPE backup_last_success_seconds gauge\n\
         backup_last_success_seconds{job=\"logs\"} 1.6e+09\n\
         backup_last_success_seconds{job=\"db\"} 1\n\
         backup_size_bytes{disk=\"b\"} 7\n\
         deploy_version_info{version=\"1.2.3\",commit=\"abc\"} 1\n\
         deploy_version_info{version=\"1.2.2\"} 0\n",
    ),
    // Disagrees with backup.prom on HELP: its series of that family are dropped.
    (
        "drift.prom",
        "# HELP backup_runs_total Something else.\n\
         # TYPE backup_runs_total counter\n\
         backup_runs_total{src=\"drift\"} 1\n\
         drift_ok 1\n",
    ),
    ("empty.prom", ""),
    (
        "special.prom",
        "value_nan NaN\nvalue_inf +Inf\nvalue_neg -Inf\nvalue_small 1e-300\n",
    ),
    // Skipped whole: each for its own reason; node_textfile_scrape_error becomes 1.
    (
        "timestamped.prom",
        "ts_metric 1 1700000000000\nts_other 2\n",
    ),
    ("garbage.prom", "this is { not valid\n"),
    ("twohelp.prom", "# HELP x a\n# HELP x b\nx 1\n"),
    ("typeafter.prom", "y 1\n# TYPE y gauge\n"),
    ("unfinished.prom", "partial_write 1"),
    ("windows.prom", "crlf_metric 1\r\n"),
    ("duplabel.prom", "dl{a=\"1\",a=\"2\"} 1\n"),
    // Not read at all.
    ("notes.txt", "ignored_metric 1\n"),
    ("backup.prom.tmp", "ignored_too 1\n"),
];

fn write_files(dir: &Path) {
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Families as comparable data: name -> (type, HELP, sorted series of (sorted labels, value)).
type Comparable = BTreeMap<String, (String, String, Vec<(Vec<(String, String)>, String)>)>;

fn comparable(families: &[Family], keep: impl Fn(&str) -> bool) -> Comparable {
    families
        .iter()
        .filter(|f| keep(&f.name))
        .map(|f| {
            let mut series: Vec<_> = f
                .series
                .iter()
                .map(|s| {
                    let mut labels: Vec<_> = s
                        .labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect();
                    labels.sort();
                    (labels, format!("{:?}", s.value))
                })
                .collect();
            series.sort();
            (
                f.name.clone(),
                (f.kind.as_str().to_string(), f.help.clone(), series),
            )
        })
        .collect()
}

/// node_exporter's own families, not read from a textfile.
fn from_textfiles(name: &str) -> bool {
    !(name.starts_with("go_")
        || name.starts_with("process_")
        || name.starts_with("promhttp_")
        || name.starts_with("node_scrape_collector_")
        || name == "node_exporter_build_info")
}

/// A node_exporter with only the textfile collector, on a free loopback port; killed on drop.
struct NodeExporter {
    child: Child,
    url: String,
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_exporter(bin: &Path, dir: &Path) -> NodeExporter {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(bin)
        .args([
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", dir.display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    NodeExporter {
        child,
        url: format!("http://127.0.0.1:{port}/metrics"),
    }
}

async fn scrape(url: &str) -> Option<String> {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

fn agent_once(dir: &Path, collectors: &str) -> String {
    let out = command(Binary::Agent)
        .args([
            "--once",
            "--node",
            "n1",
            "--collectors",
            collectors,
            "--textfile-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn reads_textfiles_as_node_exporter_does() {
    let Some(bin) = require_tool("prometheus-node-exporter") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let ne = node_exporter(&bin, dir.path());
    let theirs = eventually(Duration::from_secs(20), "node_exporter's /metrics", || {
        scrape(&ne.url)
    })
    .await;
    let ours = agent_once(dir.path(), "");

    let theirs = fleetgate_shared::text::parse(&theirs).unwrap();
    let ours_parsed = fleetgate_shared::text::parse(&ours).unwrap();
    let theirs = comparable(&theirs, from_textfiles);
    let ours_cmp = comparable(&ours_parsed, |n| {
        !n.starts_with("fleetgate_agent_") && !n.starts_with("process_")
    });

    // The files' own families (node_exporter's view is the reference): 11 from the good
    // files and the collector's two.
    assert_eq!(theirs.len(), 13, "{:#?}", theirs.keys());
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours_cmp.keys().collect::<Vec<_>>(),
        "family names differ"
    );
    for (name, want) in &theirs {
        assert_eq!(&ours_cmp[name], want, "family {name} differs");
    }
    // What the comparison covers, spelled out.
    let (_, help, series) = &ours_cmp["backup_size_bytes"];
    assert!(
        help.starts_with("Metric read from ") && help.contains("backup.prom, "),
        "{help}"
    );
    assert_eq!(series.len(), 2);
    assert_eq!(
        ours_cmp["node_textfile_scrape_error"].2[0].1,
        format!("{:?}", Value::Scalar(1.0))
    );
    assert_eq!(
        ours_cmp["node_textfile_mtime_seconds"].2.len(),
        5,
        "the good files"
    );
    for skipped in [
        "ts_other",
        "partial_write",
        "crlf_metric",
        "ignored_metric",
        "dl",
    ] {
        assert!(!ours_cmp.contains_key(skipped), "{skipped}");
    }
    assert!(
        ours.contains("fleetgate_agent_collector_up{collector=\"textfile\"} 1"),
        "{ours}"
    );

    // With every bad file gone, the error is 0 on both sides.
    for (name, _) in &FILES[5..12] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let theirs = fleetgate_shared::text::parse(&scrape(&ne.url).await.unwrap()).unwrap();
    let ours = fleetgate_shared::text::parse(&agent_once(dir.path(), "")).unwrap();
    let error = |fams: &[Family]| {
        fams.iter()
            .find(|f| f.name == "node_textfile_scrape_error")
            .map(|f| f.series[0].value.clone())
    };
    assert_eq!(error(&theirs), Some(Value::Scalar(0.0)));
    assert_eq!(error(&ours), Some(Value::Scalar(0.0)));
}

#[tokio::test]
async fn textfiles_reach_the_hub_and_follow_rewrites_and_collected_families_win() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);
    let tf = dir.path().join("textfiles");
    std::fs::create_dir(&tf).unwrap();
    // node_load1 is the host collector's: the textfile's is dropped.
    std::fs::write(
        tf.join("job.prom"),
        "# TYPE job_done gauge\njob_done{job=\"a\"} 1\nnode_load1 12345\n",
    )
    .unwrap();
    let mut args = AgentArgs::new(&hub, "tf-node", &dir.path().join("state"))
        .with(["--textfile-dir".to_string(), tf.display().to_string()]);
    args.collectors = "host".to_string();
    let agent = Agent::start(args.args());

    let value = |text: &str, metric: &str| {
        text.lines()
            .find(|l| l.starts_with(metric) && l.contains("node=\"tf-node\""))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    let text = eventually(Duration::from_secs(30), "job_done on /metrics", || async {
        let text = hub.metrics_text().await;
        value(&text, "job_done{").map(|_| text)
    })
    .await;
    assert_eq!(value(&text, "job_done{").as_deref(), Some("1"));
    assert_eq!(
        value(&text, "node_textfile_scrape_error{").as_deref(),
        Some("0")
    );
    let load = value(&text, "node_load1{").unwrap();
    assert_ne!(load, "12345", "the host collector's node_load1 wins");
    assert!(
        text.contains("# HELP node_load1 1m load average."),
        "{text}"
    );

    // A cron job rewrites its file (to a temporary name, then renamed): the next push has it.
    std::fs::write(
        tf.join("job.prom.tmp"),
        "# TYPE job_done gauge\njob_done{job=\"a\"} 2\n",
    )
    .unwrap();
    std::fs::rename(tf.join("job.prom.tmp"), tf.join("job.prom")).unwrap();
    eventually(
        Duration::from_secs(30),
        "job_done 2 on /metrics",
        || async {
            (value(&hub.metrics_text().await, "job_done{").as_deref() == Some("2")).then_some(())
        },
    )
    .await;
    // And a file written badly sets the error without losing the good one.
    std::fs::write(tf.join("broken.prom"), "broken{ 1\n").unwrap();
    eventually(
        Duration::from_secs(30),
        "node_textfile_scrape_error 1",
        || async {
            let text = hub.metrics_text().await;
            (value(&text, "node_textfile_scrape_error{").as_deref() == Some("1")
                && value(&text, "job_done{").as_deref() == Some("2"))
            .then_some(())
        },
    )
    .await;
    let log = agent.log();
    assert!(
        log.contains("node_load1") && log.contains("family dropped"),
        "{log}"
    );
    assert!(log.contains("broken.prom"), "{log}");
}
