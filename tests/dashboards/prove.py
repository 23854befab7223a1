"""Proof that every Grafana panel shows data, against the real backend the panels query.

Starts, on loopback only: a real fleetgate-hub, a real fleetgate-agent (host collector, containers
from the real Docker engine, a real Triton on CPU via PyTriton), a GPU node that enrolls and
pushes dcgm-exporter text with modelled values (gpu_pusher.py: the agent's families, modelled
numbers) through the hub's real /push, and a real Prometheus
scraping the hub with honor_labels. Then every target of every dashboard, with its template
variables resolved through Prometheus like Grafana would, must return at least one series.
Dashboard JSON is validated on the way (ids, datasource uid, units, variables, the Node
overview's promise to show no hostnames or addresses).

With --store victoria-metrics the queries go where the HA layout's Grafana sends them
(compose/monitoring-ha.yml): two Prometheus replicas (replica="a" and "b", from the shipped
configs) scrape the hub and remote-write to VictoriaMetrics, which drops the replica label and
deduplicates them; the dashboards must work against it unchanged, with the HA datasource
(grafana/provisioning-ha) under the same uid.

Exit status: 0 when everything holds, 1 on any failure.
"""

import argparse
import atexit
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import requests
import yaml

import gpu_pusher

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import harness  # noqa: E402
from harness import free_port  # noqa: E402
DASHBOARDS = ROOT / "grafana" / "dashboards"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources"
HA_DATASOURCES = ROOT / "grafana" / "provisioning-ha" / "datasources"
HERE = pathlib.Path(__file__).resolve().parent

# Panels that cannot show data on this machine, with the reason (hardware it lacks, or accounting
# its kernel does not do). Each entry is checked the other way round too: if it does return data,
# the entry is stale and the run fails.
CANNOT_SHOW_DATA_HERE = {
    ("Fleetgate / Triton", "Server GPU"):
        "nv_gpu_utilization exists only when Triton sees a GPU; Triton runs on CPU here",
    ("Fleetgate / Triton", "Server GPU memory"):
        "nv_gpu_memory_* exist only when Triton sees a GPU; Triton runs on CPU here",
    ("Fleetgate / Triton", "Server GPU power"):
        "nv_gpu_power_* exist only when Triton sees a GPU; Triton runs on CPU here",
    ("Fleetgate / Containers", "Block I/O"):
        "this machine's Docker reports empty blkio io_service_bytes_recursive for every "
        "container, even under O_DIRECT reads and writes, so container_fs_* cannot exist here",
}

# Grafana unit ids (public/app/features/dimensions / @grafana/data valueFormats) the dashboards may
# use. A typo here would render raw numbers, so units are checked against this list.
GRAFANA_UNITS = {
    "none", "short", "percent", "percentunit", "bytes", "decbytes", "bits", "kbytes", "mbytes",
    "gbytes", "Bps", "binBps", "bps", "KBs", "MBs", "pps", "ops", "reqps", "rps", "wps", "iops",
    "opm", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "dtdurationms", "dateTimeAsIso",
    "hertz", "rothz", "celsius", "fahrenheit", "watt", "kwatt", "mwatt", "watth", "kwatth",
    "joule", "volt", "amp", "locale", "hex", "sci", "string", "bool", "bool_on_off",
}

# Label names that would reveal a server's hostname or address.
IDENTIFYING_LABELS = {"nodename", "hostname", "Hostname", "ip", "domainname", "address",
                      "pci_bus_id", "UUID"}
IP_RE = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")

RANGE_SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "2s"}


def log(msg):
    print(f"[dashboards] {msg}", flush=True)


class Stack(harness.Run):
    """Everything the proof starts; stop() tears it all down, also on SIGTERM."""

    def __init__(self, bin_dir, python, keep):
        super().__init__("fleetgate-dashboards-", keep, log)
        self.bin_dir, self.python = bin_dir, python
        self.agent_node = f"proof-cpu-{self.id}"
        self.gpu_node = f"proof-gpu-{self.id}"

    # -- components ---------------------------------------------------------------------------

    def start_hub(self, listen="127.0.0.1:0"):
        self.hub = "http://" + super().start_hub(self.bin_dir, listen=listen)
        data = self.hub_data = self.tmp / "hub"
        self.enroll_token = (data / "enroll.token").read_text().strip()
        log(f"hub at {self.hub}")

    def start_containers(self):
        image = self.busybox_image("fleetgate-proof-busybox", ("sh", "dd", "sleep", "cat"),
                                   dirs=("tmp",))
        # Direct I/O so block I/O reaches the container's blkio counters instead of page cache;
        # a CPU burst under a small quota so CFS throttling is real.
        io_loop = ("while true; do dd if=/dev/zero of=/tmp/io bs=64k count=16 oflag=direct "
                   "2>/dev/null; dd if=/tmp/io of=/dev/null bs=64k iflag=direct 2>/dev/null; "
                   "sleep 1; done")
        cpu_loop = ("while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
                    "sleep 2; done")
        for role, limits, script in (
            ("web", ["--memory", "64m", "--cpus", "0.2"], io_loop),
            ("worker", ["--cpus", "0.1"], cpu_loop),
            ("idle", [], "while true; do sleep 5; done"),
        ):
            name = f"fleetgate-proof-{role}-{self.id}"
            subprocess.run(["docker", "run", "-d", "--name", name,
                            "--label", "com.docker.compose.project=fleetgate-proof",
                            "--label", f"com.docker.compose.service={role}",
                            *limits, image, "sh", "-c", script],
                           check=True, capture_output=True, timeout=120)
            self.containers.append(name)
        log(f"containers {', '.join(self.containers)}")

    def start_triton(self):
        http, grpc, metrics = free_port(), free_port(), free_port()
        env = dict(os.environ)
        self.spawn("triton", [self.python, str(ROOT / "tests" / "triton" / "serve.py"),
                              str(http), str(grpc), str(metrics)], env=env)
        self.triton_http = f"http://127.0.0.1:{http}"
        self.triton_metrics = f"http://127.0.0.1:{metrics}/metrics"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(f"{self.triton_http}/v2/models/identity/ready",
                                timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            raise RuntimeError("Triton not ready within 180s:\n" + self.tail("triton"))
        log(f"triton at {self.triton_http}, metrics {self.triton_metrics}")
        self.thread(self._inference_traffic)

    def _inference_traffic(self):
        url = f"{self.triton_http}/v2/models/identity/infer"
        n = 0
        while not self.stop_event.wait(0.5):
            n += 1
            rows = 1 + n % 4
            # Every tenth request fails inside the model, so failure series carry real counts.
            first = -1.0 if n % 10 == 0 else 1.0
            data = [first, 2.0, 3.0] * rows
            body = {"inputs": [{"name": "data", "shape": [rows, 3], "datatype": "FP32",
                                "data": data}]}
            try:
                requests.post(url, json=body, timeout=10)
            except requests.RequestException:
                pass

    def start_agent(self):
        self.spawn("agent", [
            str(self.bin_dir / "fleetgate-agent"), "--hub", self.hub,
            "--enroll-token-file", str(self.hub_data / "enroll.token"),
            "--state-dir", str(self.tmp / "agent"), "--interval", "2s",
            "--node", self.agent_node, "--triton-url", self.triton_metrics])
        log(f"agent node {self.agent_node}")

    def start_gpu_pusher(self):
        pusher = gpu_pusher.GpuNode(self.hub, self.enroll_token, self.gpu_node)
        pusher.enroll()
        self.gpu_pusher = pusher
        self.thread(pusher.run, self.stop_event, 2.0)
        log(f"GPU node {self.gpu_node} pushing dcgm-exporter text with modelled values")

    def wait_for_node(self, node, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if f'node="{node}"' in requests.get(f"{self.hub}/metrics", timeout=5).text:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"node {node} never appeared on the hub's /metrics:\n"
                           + self.tail("agent"))

    def hub_outage(self, seconds=6):
        """Stops the hub and starts it again on the same address and data dir: the agent's
        pushes fail meanwhile (fleetgate_agent_push_failures_total gets real samples) and it
        resumes with its stored token, as after a hub upgrade."""
        addr = self.hub.removeprefix("http://")
        self.kill("hub", timeout=30)
        time.sleep(seconds)
        self.start_hub(addr)
        if self.hub != "http://" + addr:
            raise RuntimeError(f"hub came back on {self.hub}, not {addr}")

    def provoke_push_errors(self):
        """A push with an unknown token and one of a family the hub reserves for itself (after
        the outage: a restart starts the hub's counters afresh), so the hub's error series have
        real samples."""
        self.gpu_pusher.push_rejected()
        r = requests.post(f"{self.hub}/push", data=b"x 1\n",
                          headers={"Authorization": "Bearer not-a-token",
                                   "Content-Type": "text/plain"}, timeout=10)
        if r.status_code < 400:
            raise RuntimeError(f"hub accepted a push with a bogus token: {r.status_code}")

    def start_prometheus(self):
        port = free_port()
        host, hub_port = self.hub.removeprefix("http://").rsplit(":", 1)
        config = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s",
                       "evaluation_interval": "2s"},
            "scrape_configs": [{"job_name": "fleetgate", "honor_labels": True,
                                "static_configs": [{"targets": [f"{host}:{hub_port}"]}]}],
            # The shipped alert rules, for the Fleet health dashboard's ALERTS panels (the
            # Watchdog always fires).
            "rule_files": [str(ROOT / "compose" / "prometheus" / "rules" / "*.yml")],
        }
        cfg = self.tmp / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.spawn("prometheus", ["/usr/bin/prometheus", f"--config.file={cfg}",
                                  f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
                                  f"--web.listen-address=127.0.0.1:{port}"])
        self.prom = f"http://127.0.0.1:{port}"
        harness.wait_ready(f"{self.prom}/-/ready", "Prometheus", self.check_alive)
        log(f"prometheus at {self.prom}")

    def start_ha_store(self):
        """VictoriaMetrics behind replicas a and b, as in compose/monitoring-ha.yml; queries go
        to VictoriaMetrics. Both replicas scrape the one hub here, so every series arrives twice
        and must come out once."""
        sys.path.insert(0, str(ROOT / "tests" / "ha"))
        import ha_stack

        def spawn(name, argv):
            return self.spawn(name, argv)

        vm = ha_stack.start_store(spawn, self.tmp, 2, self.check_alive)
        hub = self.hub.removeprefix("http://")
        for replica in ("a", "b"):
            ha_stack.start_replica(spawn, self.tmp, replica, hub, vm, 2, self.check_alive,
                                   send_deadline_s=1)
        self.prom = vm
        log(f"VictoriaMetrics at {vm}, fed by Prometheus replicas a and b")


# -- Prometheus API -----------------------------------------------------------------------------

def prom_query(prom, expr):
    r = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


LABEL_VALUES_RE = re.compile(r"^label_values\((?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$")


def label_values(prom, query):
    m = LABEL_VALUES_RE.match(query.strip())
    if not m:
        raise ValueError(f"variable query is not label_values(...): {query}")
    selector, label = m.group(1), m.group(2)
    params = {"match[]": selector} if selector else {}
    r = requests.get(f"{prom}/api/v1/label/{label}/values", params=params, timeout=30)
    return sorted(r.json()["data"])


def substitute(expr, values):
    for key, val in RANGE_SUBSTITUTIONS.items():
        expr = expr.replace(key, val)
    # Longest names first so $node does not eat $nodes.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def grafana_format(var, vals):
    """What Grafana puts into a Prometheus query for this variable (one value, or All as regex)."""
    if var.get("multi") or var.get("includeAll"):
        escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in vals]
        return "(" + "|".join(escaped) + ")" if len(escaped) > 1 else escaped[0]
    return vals[0]


# -- checks ---------------------------------------------------------------------------------------

def walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v)


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def provisioned_uid(directory=DATASOURCES):
    uids = []
    for f in sorted(directory.glob("*.yml")):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            uids.append(ds["uid"])
    if len(uids) != 1:
        raise RuntimeError(f"expected exactly one provisioned datasource, found {uids}")
    return uids[0]


def validate_json(dash, uid, errors):
    title = dash.get("title", "?")
    ids = [p.get("id") for p in panels_of(dash)]
    if len(ids) != len(set(ids)) or None in ids:
        errors.append(f"{title}: panel ids not unique: {ids}")
    if not dash.get("uid"):
        errors.append(f"{title}: dashboard has no uid")
    variables = dash.get("templating", {}).get("list", [])
    if not any(v.get("name") == "node" for v in variables):
        errors.append(f"{title}: no 'node' template variable")
    for v in variables:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if not LABEL_VALUES_RE.match(q or ""):
            errors.append(f"{title}: variable {v.get('name')} is not a label_values query")
    for node in walk(dash):
        ds = node.get("datasource")
        if ds is not None and ds != {"type": "prometheus", "uid": uid}:
            errors.append(f"{title}: datasource {ds!r} is not the provisioned uid {uid}")
    for p in panels_of(dash):
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            errors.append(f"{title} / {p.get('title')}: panel without targets")
        fc = p.get("fieldConfig", {})
        units = [fc.get("defaults", {}).get("unit")]
        for o in fc.get("overrides", []):
            units += [prop["value"] for prop in o.get("properties", []) if prop["id"] == "unit"]
        for unit in units:
            if unit not in GRAFANA_UNITS:
                errors.append(f"{title} / {p.get('title')}: unknown Grafana unit {unit!r}")
        if not fc.get("defaults", {}).get("thresholds", {}).get("steps"):
            errors.append(f"{title} / {p.get('title')}: no thresholds")
        for t in p.get("targets", []):
            if not t.get("legendFormat"):
                errors.append(f"{title} / {p.get('title')}: target {t.get('refId')} no legend")


def validate_anonymous(dash, errors):
    """The Node overview is shared widely: no hostnames, addresses or identifying labels."""
    title = dash["title"]
    text = json.dumps(dash)
    if IP_RE.search(text):
        errors.append(f"{title}: contains an IP address literal")
    host = socket.gethostname()
    if host and re.search(rf"\b{re.escape(host)}\b", text):
        errors.append(f"{title}: contains this machine's hostname {host!r}")
    for p in panels_of(dash):
        for t in p.get("targets", []):
            legend = t.get("legendFormat", "")
            for label in IDENTIFYING_LABELS:
                used = re.search(rf"\b{label}\b", t.get("expr", ""))
                if "{{" + label + "}}" in legend.replace(" ", "") or used:
                    errors.append(f"{title} / {p['title']}: uses identifying label {label}")


def check_result_anonymous(title, panel, result, errors):
    host = socket.gethostname()
    for series in result:
        labels = series.get("metric", {})
        leaked = IDENTIFYING_LABELS & set(labels)
        if leaked:
            errors.append(f"{title} / {panel}: result carries identifying labels {leaked}")
        for v in labels.values():
            if IP_RE.search(v) or (host and v == host):
                errors.append(f"{title} / {panel}: result label value {v!r} identifies a host")


def run_queries(prom, dashboards, uid):
    """Returns (rows, errors). rows: (dashboard, panel, refId, query, n_series, note)."""
    rows, errors = [], []
    for path, dash in dashboards:
        title = dash["title"]
        values = {}
        for var in dash.get("templating", {}).get("list", []):
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            vals = label_values(prom, substitute(q, values))
            if not vals:
                errors.append(f"{title}: variable ${var['name']} ({q}) resolves to nothing")
                vals = ["__none__"]
            values[var["name"]] = grafana_format(var, vals)
        for p in panels_of(dash):
            if p.get("type") == "row":
                continue
            absent_reason = CANNOT_SHOW_DATA_HERE.get((title, p["title"]))
            panel_has_data = False
            for t in p.get("targets", []):
                expr = substitute(t["expr"], values)
                try:
                    result = prom_query(prom, expr)
                except ValueError as e:
                    errors.append(f"{title} / {p['title']} [{t['refId']}]: query error {e}: "
                                  f"{expr}")
                    rows.append((title, p["title"], t["refId"], expr, -1, "ERROR"))
                    continue
                n = len(result)
                panel_has_data |= n > 0
                note = ""
                if absent_reason:
                    note = "cannot show data here"
                elif n == 0:
                    errors.append(f"{title} / {p['title']} [{t['refId']}]: no data: {expr}")
                    note = "NO DATA"
                if path.name.startswith("01-"):
                    check_result_anonymous(title, p["title"], result, errors)
                rows.append((title, p["title"], t["refId"], expr, n, note))
            if absent_reason and panel_has_data:
                errors.append(f"{title} / {p['title']}: listed as unable to show data here "
                              f"({absent_reason}) but returns data; remove it from the list")
    return rows, errors


def check_deduplicated(store):
    """Both replicas scrape the same hub: the store must hold each series once (no replica
    label left) and one sample per scrape interval of the two replicas."""
    problems = []
    left = prom_query(store, 'count({replica=~".+"})')
    if left:
        problems.append(f"series still carry the replica label in VictoriaMetrics: {left}")
    # 2 s scrapes: 10 samples in 20 s from one replica, about 20 from two undeduplicated. The
    # window ends 5 s ago (remote_write batches) and asks the raw data (nocache); a store only
    # seconds old may not have 20 s yet, so it is asked again for a while.
    samples = 0.0
    for _ in range(12):
        r = requests.get(f"{store}/api/v1/query", timeout=30, params={
            "query": "max(count_over_time(node_uname_info[20s]))",
            "time": f"{time.time() - 5:.3f}", "nocache": "1"}).json()
        result = r.get("data", {}).get("result", [])
        samples = float(result[0]["value"][1]) if result else 0.0
        if samples >= 9:
            break
        time.sleep(5)
    if not 9 <= samples <= 13:
        problems.append(f"node_uname_info has {samples:.0f} samples in 20 s in VictoriaMetrics; "
                        "one replica's 2 s scrapes give 10: deduplication is not working")
    else:
        log(f"VictoriaMetrics holds each series once, {samples:.0f} samples in 20 s (2 s scrapes "
            "from two replicas, deduplicated)")
    return problems


def print_table(rows):
    w_dash = max(len(r[0]) for r in rows)
    w_panel = max(len(r[1]) for r in rows)
    print(f"{'dashboard':<{w_dash}}  {'panel':<{w_panel}}  ref  #series  query")
    for dash, panel, ref, expr, n, note in rows:
        q = expr if len(expr) <= 110 else expr[:107] + "..."
        print(f"{dash:<{w_dash}}  {panel:<{w_panel}}  {ref:<3}  {n:>7}  {q}"
              + (f"   <- {note}" if note else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, type=pathlib.Path)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--deadline", type=float, default=240,
                    help="seconds to wait for every panel to have data")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with all logs")
    ap.add_argument("--store", choices=["prometheus", "victoria-metrics"], default="prometheus",
                    help="query Prometheus, or VictoriaMetrics behind two replicas (HA layout)")
    args = ap.parse_args()

    errors = []
    uid = provisioned_uid()
    if args.store == "victoria-metrics" and provisioned_uid(HA_DATASOURCES) != uid:
        errors.append(f"the HA datasource's uid is not {uid}: the dashboards would not find it")
    gen = subprocess.run([sys.executable, str(ROOT / "grafana" / "build_dashboards.py"),
                          "--check"], capture_output=True, text=True)
    if gen.returncode != 0:
        errors.append("dashboards differ from grafana/build_dashboards.py: " + gen.stdout)
    dashboards = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text(encoding="utf-8"))
        validate_json(dash, uid, errors)
        if path.name.startswith("01-"):
            validate_anonymous(dash, errors)
        dashboards.append((path, dash))
    if len(dashboards) != 6:
        errors.append(f"expected 6 dashboards, found {len(dashboards)}")
    if errors:
        for e in errors:
            print("FAIL:", e)
        return 1

    stack = Stack(args.bin_dir, args.python, args.keep)
    atexit.register(stack.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    try:
        stack.start_hub()
        stack.start_containers()
        stack.start_triton()
        stack.start_agent()
        stack.start_gpu_pusher()
        stack.wait_for_node(stack.agent_node)
        stack.hub_outage()
        stack.wait_for_node(stack.agent_node)
        if args.store == "victoria-metrics":
            stack.start_ha_store()
        else:
            stack.start_prometheus()
        stack.provoke_push_errors()

        # Poll until every panel has data or the deadline passes; rate() windows need two
        # scrapes and the agent's first pushes need a couple of intervals.
        deadline = time.monotonic() + args.deadline
        attempt = 0
        while True:
            attempt += 1
            stack.check_alive()
            rows, errors = run_queries(stack.prom, dashboards, uid)
            if not errors or time.monotonic() > deadline:
                break
            if attempt % 5 == 1:
                log(f"attempt {attempt}: {len(errors)} problems left, first: {errors[0]}")
            time.sleep(5)
        print_table(rows)
        if args.store == "victoria-metrics":
            errors += check_deduplicated(stack.prom)
        panels = {(r[0], r[1]) for r in rows}
        log(f"{len(rows)} targets in {len(panels)} panels of {len(dashboards)} dashboards; "
            f"{len(CANNOT_SHOW_DATA_HERE)} panels cannot show data on this machine:")
        for (dash, panel), reason in CANNOT_SHOW_DATA_HERE.items():
            log(f"  {dash} / {panel}: {reason}")
        if errors:
            for e in errors:
                print("FAIL:", e)
            for name in ("hub", "agent"):
                print(f"--- {name} log (tail) ---\n{stack.tail(name)}")
            return 1
        log("every panel target returned data")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
