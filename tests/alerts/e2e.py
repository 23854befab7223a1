"""End-to-end proof of the alerting path with real parts, on loopback only.

A real fleetgate-hub; a real fleetgate-agent (host collector of this machine, plus the GPU and
Triton collectors, absent here, which must stay quiet on a CPU node); a second real agent whose
host collector reads a sysfs tree with an EDAC memory controller (`--sys-path`: no VM has EDAC);
a GPU node that enrolls through /add_node and pushes dcgm-exporter text through /push with XID 79
on its GPU 1; when a Docker engine runs, a third real agent (containers collector) watching a
container that crash-loops under `--restart always` with a process OOM-killed in every run;
Prometheus (Debian) with the shipped compose/prometheus/prometheus.yml and the shipped rule
files; Alertmanager (Debian) started through the shipped compose/alertmanager/entrypoint.sh with
the shipped alertmanager.yml; and a webhook receiver in this process.

What it shows:
  1. Watchdog reaches the webhook; the XID 79 pushed for GPU 1 yields GPUXidErrorCritical naming
     that GPU (gpu, UUID, modelName), severity critical; GPU 0 of that node stays quiet. An
     uncorrectable memory error counted by the EDAC controller yields NodeEdacUncorrectableErrors
     naming the node and the controller.
  2. SIGKILL of the agent: FleetgateNodeDown for that node reaches the webhook with `node` set,
     grouped by alertname and node; restarting the agent resolves it at the webhook.
  3. A container crash-looping under Docker's restart policy, each run OOM-killing a child
     process in its 16 MiB before it exits (Docker only): ContainerOOMKilled and
     ContainerRestarting for it, from the agent's container_oom_events_total and the new start
     time of every run, which the agent reads within one interval of the restart. The kills
     happen on this machine, so NodeOOMKillDetected fires for the nodes that read its /proc.
  4. Alertmanager's inhibition: a node that is down silences that node's other alerts, and a
     critical alert silences its warning twin (alerts posted to Alertmanager's API).
  5. Apart from these, nothing fires: the webhook got no other alert and Prometheus has no other
     firing alert for the healthy nodes.

Deliberate differences from production, all for time: Prometheus scrapes and evaluates every
second and re-sends alerts to Alertmanager every 2 s (instead of 1m; the first alerts go out
before Prometheus has discovered the Alertmanager), agents push every second (so a node is stale
after 3 s), and the Alertmanager config is
a copy of the shipped one with group_wait 1s and group_interval 2s (instead of 30s and 2m) so
the resolved notification does not wait minutes. The rules' expressions and `for:` durations are
the shipped ones: FleetgateNodeDown still waits its full minute.

Exit status 0 when everything holds, 1 otherwise.
"""

import argparse
import atexit
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import requests
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "dashboards"))
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import gpu_pusher  # noqa: E402  (the dashboards proof's synthetic GPU node, shared)
import harness  # noqa: E402
from harness import free_port, wait_for  # noqa: E402

RULES = ROOT / "compose" / "prometheus" / "rules"
PROMETHEUS_YML = ROOT / "compose" / "prometheus" / "prometheus.yml"
AM_DIR = ROOT / "compose" / "alertmanager"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
# Alerts this run provokes on purpose; anything else firing is a failure.
EXPECTED = {"Watchdog", "GPUXidErrorCritical", "FleetgateNodeDown", "NodeEdacUncorrectableErrors"}
# With Docker, also these: the container's OOM kills happen on this machine, so the host's own
# OOM count (node_vmstat_oom_kill, read by the agents of the CPU and EDAC nodes) rises too.
EXPECTED_WITH_DOCKER = {"ContainerRestarting", "ContainerOOMKilled", "NodeOOMKillDetected"}


def log(msg):
    print(f"[alerts-e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Webhook:
    """An Alertmanager webhook receiver: keeps every notification it is sent (at most 10,000)."""

    def __init__(self):
        self.notifications = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(length, 16 << 20))
                try:
                    doc = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer.lock:
                    if len(outer.notifications) < 10_000:
                        outer.notifications.append((self.path, doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, path=None):
        """(path, notification status, alert) for every alert in every notification so far."""
        with self.lock:
            items = list(self.notifications)
        return [(p, n.get("status"), a, n) for p, n in items if path is None or p == path
                for a in n.get("alerts", [])]

    def find(self, alertname, status, **labels):
        for path, _, alert, note in self.alerts():
            lab = alert.get("labels", {})
            if (lab.get("alertname") == alertname and alert.get("status") == status
                    and all(lab.get(k) == v for k, v in labels.items())):
                return path, alert, note
        return None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Stack(harness.Run):
    def __init__(self, bin_dir, keep):
        super().__init__("fleetgate-alerts-e2e-", keep, log)
        self.bin_dir = bin_dir
        self.webhook = None

    def stop(self):
        super().stop()
        if self.webhook:
            self.webhook.stop()
            self.webhook = None

    # -- components ----------------------------------------------------------------------------

    def start_hub(self):
        addr = super().start_hub(self.bin_dir)
        self.hub = f"http://{addr}"
        self.hub_addr = addr
        self.enroll_token_file = self.tmp / "hub" / "enroll.token"
        log(f"hub at {self.hub}")

    def start_alertmanager(self):
        self.webhook = Webhook()
        # The shipped file, with the grouping delays shortened (see the module docstring).
        config = yaml.safe_load((AM_DIR / "alertmanager.yml").read_text())
        config["route"]["group_wait"] = "1s"
        config["route"]["group_interval"] = "2s"
        for route in config["route"].get("routes", []):
            route["group_interval"] = "2s"
        template = self.tmp / "alertmanager.yml"
        template.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        env = dict(os.environ,
                   ALERTMANAGER_WEBHOOK_URL=f"{self.webhook.url}/default",
                   ALERTMANAGER_WATCHDOG_URL=f"{self.webhook.url}/watchdog",
                   ALERTMANAGER_TEMPLATE=str(template),
                   ALERTMANAGER_RENDERED=str(self.tmp / "alertmanager.rendered.yml"),
                   ALERTMANAGER_BIN=ALERTMANAGER)
        self.spawn("alertmanager", ["sh", str(AM_DIR / "entrypoint.sh"),
                                    f"--storage.path={self.tmp / 'alertmanager-data'}",
                                    f"--web.listen-address=127.0.0.1:{port}",
                                    "--cluster.listen-address="], env=env)
        self.am = f"http://127.0.0.1:{port}"
        harness.wait_ready(f"{self.am}/-/ready", "Alertmanager", self.check_alive, 30)
        log(f"alertmanager at {self.am}, webhook at {self.webhook.url}")

    def start_prometheus(self):
        # The shipped prometheus.yml, pointed at this run's hub and Alertmanager, with the
        # shipped rule files, scraping and evaluating every second.
        config = yaml.safe_load(PROMETHEUS_YML.read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s",
                                evaluation_interval="1s")
        config["rule_files"] = [str(RULES / "*.yml")]
        config["alerting"]["alertmanagers"][0]["static_configs"] = [
            {"targets": [self.am.removeprefix("http://")]}]
        job = config["scrape_configs"][0]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"] = [{"targets": [self.hub_addr]}]
        path = self.tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        self.spawn("prometheus", [PROMETHEUS, f"--config.file={path}",
                                  f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
                                  f"--web.listen-address=127.0.0.1:{port}",
                                  "--enable-feature=extra-scrape-metrics",
                                  # Alerts evaluated before the Alertmanager is discovered (a
                                  # few seconds) are sent again after this, not after 1m.
                                  "--rules.alert.resend-delay=2s"])
        self.prom = f"http://127.0.0.1:{port}"
        harness.wait_ready(f"{self.prom}/-/ready", "Prometheus", self.check_alive)
        log(f"prometheus at {self.prom}")

    def start_agent(self, name, node, collectors, extra=()):
        self.spawn(name, [str(self.bin_dir / "fleetgate-agent"), "--hub", self.hub,
                          "--enroll-token-file", str(self.enroll_token_file),
                          "--state-dir", str(self.tmp / f"state-{node}"), "--interval", "1s",
                          "--node", node, "--collectors", collectors, *extra])

    def make_edac_sysfs(self):
        """A sysfs tree with one EDAC memory controller and no errors yet; returns its root and
        the controller's directory."""
        root = self.tmp / "sysfs-edac"
        mc0 = root / "devices" / "system" / "edac" / "mc" / "mc0"
        (mc0 / "csrow0").mkdir(parents=True)
        for name in ("ce_count", "ce_noinfo_count", "ue_count", "ue_noinfo_count"):
            (mc0 / name).write_text("0\n")
        for name in ("ce_count", "ue_count"):
            (mc0 / "csrow0" / name).write_text("0\n")
        return root, mc0

    def start_gpu_node(self, node):
        pusher = gpu_pusher.GpuNode(self.hub, self.enroll_token_file.read_text().strip(), node)
        pusher.enroll()
        # XID 79 (GPU fallen off the bus) on GPU 1; GPU 0 stays healthy.
        overrides = {("DCGM_FI_DEV_XID_ERRORS", 1): 79}
        self.thread(pusher.run, self.stop_event, 1.0, overrides)
        return pusher

    def start_crash_looping_container(self):
        """A container under `--restart always` with 16 MiB of memory: each run starts `dd` with
        a 64 MiB buffer, which the OOM killer kills, and exits 2 s later; Docker starts it again
        (after 0.1 s, then twice as long each time)."""
        image = self.busybox_image("fg-alerts-busybox", ("sh", "sleep", "dd"))
        name = f"fg-alerts-crashloop-{self.id}"
        self.containers.append(name)
        subprocess.run(["docker", "run", "-d", "--name", name, "--restart", "always",
                        "--memory", "16m", "--memory-swap", "16m", image, "sh", "-c",
                        "sleep 3; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 2; exit 1"],
                       check=True, capture_output=True, timeout=120)
        return name

    # -- queries -------------------------------------------------------------------------------

    def query(self, expr):
        r = requests.get(f"{self.prom}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r}: {body}")
        return body["data"]["result"]

    def prometheus_alerts(self):
        r = requests.get(f"{self.prom}/api/v1/alerts", timeout=10)
        return r.json()["data"]["alerts"]


def describe(alert):
    lab = alert.get("labels", {})
    keys = ("node", "gpu", "name", "model", "mountpoint", "collector", "severity")
    return f"{lab.get('alertname')}{{{', '.join(f'{k}={lab[k]}' for k in keys if k in lab)}}}"


def run(stack, docker):
    failures = []

    def expect(cond, msg):
        log(("ok:   " if cond else "FAIL: ") + msg)
        if not cond:
            failures.append(msg)

    cpu_node, gpu_node = f"alerts-e2e-cpu-{stack.id}", f"alerts-e2e-gpu-{stack.id}"
    ctr_node = f"alerts-e2e-ctr-{stack.id}"
    stack.start_hub()
    stack.start_alertmanager()
    stack.start_prometheus()
    # Nothing listens on this port: the Triton collector finds no Triton, as on most CPU nodes.
    no_triton = f"http://127.0.0.1:{free_port()}/metrics"
    stack.start_agent("agent", cpu_node, "host,gpu,triton", ["--triton-url", no_triton])
    stack.start_gpu_node(gpu_node)
    edac_node = f"alerts-e2e-edac-{stack.id}"
    edac_sysfs, mc0 = stack.make_edac_sysfs()
    stack.start_agent("agent-edac", edac_node, "host", ["--sys-path", str(edac_sysfs)])
    looping = None
    if docker:
        stack.start_agent("agent-containers", ctr_node, "containers")
        looping = stack.start_crash_looping_container()
        log(f"container {looping} crash-loops, a process OOM-killed in every run")
    log(f"nodes: {cpu_node} (real agent), {gpu_node} (pushed dcgm text, XID 79 on GPU 1), "
        f"{edac_node} (real agent, EDAC sysfs tree)"
        + (f", {ctr_node} (real agent, containers)" if docker else ""))

    # 1. Both nodes up, Watchdog and the XID alert at the webhook.
    wait_for("both nodes up in Prometheus", lambda: len(stack.query(
        f'fleetgate_node_up{{node=~"{cpu_node}|{gpu_node}"}} == 1')) == 2, 60,
        check=stack.check_alive)
    log("both nodes are up in Prometheus")
    found = wait_for("Watchdog at the watchdog receiver", lambda: stack.webhook.find(
        "Watchdog", "firing"), 60, check=stack.check_alive)
    log("Watchdog arrived")
    expect(found[0] == "/watchdog", f"Watchdog goes to the watchdog receiver (got {found[0]})")
    path, xid, note = wait_for("GPUXidErrorCritical at the webhook", lambda: stack.webhook.find(
        "GPUXidErrorCritical", "firing", node=gpu_node), 60, check=stack.check_alive)
    lab = xid["labels"]
    expect(path == "/default", "the XID alert goes to the default receiver")
    expect(lab.get("severity") == "critical", f"XID 79 is critical (got {lab.get('severity')})")
    expect(lab.get("gpu") == "1" and lab.get("UUID") == gpu_pusher.GPUS[1]["UUID"]
           and lab.get("modelName") == gpu_pusher.MODEL,
           f"the XID alert names GPU 1 by index, UUID and model: {lab}")
    desc = xid["annotations"].get("description", "")
    expect("XID 79" in desc and "fallen off the bus" in desc and gpu_node in desc,
           f"its description names node, XID and meaning: {desc!r}")
    expect(note.get("groupLabels") == {"alertname": "GPUXidErrorCritical", "node": gpu_node},
           f"notifications are grouped by alertname and node: {note.get('groupLabels')}")

    # An uncorrectable memory error on the EDAC node, once Prometheus has its count at 0.
    wait_for(f"{edac_node}'s EDAC count in Prometheus", lambda: stack.query(
        f'node_edac_uncorrectable_errors_total{{node="{edac_node}",controller="0"}} == 0'), 60,
        check=stack.check_alive)
    (mc0 / "ue_count").write_text("1\n")
    (mc0 / "csrow0" / "ue_count").write_text("1\n")
    path, edac, _ = wait_for("NodeEdacUncorrectableErrors at the webhook", lambda:
                             stack.webhook.find("NodeEdacUncorrectableErrors", "firing",
                                                node=edac_node), 60, check=stack.check_alive)
    lab = edac["labels"]
    expect(path == "/default" and lab.get("severity") == "critical"
           and lab.get("controller") == "0",
           f"NodeEdacUncorrectableErrors is critical and names the controller: {lab}")
    desc = edac["annotations"].get("description", "")
    expect(edac_node in desc and " uncorrectable ECC errors" in desc,
           f"its description names the node and the count: {desc!r}")

    # 2. SIGKILL the agent: FleetgateNodeDown for its node, then resolved after a restart.
    killed_at = time.monotonic()
    stack.kill("agent", signal.SIGKILL)
    log(f"SIGKILLed the agent of {cpu_node}; FleetgateNodeDown waits its stale window and 1m")
    path, down, note = wait_for("FleetgateNodeDown at the webhook", lambda: stack.webhook.find(
        "FleetgateNodeDown", "firing", node=cpu_node), 150, every=1, check=stack.check_alive)
    log(f"FleetgateNodeDown for {cpu_node} arrived {time.monotonic() - killed_at:.0f}s after "
        "the kill")
    lab = down["labels"]
    expect(lab.get("node") == cpu_node and lab.get("instance") == cpu_node
           and lab.get("node_type") == "cpu" and lab.get("severity") == "critical",
           f"FleetgateNodeDown carries node, instance, node_type and severity: {lab}")
    desc = down["annotations"].get("description", "")
    expect(cpu_node in desc and "last accepted push" in desc,
           f"its description names the node and its last push: {desc!r}")
    expect(note.get("groupLabels") == {"alertname": "FleetgateNodeDown", "node": cpu_node},
           f"grouped by alertname and node: {note.get('groupLabels')}")
    stack.start_agent("agent", cpu_node, "host,gpu,triton", ["--triton-url", no_triton])
    restarted_at = time.monotonic()
    wait_for("FleetgateNodeDown resolved at the webhook", lambda: stack.webhook.find(
        "FleetgateNodeDown", "resolved", node=cpu_node), 60, every=1, check=stack.check_alive)
    log(f"resolved {time.monotonic() - restarted_at:.0f}s after the agent was restarted")

    # 3. The container that crash-loops and runs out of memory.
    if docker:
        cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", looping], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        for alertname in ("ContainerOOMKilled", "ContainerRestarting"):
            found = wait_for(f"{alertname} for {looping}", lambda: stack.webhook.find(
                alertname, "firing", node=ctr_node, name=looping), 120, every=1,
                check=stack.check_alive)
            lab = found[1]["labels"]
            expect(lab.get("image") == f"fg-alerts-busybox:{stack.id}"
                   and lab.get("id", "").endswith(cid) and lab.get("severity") == "warning",
                   f"{alertname} names the container by name, id and image: {lab}")
        desc = found[1]["annotations"].get("description", "")
        expect(looping in desc and ctr_node in desc, f"its description names both: {desc!r}")
        found = wait_for("NodeOOMKillDetected for the host", lambda: stack.webhook.find(
            "NodeOOMKillDetected", "firing", node=edac_node), 60, every=1,
            check=stack.check_alive)
        expect(found[1]["labels"].get("severity") == "warning",
               f"the kills show in the host's own OOM count too: {found[1]['labels']}")

    # 4. Inhibition in the shipped Alertmanager config, with alerts posted to its API.
    a, b = f"inhibit-a-{stack.id}", f"inhibit-b-{stack.id}"
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    fs = {"mountpoint": "/", "device": "/dev/sda1"}
    posted = [
        {"alertname": "FleetgateNodeDown", "node": a, "severity": "critical"},
        {"alertname": "NodeFilesystemAlmostOutOfSpace", "node": a, "severity": "warning", **fs},
        {"alertname": "NodeFilesystemAlmostOutOfSpace", "node": b, "severity": "warning", **fs},
        {"alertname": "NodeFilesystemAlmostOutOfSpace", "node": b, "severity": "critical", **fs},
        {"alertname": "NodeFilesystemAlmostOutOfSpace", "node": b, "severity": "warning",
         "mountpoint": "/var", "device": "/dev/sdb1"},
    ]
    r = requests.post(f"{stack.am}/api/v2/alerts", timeout=10,
                      json=[{"labels": p, "endsAt": ends} for p in posted])
    expect(r.status_code == 200, f"Alertmanager accepted the posted alerts ({r.status_code})")

    def states():
        got = requests.get(f"{stack.am}/api/v2/alerts", timeout=10).json()
        out = {}
        for alert in got:
            lab = alert["labels"]
            if lab.get("node") in (a, b):
                key = (lab["alertname"], lab["node"], lab["severity"], lab.get("mountpoint"))
                out[key] = alert["status"]["state"]
        return out if len(out) == len(posted) else None

    st = wait_for("the posted alerts in Alertmanager", states, 20)
    want = {
        ("FleetgateNodeDown", a, "critical", None): "active",
        ("NodeFilesystemAlmostOutOfSpace", a, "warning", "/"): "suppressed",
        ("NodeFilesystemAlmostOutOfSpace", b, "critical", "/"): "active",
        ("NodeFilesystemAlmostOutOfSpace", b, "warning", "/"): "suppressed",
        ("NodeFilesystemAlmostOutOfSpace", b, "warning", "/var"): "active",
    }
    settle = time.monotonic() + 10
    while st != want and time.monotonic() < settle:
        time.sleep(0.5)
        st = states() or st
    expect(st == want, "a down node's other alerts and a critical alert's warning twin are "
                       f"inhibited, nothing else: {st}")
    wait_for("the uninhibited filesystem alerts at the webhook", lambda: stack.webhook.find(
        "NodeFilesystemAlmostOutOfSpace", "firing", node=b, severity="critical"), 30)
    time.sleep(3)  # a group_interval, for anything that should not arrive to arrive
    leaked = [describe(al) for _, _, al, _ in stack.webhook.alerts()
              if al["labels"].get("node") == a and al["labels"]["alertname"] != "FleetgateNodeDown"
              or (al["labels"].get("node") == b and al["labels"].get("severity") == "warning"
                  and al["labels"].get("mountpoint") == "/")]
    expect(not leaked, f"inhibited alerts never reach the webhook: {leaked}")

    # 5. Nothing else fired: not at the webhook, not in Prometheus.
    expected = EXPECTED | (EXPECTED_WITH_DOCKER if docker else set())
    synthetic = {a, b}
    unexpected = sorted({describe(al) for _, status, al, _ in stack.webhook.alerts()
                         if al["labels"].get("node") not in synthetic
                         and al["labels"]["alertname"] not in expected})
    expect(not unexpected, f"no other alert reached the webhook: {unexpected}")
    firing = stack.prometheus_alerts()
    others = sorted({describe(al) for al in firing if al["state"] == "firing"
                     and al["labels"]["alertname"] not in expected
                     and al["labels"].get("node") != ctr_node})
    expect(not others, f"Prometheus has no other firing alert for the healthy nodes: {others}")
    wrong_xid = [describe(al) for al in firing if al["labels"]["alertname"] == "GPUXidErrorCritical"
                 and al["labels"].get("gpu") != "1"]
    expect(not wrong_xid, f"the healthy GPU 0 has no XID alert: {wrong_xid}")
    pending = sorted({describe(al) for al in firing if al["state"] == "pending"})
    if pending:
        log(f"pending (their `for:` not yet elapsed; not failures): {pending}")
    if docker:
        ctr_others = sorted({describe(al) for al in firing if al["labels"].get("node") == ctr_node
                             and al["labels"].get("name") != looping and al["state"] == "firing"})
        if ctr_others:
            log(f"alerts about other containers on this Docker engine (not this test's): "
                f"{ctr_others}")
    log(f"webhook received {len(stack.webhook.notifications)} notifications")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, type=pathlib.Path,
                    help="directory with fleetgate-hub and fleetgate-agent (release build)")
    ap.add_argument("--no-docker", action="store_true",
                    help="leave out the container part (no Docker engine here)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with all logs")
    args = ap.parse_args()
    stack = Stack(args.bin_dir, args.keep)
    atexit.register(stack.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    started = time.monotonic()
    try:
        failures = run(stack, not args.no_docker)
    except (TimeoutError, RuntimeError, requests.RequestException) as e:
        failures = [str(e)]
        log(f"FAIL: {e}")
        for name in ("hub", "agent", "agent-edac", "prometheus", "alertmanager",
                     "agent-containers"):
            tail = stack.tail(name)
            if tail:
                print(f"--- {name} log (tail) ---\n{tail}")
        if stack.webhook:
            got = sorted({(describe(al), status) for _, status, al, _ in stack.webhook.alerts()})
            print(f"--- webhook got: {got}")
    finally:
        stack.stop()
    log(f"{'FAILED' if failures else 'passed'} in {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
