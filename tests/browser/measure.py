"""How the fleet page copes with a large fleet: a benchmark, not a test (it asserts nothing about
time). Prints JSON figures.

Seeds a hub's data directory with N identities (default 10,000; writing them through /add_node
would rewrite nodes.json N times), starts the hub, has every node push a small text snapshot,
then measures on loopback:
- GET /api/nodes: bytes and seconds, public and admin;
- in a real chromium: one refresh of the page (fetch, parse, render), a filter, a sort and a
  page turn, each timed inside the page with performance.now(), median of several runs, and
  the page's JS heap.

Usage: .venv/bin/python tests/browser/measure.py --hub-bin target/release/fleetgate-hub [--nodes N]
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fleet_page import Page, browser, eventually  # noqa: E402


def seed(data_dir, nodes):
    """nodes.json with `nodes` identities whose push tokens are known."""
    data_dir.mkdir(parents=True)
    identities = []
    tokens = {}
    for i in range(nodes):
        node = f"node-{i:05d}"
        token = f"push-token-{i:05d}-0123456789"
        tokens[node] = token
        identities.append({
            "node": node,
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
            "labels": {"node_type": "gpu" if i % 4 == 0 else "cpu", "rack": f"r{i % 50}",
                       "dc": ["fra", "ams", "par"][i % 3]},
            "hostname": f"{node}.example", "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "removed": False, "epoch": 1,
        })
    (data_dir / "nodes.json").write_text(json.dumps({"version": 1, "nodes": identities}))
    return tokens


def timed(f):
    t0 = time.monotonic()
    out = f()
    return out, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub-bin", required=True)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--series", type=int, default=20, help="series per node")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="fleetgate-measure-"))
    data = work / "hub"
    tokens = seed(data, args.nodes)
    log = open(work / "hub.log", "wb")
    # A long staleness window: the pushes below happen once.
    hub = subprocess.Popen([args.hub_bin, "--listen", "127.0.0.1:0", "--data-dir", str(data),
                            "--stale-after", "1h"], stdout=log, stderr=subprocess.STDOUT)
    driver = None
    try:
        addr = eventually("listen.addr", lambda: (data / "listen.addr").exists()
                          and (data / "listen.addr").read_text().strip(), timeout=60)
        url = f"http://{addr}"
        admin = (data / "admin.token").read_text().strip()
        http = requests.Session()
        http.trust_env = False
        text = "# TYPE bench_value gauge\n" + "".join(
            f'bench_value{{i="{i}"}} {i}\n' for i in range(args.series))

        def push(node):
            s = requests.Session()
            s.trust_env = False
            r = s.post(f"{url}/push", data=text, headers={
                "Authorization": f"Bearer {tokens[node]}", "Content-Type": "text/plain"})
            r.raise_for_status()

        nodes = list(tokens)
        _, push_s = timed(lambda: list(concurrent.futures.ThreadPoolExecutor(8).map(push, nodes)))
        # A few silent and removed nodes so every state is on the page.
        for node in nodes[:args.nodes // 100]:
            http.post(f"{url}/remove_node", json={"node": node},
                      headers={"Authorization": f"Bearer {admin}"}).raise_for_status()

        figures = {"nodes": args.nodes, "series_per_node": args.series + 0,
                   "date": time.strftime("%Y-%m-%d"), "push_all_seconds": round(push_s, 1)}
        for who, headers in [("public", {}), ("admin", {"Authorization": f"Bearer {admin}"})]:
            runs = []
            for _ in range(args.runs):
                r, s = timed(lambda: http.get(f"{url}/api/nodes", headers=headers))
                r.raise_for_status()
                runs.append(s)
            figures[f"api_nodes_{who}_bytes"] = len(r.content)
            figures[f"api_nodes_{who}_seconds_median"] = round(statistics.median(runs), 3)
            assert len(r.json()["nodes"]) == args.nodes - (args.nodes // 100 if who == "public" else 0)

        driver = browser(str(work))
        page = Page(driver, url)
        page.open()
        driver.execute_script(
            "sessionStorage.setItem('fleetgate.adminToken', arguments[0]);", admin)
        page.open()
        eventually("admin view", lambda: driver.execute_script("return fleet && fleet.admin"))

        def in_page(script, runs=args.runs):
            out = []
            for _ in range(runs):
                out.append(driver.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "const t0 = performance.now();"
                    f"Promise.resolve((async () => {{ {script} }})())"
                    ".then(() => done(performance.now() - t0));"))
            return round(statistics.median(out), 1)

        driver.set_script_timeout(120)
        figures["page_refresh_ms"] = in_page("await refresh();")
        figures["page_filter_ms"] = in_page(
            "document.getElementById('filter').value = 'rack=r8 gpu'; page = 0; applyView();")
        figures["page_filter_rows"] = len(page.rows())
        figures["page_clear_filter_ms"] = in_page(
            "document.getElementById('filter').value = ''; page = 0; applyView();")
        figures["page_sort_ms"] = in_page("sortKey = 'series'; sortDir = -sortDir; applyView();")
        figures["page_next_page_ms"] = in_page("page += 1; showPage();")
        figures["page_rows_in_dom"] = len(page.rows())
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        if driver:
            driver.quit()
        hub.terminate()
        hub.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("SE_OFFLINE", "true")
    sys.exit(main())
