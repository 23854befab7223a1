"""End-to-end proof of the HA layout with real parts, all on loopback.

Two fleetgate-hub processes (A and B, one enrollment token), two Prometheus replicas (each
scraping its own hub, external label replica=a|b, remote-writing to VictoriaMetrics) and
VictoriaMetrics deduplicating them, all configured from the shipped files (ha_stack.py). One
real fleetgate-agent and NODES simulated nodes (fleetgate-loadtest --hub-url A,B) push every
snapshot to both hubs.

Then: hub A is killed with SIGKILL for OUTAGE seconds and started again on its address and data
dir. Throughout, every 2 s, VictoriaMetrics is asked for count(count by (node) (node_uname_info))
and for the number of the simulated nodes' series. Afterwards the raw samples of every node's
node_uname_info (and one counter of each simulated node) are exported from VictoriaMetrics and
their gaps measured. Then the agent's deregister must remove its node from both hubs.

What must hold:
- every sample counts every node and every simulated series, except within two scrape
  intervals of the kill, where the staleness markers that replica A writes for hub A's series
  may hide a node until replica B's next sample (reported, never longer);
- no node's series has a gap between samples longer than two scrape intervals;
- after A is back, the agent pushes to A again within two push intervals, with the token A
  issued before (no second enrollment);
- deregister removes the node from both hubs (and it leaves VictoriaMetrics' current view).

Exit status 0 when all of it holds, 1 otherwise.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import requests

import ha_stack

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "lib"))
import harness  # noqa: E402

# Push and scrape interval, seconds: short, yet long enough that on a small, busy machine a
# scrape of 25,000 series and its remote write finish well within it.
INTERVAL = 5
# Queries look this far back: a scrape, then remote_write's 1 s batches, with room for a slow
# machine.
LAG = INTERVAL + 3


def log(msg):
    print(f"[ha] {msg}", flush=True)


class Stack(harness.Run):
    """Every process the test starts; stop() ends them all."""

    def __init__(self, bin_dir, keep):
        super().__init__("fleetgate-ha-", keep, log)
        self.bin_dir = bin_dir
        self.enroll_token = "ha-enroll-" + harness.suffix(24)

    def start_hub(self, name, listen="127.0.0.1:0"):
        addr = super().start_hub(self.bin_dir, name, listen, enroll_token=self.enroll_token)
        harness.wait_ready(f"http://{addr}/readyz", name, lambda: self.check_alive(name))
        return addr

    def admin(self, name):
        return (self.tmp / name / "admin.token").read_text().strip()


def vm_query(vm, expr, at):
    r = requests.get(f"{vm}/api/v1/query",
                     params={"query": expr, "time": f"{at:.3f}", "nocache": "1"}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"VictoriaMetrics: {expr}: {body}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def node_state(addr, admin, node):
    r = requests.get(f"http://{addr}/nodes", headers={"Authorization": f"Bearer {admin}"},
                     timeout=10)
    r.raise_for_status()
    return next((n["state"] for n in r.json() if n["node"] == node), None)


def serves(addr, node):
    """Whether the hub at addr serves a snapshot of node (its node_uname_info series)."""
    try:
        text = requests.get(f"http://{addr}/metrics", timeout=5).text
    except requests.RequestException:
        return False
    label = f'node="{node}"'
    return any(line.startswith("node_uname_info{") and label in line
               for line in text.splitlines())


class Sampler(threading.Thread):
    """Asks VictoriaMetrics every 2 s how many nodes and simulated series it sees."""

    NODES = "count(count by (node) (node_uname_info))"
    # Every CPU and mode of every simulated node: a family with many series per node, cheap
    # enough to count every 2 s on a small machine.
    SIM_SERIES = 'count(node_cpu_seconds_total{node=~"lt-.*"})'

    def __init__(self, vm):
        super().__init__(daemon=True)
        self.vm = vm
        self.samples = []  # (evaluated at, nodes, simulated series)
        self.errors = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(2.0):
            at = time.time() - LAG
            try:
                self.samples.append((at, vm_query(self.vm, self.NODES, at),
                                     vm_query(self.vm, self.SIM_SERIES, at)))
            except (requests.RequestException, RuntimeError, ValueError) as e:
                self.errors.append(f"{at:.0f}: {e}")


def export_gaps(vm, match, start, end):
    """Per series of `match`: (labels, real samples, largest gap in seconds, first, last)."""
    r = requests.post(f"{vm}/api/v1/export",
                      data={"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"},
                      timeout=60)
    r.raise_for_status()
    out = []
    for line in r.text.splitlines():
        series = json.loads(line)
        # Staleness markers come out as null: they are not samples.
        ts = [t / 1000 for t, v in zip(series["timestamps"], series["values"]) if v is not None]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        out.append((series["metric"], len(ts), max(gaps, default=float("inf")),
                    ts[0] if ts else None, ts[-1] if ts else None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, type=pathlib.Path)
    ap.add_argument("--nodes", type=int, default=50, help="simulated nodes (at least 50)")
    ap.add_argument("--outage", type=float, default=60, help="seconds hub A stays down")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with all logs")
    args = ap.parse_args()

    stack = Stack(args.bin_dir.resolve(), args.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failures = []
    try:
        return run(stack, args, failures)
    finally:
        stack.stop()


def run(stack, args, failures):
    agent_node = f"ha-agent-{stack.id}"
    addr_a = stack.start_hub("hub-a")
    addr_b = stack.start_hub("hub-b")
    log(f"hub A {addr_a}, hub B {addr_b}")
    vm = ha_stack.start_store(stack.spawn, stack.tmp, INTERVAL, stack.check_alive)
    replicas = {}
    for replica, addr in (("a", addr_a), ("b", addr_b)):
        replicas[replica] = ha_stack.start_replica(stack.spawn, stack.tmp, replica, addr, vm,
                                                   INTERVAL, stack.check_alive, send_deadline_s=1)
    log(f"VictoriaMetrics {vm}, Prometheus replicas a and b")

    hubs = f"http://{addr_a},http://{addr_b}"
    token_file = stack.tmp / "hub-a" / "enroll.token"
    state = stack.tmp / "agent-state"
    stack.spawn("agent", [str(stack.bin_dir / "fleetgate-agent"), "--hub", hubs,
                          "--enroll-token-file", str(token_file), "--state-dir", str(state),
                          "--node", agent_node, "--interval", f"{INTERVAL}s",
                          "--collectors", "host"])
    # The rig runs longer than the test needs; it is stopped at the end.
    stack.spawn("loadtest", [str(stack.bin_dir / "fleetgate-loadtest"), "--hub-url", hubs,
                             "--enroll-token-file", str(token_file), "--nodes", str(args.nodes),
                             "--cpus", "2", "--containers", "1", "--gpus", "0",
                             "--interval", f"{INTERVAL}s", "--push", "values",
                             "--duration", "900s", "--scrape-interval", "600s",
                             "--progress", "30s"])
    want_nodes = args.nodes + 1
    deadline = time.monotonic() + 120
    while True:
        stack.check_alive()
        at = time.time() - LAG
        seen = vm_query(vm, Sampler.NODES, at)
        if seen == want_nodes:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"VictoriaMetrics sees {seen} of {want_nodes} nodes after 120 s\n"
                               f"agent:\n{stack.tail('agent')}\nloadtest:\n{stack.tail('loadtest')}")
        time.sleep(1)
    # Let the values pushes settle and every series be scraped a few times by both replicas.
    time.sleep(3 * INTERVAL)
    want_sim = vm_query(vm, Sampler.SIM_SERIES, time.time() - LAG)
    log(f"VictoriaMetrics sees all {want_nodes} nodes and {want_sim:.0f} simulated series")
    tokens = {n: next((state / "hubs").glob(f"{h.replace(':', '_')}-*")).joinpath("push.token")
              .read_text() for n, h in (("a", addr_a), ("b", addr_b))}

    sampler = Sampler(vm)
    sampler.start()
    window_start = time.time()
    time.sleep(20)

    stack.kill("hub-a", signal.SIGKILL, timeout=10)
    killed_at = time.time()
    log(f"hub A killed with SIGKILL; down for {args.outage:.0f} s")
    end = time.monotonic() + args.outage
    while time.monotonic() < end:
        stack.check_alive("hub-b", "agent", "loadtest", "victoria-metrics", "prometheus-a",
                    "prometheus-b")
        time.sleep(1)
    stack.start_hub("hub-a", addr_a)
    back_at = time.monotonic()
    while not serves(addr_a, agent_node):
        if time.monotonic() - back_at > 30:
            failures.append("the agent did not push to hub A within 30 s of its restart")
            break
        time.sleep(0.1)
    returned = time.monotonic() - back_at
    log(f"hub A back; the agent's node is on it again after {returned:.1f} s "
        f"(interval {INTERVAL} s)")
    if returned > 2 * INTERVAL:
        failures.append(f"the agent came back to hub A after {returned:.1f} s, more than two "
                        f"intervals ({2 * INTERVAL} s)")
    time.sleep(30)
    sampler.stop_event.set()
    sampler.join(timeout=30)
    window_end = time.time() - LAG

    # -- the agent used the tokens it had: one enrollment per hub, none after the restart ------
    agent_log = (stack.tmp / "agent.log").read_text(errors="replace")
    enrolled = agent_log.count("enrolled; push token stored")
    if enrolled != 2:
        failures.append(f"the agent enrolled {enrolled} times (want once per hub)")
    for n, h in (("a", addr_a), ("b", addr_b)):
        path = next((state / "hubs").glob(f"{h.replace(':', '_')}-*")) / "push.token"
        if path.read_text() != tokens[n]:
            failures.append(f"the agent's push token for hub {n.upper()} changed")

    # -- live samples ------------------------------------------------------------------------
    samples = sampler.samples
    if sampler.errors:
        failures.append(f"{len(sampler.errors)} queries failed, first: {sampler.errors[0]}")
    grace_end = killed_at + 2 * INTERVAL
    short = [(at, n, s) for at, n, s in samples if n != want_nodes or s != want_sim]
    outside = [x for x in short if not killed_at <= x[0] <= grace_end]
    inside = [x for x in short if killed_at <= x[0] <= grace_end]
    log(f"{len(samples)} samples every 2 s over {window_end - window_start:.0f} s: "
        f"{len(samples) - len(short)} with all {want_nodes} nodes and {want_sim:.0f} series, "
        f"{len(inside)} short within {2 * INTERVAL} s of the kill (replica A's staleness "
        f"markers), {len(outside)} short elsewhere")
    for at, n, s in short:
        log(f"  at kill{at - killed_at:+.1f} s: {n:.0f} nodes, {s:.0f} simulated series")
    if len(samples) < (window_end - window_start) / 2 * 0.8:
        failures.append(f"only {len(samples)} samples were taken")
    if outside:
        failures.append(f"{len(outside)} samples missed nodes or series outside the kill's "
                        f"staleness window")
        # What each replica saw of its hub then: a failed scrape of the surviving hub (a busy
        # machine) shows here.
        for replica, url in replicas.items():
            for what in ("up", "scrape_duration_seconds"):
                r = requests.get(f"{url}/api/v1/query_range", timeout=30, params={
                    "query": f'{what}{{job="fleetgate"}}', "start": window_start,
                    "end": window_end, "step": INTERVAL}).json()
                values = [(float(t) - killed_at, v) for series in r["data"]["result"]
                          for t, v in series["values"]]
                log(f"  replica {replica} {what}: " + ", ".join(
                    f"{t:+.0f}s={float(v):.2f}" for t, v in values))

    # -- raw samples: gaps -------------------------------------------------------------------
    worst = (0.0, None)
    for match in ("node_uname_info", 'node_context_switches_total{node=~"lt-.*"}'):
        series = export_gaps(vm, match, window_start, window_end)
        want = want_nodes if match == "node_uname_info" else args.nodes
        if len(series) != want:
            failures.append(f"{match}: {len(series)} series exported, want {want}")
        for labels, n, gap, first, last in series:
            edge = max(first - window_start, window_end - last) if n else float("inf")
            gap = max(gap, edge)
            if gap > worst[0]:
                worst = (gap, labels.get("node"))
            if gap > 2 * INTERVAL:
                failures.append(f"{match} of {labels.get('node')}: a gap of {gap:.1f} s "
                                f"(more than two scrape intervals)")
    log(f"largest gap between samples of any node: {worst[0]:.2f} s ({worst[1]}); "
        f"limit {2 * INTERVAL} s")

    # -- deregister: the node leaves both hubs -------------------------------------------------
    agent = stack.procs.pop("agent")
    agent.send_signal(signal.SIGTERM)
    if agent.wait(timeout=30) != 0:
        failures.append(f"the agent exited with {agent.returncode} on SIGTERM")
    out = subprocess.run([str(stack.bin_dir / "fleetgate-agent"), "deregister", "--state-dir",
                          str(state)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "RUST_LOG": "info"})
    if out.returncode != 0 or "deregistered from 2 of 2 hubs" not in out.stderr:
        failures.append(f"deregister exited {out.returncode}:\n{out.stderr}")
    for name, addr in (("hub-a", addr_a), ("hub-b", addr_b)):
        st = node_state(addr, stack.admin(name), agent_node)
        if st != "removed" or serves(addr, agent_node):
            failures.append(f"{name}: the node is {st} after deregister")
    gone = None
    for _ in range(60):
        if vm_query(vm, Sampler.NODES, time.time() - LAG) == want_nodes - 1:
            gone = True
            break
        time.sleep(1)
    if not gone:
        failures.append("VictoriaMetrics still counts the deregistered node after 60 s")
    else:
        log("deregister removed the node from both hubs; VictoriaMetrics counts "
            f"{want_nodes - 1} nodes")

    stack.check_alive("loadtest")
    if failures:
        for f in failures:
            print("FAIL:", f)
        for name in ("hub-a", "hub-b", "loadtest", "prometheus-a"):
            print(f"--- {name} log (tail) ---\n{stack.tail(name)}")
        return 1
    log("every node stayed present, no gap over two intervals, agent back on A, deregistered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
