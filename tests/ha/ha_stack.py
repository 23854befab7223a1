"""The monitoring side of the HA layout as real processes on loopback, from the shipped files.

Two Prometheus replicas (compose/prometheus/prometheus-ha-{a,b}.yml) and VictoriaMetrics with the
flags and relabeling of compose/monitoring-ha.yml (compose/victoriametrics/relabel.yml). Only
what a test must change is changed: the addresses (hub, VictoriaMetrics), the intervals, the rule
files' path, and no Alertmanager. Used by tests/ha/ha_e2e.py and by tests/dashboards/prove.py
(--store victoria-metrics), so both prove the configuration that ships.
"""

import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from harness import free_port, wait_ready  # noqa: E402
COMPOSE = ROOT / "compose"
PROMETHEUS = "/usr/bin/prometheus"
VICTORIA_METRICS = "/usr/bin/victoria-metrics"


def prometheus_config(replica, hub_addr, vm_url, interval_s, send_deadline_s=None):
    """The shipped replica config with the test's hub, VictoriaMetrics and interval."""
    config = yaml.safe_load((COMPOSE / "prometheus" / f"prometheus-ha-{replica}.yml").read_text())
    if config["global"]["external_labels"] != {"replica": replica}:
        raise RuntimeError(f"prometheus-ha-{replica}.yml: external_labels must be replica={replica}")
    every = f"{interval_s}s"
    for key in ("scrape_interval", "evaluation_interval"):
        config["global"][key] = every
    config["global"]["scrape_timeout"] = every
    (job,) = config["scrape_configs"]
    job["scrape_interval"] = every
    job["scrape_timeout"] = every
    job["static_configs"] = [{"targets": [hub_addr]}]
    (remote,) = config["remote_write"]
    remote["url"] = f"{vm_url}/api/v1/write"
    if send_deadline_s is not None:
        remote.setdefault("queue_config", {})["batch_send_deadline"] = f"{send_deadline_s}s"
    # The shipped rules (relative to the shipped file), evaluated but not sent anywhere.
    config["rule_files"] = [str(COMPOSE / "prometheus" / r) for r in config.get("rule_files", [])]
    config.pop("alerting", None)
    return config


def victoria_metrics_args(interval_s, data_dir, port):
    """VictoriaMetrics' flags from compose/monitoring-ha.yml, with the test's interval, port and
    paths. Fails when the compose file stops deduplicating or relabeling."""
    compose = yaml.safe_load((COMPOSE / "monitoring-ha.yml").read_text())
    shipped = compose["services"]["victoriametrics"]["command"]
    flags = dict(f.lstrip("-").split("=", 1) for f in shipped)
    for needed in ("dedup.minScrapeInterval", "relabelConfig"):
        if needed not in flags:
            raise RuntimeError(f"monitoring-ha.yml: victoriametrics lacks -{needed}")
    flags["dedup.minScrapeInterval"] = f"{interval_s}s"
    flags["relabelConfig"] = str(COMPOSE / "victoriametrics" / "relabel.yml")
    flags["storageDataPath"] = str(data_dir)
    flags["httpListenAddr"] = f"127.0.0.1:{port}"
    flags.pop("retentionPeriod", None)
    return [VICTORIA_METRICS] + [f"-{k}={v}" for k, v in sorted(flags.items())]


def start_store(spawn, tmp, interval_s, alive):
    """Starts VictoriaMetrics; returns its base URL. spawn(name, argv) -> Popen."""
    port = free_port()
    spawn("victoria-metrics", victoria_metrics_args(interval_s, tmp / "vm-data", port))
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health", "VictoriaMetrics", alive)
    return url


def start_replica(spawn, tmp, replica, hub_addr, vm_url, interval_s, alive, send_deadline_s=None):
    """Starts Prometheus replica `replica` scraping hub_addr; returns its base URL."""
    port = free_port()
    cfg = tmp / f"prometheus-{replica}.yml"
    cfg.write_text(yaml.safe_dump(prometheus_config(replica, hub_addr, vm_url, interval_s,
                                                    send_deadline_s)))
    check = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True,
                           text=True)
    if check.returncode != 0:
        raise RuntimeError(f"promtool rejects the replica {replica} config:\n{check.stdout}"
                           f"{check.stderr}")
    spawn(f"prometheus-{replica}", [PROMETHEUS, f"--config.file={cfg}",
                                    f"--storage.tsdb.path={tmp / f'prometheus-{replica}-data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/-/ready", f"Prometheus replica {replica}", alive)
    return url
