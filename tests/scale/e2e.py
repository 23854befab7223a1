"""Sharded scrape of one hub into existing scale-out engines, with real parts on loopback only.

A real fleetgate-hub with 40 nodes pushing text through /push; the shipped
compose/prometheus/prometheus-sharded.yml (8 shard targets in one job) with only the hub's
address and the intervals changed; VictoriaMetrics single-node (Debian victoria-metrics) as the
store every collector remote-writes to; and two collectors in turn:

  1. two vmagents in cluster mode (-promscrape.cluster.membersCount=2, memberNum 0 and 1)
     splitting the 8 shard targets between them;
  2. Prometheus in agent mode (--enable-feature=agent) scraping all 8.

Each collector adds its own `collector` label, so a series written twice (two members
scraping one shard, or one node in two shards) would show as two series or as twice the
samples. What it shows, for each collector:
  - the hub: every shard is a valid exposition, the 8 shards together are exactly the unsharded
    exposition, gzip works per shard, bad parameters get 400 naming them;
  - vmagent: each member scrapes a different, non-empty part of the 8 targets, together all 8;
  - VictoriaMetrics holds every node's 16 series exactly once (per node and in total), the
    shard targets' scrape_samples_scraped add up to exactly the unsharded exposition's samples,
    each shard target was scraped by exactly one collector member, and the hub's own metrics
    come from shard 0 only.

Deliberate differences from production, all for time: scrape interval 1 s (15 s shipped),
VictoriaMetrics shows samples at once (-search.latencyOffset=0s, 30 s by default).

Exit status 0 when everything holds, 1 otherwise.
"""

import argparse
import gzip
import pathlib
import sys
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import harness  # noqa: E402
from harness import free_port  # noqa: E402
SHARDED_YML = ROOT / "compose" / "prometheus" / "prometheus-sharded.yml"
NODES = 40
SHARDS = 8
# Per node: 14 pushed series (below) plus fleetgate_node_up, _last_push_timestamp_seconds and
# _series, which the hub adds.
PUSHED = 14
PER_NODE = PUSHED + 3


def log(msg):
    print(f"[scale-e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(what, predicate, timeout, every=0.5):
    """harness.wait_for, a failed request or an unexpected answer counting as "not yet"."""
    return harness.wait_for(what, predicate, timeout, every,
                            tolerate=(requests.RequestException, ValueError, KeyError))


def node_text(i):
    """14 series: a counter over 8 CPUs, a gauge, a histogram (3 buckets, sum, count)."""
    cpus = "".join(
        f'scale_cpu_seconds_total{{cpu="{c}"}} {i * 100 + c}\n' for c in range(8)
    )
    return (
        "# HELP scale_cpu_seconds_total CPU time.\n# TYPE scale_cpu_seconds_total counter\n"
        + cpus
        + "# TYPE scale_load gauge\n"
        + f"scale_load {i / 10}\n"
        + "# TYPE scale_latency_seconds histogram\n"
        + 'scale_latency_seconds_bucket{le="0.1"} 1\n'
        + 'scale_latency_seconds_bucket{le="1"} 2\n'
        + 'scale_latency_seconds_bucket{le="+Inf"} 3\n'
        + f"scale_latency_seconds_sum {i}\n"
        + "scale_latency_seconds_count 3\n"
    )


def samples(text):
    return sorted(line for line in text.splitlines() if line and not line.startswith("#"))


def node_samples(text):
    """Sample lines of nodes (the hub's own fleetgate_hub_* values move between scrapes)."""
    return [line for line in samples(text) if not line.startswith("fleetgate_hub_")]


class Checks:
    def __init__(self):
        self.failures = 0

    def ok(self, cond, what):
        if cond:
            print(f"ok:   {what}", flush=True)
        else:
            print(f"FAIL: {what}", flush=True)
            self.failures += 1
        return cond


def check_hub(hub, checks):
    """The hub's side of sharding, straight over HTTP."""
    whole = requests.get(f"{hub}/metrics", timeout=30).text
    union = []
    for i in range(SHARDS):
        r = requests.get(f"{hub}/metrics", params={"shard": i, "of": SHARDS}, timeout=30)
        text = r.text
        types = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        checks.ok(
            r.status_code == 200 and len(types) == len(set(types)),
            f"shard {i}/{SHARDS}: 200, one TYPE per family ({len(samples(text))} samples)",
        )
        checks.ok(
            ("fleetgate_hub_" in text) == (i == 0),
            f"shard {i}: the hub's own metrics {'present' if i == 0 else 'absent'}",
        )
        union += node_samples(text)
        z = requests.get(
            f"{hub}/metrics",
            params={"shard": i, "of": SHARDS},
            headers={"Accept-Encoding": "gzip"},
            timeout=30,
            stream=True,
        )
        raw = z.raw.read(decode_content=False)
        checks.ok(
            z.headers.get("Content-Encoding") == "gzip"
            and node_samples(gzip.decompress(raw).decode()) == node_samples(text),
            f"shard {i}: gzip body decompresses to the plain one",
        )
    checks.ok(
        sorted(union) == node_samples(whole) and len(union) == NODES * PER_NODE,
        f"the {SHARDS} shards together are the unsharded exposition ({len(union)} node samples)",
    )
    for query, name in [
        ("shard=8&of=8", "shard must be below of"),
        ("shard=1", "of is missing"),
        ("shard=0&of=2000", "of must be between 1 and 1024"),
        ("shrad=1&of=2", 'unknown query parameter "shrad"'),
    ]:
        r = requests.get(f"{hub}/metrics?{query}", timeout=10)
        checks.ok(r.status_code == 400 and name in r.text, f"?{query}: 400 naming it ({r.text!r})")
    return len(samples(whole))


def sharded_config(hub_addr, extra=""):
    """The shipped sharded scrape config for this hub, scraping every second."""
    text = SHARDED_YML.read_text()
    if text.count('"hub:8000"') != SHARDS:
        raise SystemExit(f"{SHARDED_YML} no longer lists {SHARDS} hub:8000 targets")
    text = text.replace('"hub:8000"', f'"{hub_addr}"')
    text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
    text = text.replace("scrape_timeout: 10s", "scrape_timeout: 1s")
    return text + extra


class Vm:
    def __init__(self, url):
        self.url = url

    def query(self, q):
        r = requests.get(f"{self.url}/api/v1/query", params={"query": q}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def scalar(self, q):
        res = self.query(q)
        return float(res[0]["value"][1]) if res else None


def check_store(vm, checks, collector, total_samples, members):
    """VictoriaMetrics holds what the collector (label value regex) scraped, exactly once."""
    sel = f'collector=~"{collector}"'
    # The node's own series; the hub's fleetgate_hub_* ones (some with a node label, such as
    # fleetgate_hub_quarantined_families) come from shard 0 and are checked apart.
    node_sel = f'{sel}, node=~"scale-.*", __name__!~"fleetgate_hub_.*"'
    per_node = f'count by (node) ({{{node_sel}}})'

    def all_nodes():
        res = vm.query(per_node)
        return res if len(res) == NODES and all(
            float(r["value"][1]) == PER_NODE for r in res) else None

    try:
        wait_for(f"every node's {PER_NODE} series from {collector}", all_nodes, 60)
    except TimeoutError as e:
        log(str(e))
    res = vm.query(per_node)
    counts = sorted({float(r["value"][1]) for r in res})
    if counts != [PER_NODE]:
        one = vm.query(f'{{{sel}, node="scale-00"}}')
        log("scale-00 in VictoriaMetrics: " + ", ".join(sorted(str(r["metric"]) for r in one)))
    checks.ok(
        len(res) == NODES and counts == [PER_NODE],
        f"{collector}: {len(res)} nodes in VictoriaMetrics, each with exactly {PER_NODE} series "
        f"(counts seen {counts})",
    )
    one_member = vm.query(
        f'count by (node) (count by (node, collector) ({{{node_sel}}})) > 1')
    checks.ok(not one_member, f"{collector}: every node's series came from one member only")
    # Every shard target once, by one member; their samples add up to the unsharded exposition.
    targets = vm.query(f"count by (instance) (scrape_samples_scraped{{{sel}}})")
    checks.ok(
        len(targets) == SHARDS and all(float(t["value"][1]) == 1 for t in targets),
        f"{collector}: {len(targets)} shard targets, each scraped by exactly one member",
    )
    scraped = vm.scalar(f"sum(scrape_samples_scraped{{{sel}}})")
    checks.ok(
        scraped == total_samples,
        f"{collector}: the shards' scrape_samples_scraped add up to {scraped}, "
        f"the unsharded exposition has {total_samples}",
    )
    members_seen = vm.query(f"count by (collector) (scrape_samples_scraped{{{sel}}})")
    checks.ok(
        len(members_seen) == members,
        f"{collector}: {len(members_seen)} member(s) wrote samples, {members} expected",
    )
    hub_self = vm.query(f"count by (instance) (fleetgate_hub_pushes_total{{{sel}}})")
    checks.ok(
        len(hub_self) == 1 and hub_self[0]["metric"]["instance"].endswith("/shard-0-of-8"),
        f"{collector}: the hub's own metrics come from shard 0 only ({hub_self})",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, help="directory with the release fleetgate-hub")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    procs = harness.Run("fleetgate-scale-e2e.", args.keep, log)
    tmp = procs.tmp
    checks = Checks()
    try:
        # --- hub and 40 nodes ------------------------------------------------------------------
        # Text pushes declare no interval; they must stay fresh for the whole test.
        hub_addr = procs.start_hub(pathlib.Path(args.bin_dir), args=("--stale-after", "10m"))
        hub = f"http://{hub_addr}"
        wait_for("the hub", lambda: requests.get(f"{hub}/readyz", timeout=2).ok, 20)
        enroll = (tmp / "hub" / "enroll.token").read_text().strip()
        for i in range(NODES):
            node = f"scale-{i:02d}"
            r = requests.post(f"{hub}/add_node", json={"node": node},
                              headers={"Authorization": f"Bearer {enroll}"}, timeout=10)
            r.raise_for_status()
            token = r.json()["token"]
            r = requests.post(f"{hub}/push", data=node_text(i), timeout=10, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
            r.raise_for_status()
        log(f"{NODES} nodes enrolled and pushed")
        total = check_hub(hub, checks)
        # Node samples plus the hub's own; stable from here on, as nothing pushes any more.
        total = len(samples(requests.get(f"{hub}/metrics", timeout=30).text))

        # --- VictoriaMetrics -------------------------------------------------------------------
        vm_port = free_port()
        procs.spawn("victoria-metrics", [
            "victoria-metrics", f"-storageDataPath={tmp / 'vm'}",
            f"-httpListenAddr=127.0.0.1:{vm_port}", "-retentionPeriod=1d",
            "-search.latencyOffset=0s", "-search.disableCache",
        ])
        vm = Vm(f"http://127.0.0.1:{vm_port}")
        wait_for("VictoriaMetrics", lambda: requests.get(f"{vm.url}/health", timeout=2).ok, 30)
        write = f"{vm.url}/api/v1/write"

        # --- two vmagents in cluster mode ------------------------------------------------------
        (tmp / "vmagent.yml").write_text(sharded_config(hub_addr))
        agents = []
        for member in range(2):
            port = free_port()
            procs.spawn(f"vmagent-{member}", [
                "vmagent", f"-promscrape.config={tmp / 'vmagent.yml'}",
                "-promscrape.cluster.membersCount=2", f"-promscrape.cluster.memberNum={member}",
                f"-remoteWrite.url={write}", f"-remoteWrite.label=collector=vmagent-{member}",
                f"-remoteWrite.tmpDataPath={tmp / f'vmagent-{member}'}",
                "-remoteWrite.flushInterval=1s", f"-httpListenAddr=127.0.0.1:{port}",
            ])
            agents.append(f"http://127.0.0.1:{port}")

        def targets(url):
            r = requests.get(f"{url}/api/v1/targets", timeout=5)
            active = r.json()["data"]["activeTargets"]
            if not active or any(t["health"] != "up" for t in active):
                return None
            return sorted(t["scrapeUrl"] for t in active)

        split = [wait_for(f"vmagent-{m} scraping", lambda u=u: targets(u), 30)
                 for m, u in enumerate(agents)]
        everything = sorted(split[0] + split[1])
        checks.ok(
            all(split) and not set(split[0]) & set(split[1]) and len(set(everything)) == SHARDS,
            f"the vmagents split the {SHARDS} shard targets: {len(split[0])} + {len(split[1])}",
        )
        check_store(vm, checks, "vmagent-.*", total, members=2)
        for name in [n for n in procs.procs if n.startswith("vmagent")]:
            procs.kill(name)

        # --- Prometheus in agent mode ----------------------------------------------------------
        extra = (
            "\nremote_write:\n"
            f"  - url: {write}\n"
            "    queue_config: {batch_send_deadline: 1s}\n"
        )
        config = sharded_config(hub_addr, extra).replace(
            "global:\n", "global:\n  external_labels: {collector: prometheus-agent}\n", 1)
        (tmp / "agent.yml").write_text(config)
        prom_port = free_port()
        procs.spawn("prometheus-agent", [
            "prometheus", "--enable-feature=agent", f"--config.file={tmp / 'agent.yml'}",
            f"--storage.agent.path={tmp / 'prom-agent'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ])
        prom = f"http://127.0.0.1:{prom_port}"
        up = wait_for("Prometheus agent scraping every shard",
                      lambda: targets(prom) if len(targets(prom) or []) == SHARDS else None, 30)
        checks.ok(len(up) == SHARDS, f"Prometheus in agent mode scrapes all {SHARDS} shards")
        check_store(vm, checks, "prometheus-agent", total, members=1)
    except (TimeoutError, RuntimeError, requests.RequestException, OSError) as e:
        checks.ok(False, f"{type(e).__name__}: {e}")
        for name in procs.procs:
            print(f"--- {name} log tail ---\n{procs.tail(name)}", flush=True)
    finally:
        procs.stop()
    if checks.failures:
        log(f"{checks.failures} check(s) failed")
        return 1
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
