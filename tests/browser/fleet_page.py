"""The fleet page in a real browser: Debian's chromium, driven through chromium-driver by selenium.

Starts on loopback: a real fleetgate-hub (staleness 4 s), a real fleetgate-agent (host collector,
pushing every second), and simulated nodes that enroll and push Prometheus text through the hub's
/push. Then, in the page:
- every node is listed with its state, type and series, and the summary counts match the hub;
- without the admin token nothing /metrics does not show is on the page (no hostname, IP, push
  counts, rejection messages or removed nodes);
- filtering by name, label and state, and sorting by a column, work;
- a node's detail lists its families with the series counts /metrics has;
- a node that stops pushing turns stale on screen;
- with the admin token (entered once, kept in sessionStorage, never in the URL): removing a node
  through the page takes its series off /metrics; re-admitting the real agent's node and
  restarting the agent brings it back up;
- a wrong token is refused and forgotten.

With --screenshots DIR it also writes the PNGs the README shows.
Exit status 0 when everything holds; an assertion names what did not.
"""

import argparse
import atexit
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = pathlib.Path(__file__).resolve().parents[2]
STALE_AFTER = 4  # seconds, the hub's --stale-after
WAIT = 30  # seconds, the longest any single expectation is waited for


def log(msg):
    print(f"[fleet page] {msg}", flush=True)


def eventually(what, check, timeout=WAIT, every=0.25):
    """Polls check() until it returns something truthy, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except StaleElementReferenceException:
            last = None
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Fleet:
    """The hub, the agent and the simulated nodes, all stopped at exit."""

    def __init__(self, bin_dir, workdir):
        self.bin_dir = pathlib.Path(bin_dir)
        self.dir = pathlib.Path(workdir)
        self.procs = {}
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only, whatever proxy the environment names
        self.stop_pushing = threading.Event()
        self.pushers = []

    def spawn(self, name, argv):
        logf = open(self.dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def kill(self, name):
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self):
        self.stop_pushing.set()
        for t, stop in self.pushers:
            stop.set()
            t.join(timeout=5)
        for name in list(self.procs):
            self.kill(name)

    def tail(self, name, lines=20):
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start_hub(self):
        data = self.dir / "hub"
        self.spawn("hub", [str(self.bin_dir / "fleetgate-hub"), "--listen", "127.0.0.1:0",
                           "--data-dir", str(data), "--stale-after", f"{STALE_AFTER}s"])
        addr = eventually("the hub's listen.addr",
                          lambda: (data / "listen.addr").exists()
                          and (data / "listen.addr").read_text().strip())
        self.url = f"http://{addr}"
        self.admin = (data / "admin.token").read_text().strip()
        self.enroll_token_file = data / "enroll.token"
        self.enroll_token = self.enroll_token_file.read_text().strip()
        log(f"hub at {self.url}")

    def start_agent(self):
        self.spawn("agent", [str(self.bin_dir / "fleetgate-agent"), "--hub", self.url,
                             "--enroll-token-file", str(self.enroll_token_file),
                             "--node", "real-agent", "--interval", "1s", "--collectors", "host",
                             "--label", "rack=r1", "--state-dir", str(self.dir / "agent")])

    def enroll(self, node, labels, token=None):
        r = self.http.post(f"{self.url}/add_node", json={"node": node, "labels": labels,
                                                          "hostname": f"{node}.corp.example",
                                                          "ip": "10.20.30.40"},
                           headers={"Authorization": f"Bearer {token or self.enroll_token}"})
        r.raise_for_status()
        return r.json()["token"]

    def push(self, token, text):
        return self.http.post(f"{self.url}/push", data=text.encode(),
                              headers={"Authorization": f"Bearer {token}",
                                       "Content-Type": "text/plain"})

    def simulate(self, node, labels, series, kind="gauge"):
        """Enrolls `node` and pushes `series` samples of sim_value (a `kind`) and a counter
        every second, until the returned event is set (or the node is removed). Returns
        (push token, event)."""
        token = self.enroll(node, labels)
        text = f"# TYPE sim_value {kind}\n" + "".join(
            f'sim_value{{i="{i}"}} {i}\n' for i in range(series))
        text += "# TYPE sim_pushes_total counter\nsim_pushes_total 1\n"
        r = self.push(token, text)
        assert r.status_code == 200, r.text
        stop = threading.Event()

        def loop():
            while not stop.wait(1.0) and not self.stop_pushing.is_set():
                if self.push(token, text).status_code == 401:
                    return  # removed

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.pushers.append((t, stop))
        return token, stop

    def api(self, path, admin=True):
        headers = {"Authorization": f"Bearer {self.admin}"} if admin else {}
        r = self.http.get(f"{self.url}{path}", headers=headers)
        r.raise_for_status()
        return r.json()

    def metrics(self):
        r = self.http.get(f"{self.url}/metrics")
        r.raise_for_status()
        return r.text


def browser(workdir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("FLEETGATE_CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,950",
                 f"--user-data-dir={tempfile.mkdtemp(dir=workdir, prefix='chromium-')}"]:
        opts.add_argument(flag)
    service = Service(os.environ.get("FLEETGATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


class Page:
    """What a person sees on the fleet page."""

    def __init__(self, driver, url):
        self.d = driver
        self.url = url

    def open(self):
        self.d.get(self.url + "/")
        eventually("the page to load /api/nodes",
                   lambda: self.d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))

    # The table is read in one script call: element by element, a WebDriver round trip each,
    # takes longer than the page's refresh on a busy machine.
    ROWS_JS = """
        return Array.from(document.querySelectorAll('#rows tr')).map(tr => [
            tr.dataset.node,
            Array.from(tr.cells).map(td => [td.className.split(' ').pop(), td.textContent])]);
    """

    def rows(self):
        return {node: dict(cells) for node, cells in self.d.execute_script(self.ROWS_JS)}

    def order(self):
        return [node for node, _ in self.d.execute_script(self.ROWS_JS)]

    def state(self, node):
        return self.rows().get(node, {}).get("state")

    def text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def filter(self, text, state=""):
        box = self.d.find_element(By.ID, "filter")
        box.clear()
        box.send_keys(text)
        self.d.find_element(By.CSS_SELECTOR, f"#state-filter option[value='{state}']").click()
        time.sleep(0.4)  # the filter input is debounced by 120 ms

    def sort_by(self, key):
        self.d.find_element(By.CSS_SELECTOR, f"th[data-key='{key}']").click()

    def summary(self, which):
        return self.d.find_element(By.ID, f"sum-{which}").text

    def enter_token(self, token):
        box = self.d.find_element(By.ID, "admin-token")
        box.send_keys(token)
        self.d.find_element(By.ID, "admin-login").click()

    def click_action(self, node, cls):
        self.d.find_element(By.CSS_SELECTOR, f"#rows tr[data-node='{node}'] button.{cls}").click()
        eventually("the confirmation dialog", lambda: self.d.switch_to.alert).accept()

    def screenshot(self, path):
        self.d.save_screenshot(str(path))
        log(f"screenshot {path}")


def series_on_metrics(metrics_text, node):
    return sum(1 for line in metrics_text.splitlines()
               if not line.startswith("#") and f'node="{node}"' in line
               and not line.startswith("fleetgate_"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--screenshots", help="directory to write the README's PNGs into")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="fleetgate-browser-")
    fleet = Fleet(args.bin_dir, workdir)
    driver = None

    def cleanup():
        if driver:
            driver.quit()
        fleet.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(cleanup)
    fleet.start_hub()
    fleet.start_agent()
    racks = ["r1", "r2", "r3"]
    sims = {}
    for i in range(1, 13):
        node = f"sim-{'gpu' if i % 3 == 0 else 'cpu'}-{i:02d}"
        labels = {"node_type": "gpu" if i % 3 == 0 else "cpu", "rack": racks[i % 3]}
        sims[node], _ = fleet.simulate(node, labels, series=10 * i)
    _, silence = fleet.simulate("sim-silent", {"node_type": "cpu", "rack": "r9"}, series=5)
    # sim_value is a gauge on every other node: quarantined here.
    fleet.simulate("sim-odd", {"node_type": "cpu", "rack": "r9"}, series=3, kind="counter")
    # A rejected push, shown to the admin as the node's last rejection.
    assert fleet.push(sims["sim-cpu-01"], "not a metric line\n").status_code == 400
    eventually("the real agent's first push",
               lambda: any(n["node"] == "real-agent" and n["state"] == "up"
                           for n in fleet.api("/api/nodes")["nodes"]))
    agent_view = next(n for n in fleet.api("/api/nodes")["nodes"] if n["node"] == "real-agent")

    driver = browser(workdir)
    page = Page(driver, fleet.url)
    page.open()

    # Every node is listed, with its state and type; the counts match the hub.
    rows = eventually("all 15 nodes on the page", lambda: len(page.rows()) == 15 and page.rows())
    assert rows["real-agent"]["type"] == "cpu", rows["real-agent"]
    assert rows["sim-gpu-03"]["type"] == "gpu", rows["sim-gpu-03"]
    assert rows["sim-cpu-04"]["series"] == "41", rows["sim-cpu-04"]
    assert "rack=r1" in rows["real-agent"]["labels"], rows["real-agent"]
    assert (rows["sim-odd"]["quarantined"], rows["sim-odd"]["series"]) == ("1", "1"), rows["sim-odd"]
    eventually("every node up on screen",
               lambda: all(page.state(n) == "up"
                           for n in list(sims) + ["real-agent", "sim-silent", "sim-odd"]))
    hub = fleet.api("/api/nodes")["summary"]
    eventually("the summary to match the hub",
               lambda: page.summary("up") == str(hub["up"]) and page.summary("removed") == "0")
    assert re.fullmatch(r"\d+\.\d", page.summary("rate")), page.summary("rate")
    log(f"listed: {len(rows)} nodes, summary up={page.summary('up')} stale={page.summary('stale')}")

    # Without the token: nothing /metrics does not carry.
    text = page.text()
    for secret in [agent_view["hostname"], agent_view["ip"], "corp.example", "10.20.30.40",
                   "not a metric line"]:
        assert secret and secret not in text and secret not in driver.page_source, secret
    assert not driver.find_elements(By.CSS_SELECTOR, "#rows button.remove")
    assert rows["sim-cpu-01"]["ratio"] == "–" and rows["sim-cpu-01"]["rejection"] == "–"
    assert driver.find_element(By.ID, "admin-form").is_displayed()
    assert not driver.find_element(By.ID, "admin-on").is_displayed()

    # Filtering by label, name and state.
    page.filter("rack=r2")
    got = set(page.rows())
    want = {n for n in sims if int(n[-2:]) % 3 == 1}  # racks[i % 3]
    assert got == want, (got, want)
    page.filter("gpu")
    assert set(page.rows()) == {n for n in sims if "gpu" in n}, page.rows()
    page.filter("real")
    assert set(page.rows()) == {"real-agent"}, page.rows()
    page.filter("sim cpu-1")
    assert set(page.rows()) == {"sim-cpu-10", "sim-cpu-11"}, page.rows()
    page.filter("")

    # Sorting by series, both ways.
    def series_column():
        return [int(cells["series"].replace(",", ""))
                for _, cells in driver.execute_script(Page.ROWS_JS) for cells in [dict(cells)]]

    page.sort_by("series")
    assert series_column() == sorted(series_column()), series_column()
    page.sort_by("series")
    assert series_column() == sorted(series_column(), reverse=True), series_column()
    page.sort_by("node")

    # The real agent's detail: families with the series counts /metrics has.
    driver.find_element(By.CSS_SELECTOR, "#rows tr[data-node='real-agent'] button.link").click()
    families = eventually("the detail's families", lambda: {
        name: int(series.replace(",", "")) for name, _, series in driver.execute_script(
            "return Array.from(document.querySelectorAll('#families tbody tr'))"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent));")})
    metrics = fleet.metrics()
    cpu_on_metrics = sum(1 for line in metrics.splitlines()
                         if line.startswith("node_cpu_seconds_total{") and 'node="real-agent"' in line)
    assert families.get("node_cpu_seconds_total") == cpu_on_metrics > 0, (
        families.get("node_cpu_seconds_total"), cpu_on_metrics)
    assert "node_load1" in families, sorted(families)[:20]
    log(f"detail: {len(families)} families, node_cpu_seconds_total {cpu_on_metrics} series")
    if args.screenshots:
        page.screenshot(pathlib.Path(args.screenshots) / "fleet-node-detail.png")
    driver.find_element(By.ID, "detail-close").click()

    # A node that stops pushing turns stale on screen.
    silence.set()
    eventually("sim-silent to turn stale on screen", lambda: page.state("sim-silent") == "stale",
               timeout=STALE_AFTER + 20)
    assert page.summary("stale") == "1", page.summary("stale")
    log("sim-silent stopped pushing and turned stale on screen")
    if args.screenshots:
        page.screenshot(pathlib.Path(args.screenshots) / "fleet-page.png")

    # A wrong token is refused and forgotten.
    page.enter_token("not-the-admin-token-0000")
    eventually("the refusal", lambda: "refused" in driver.find_element(By.ID, "status").text)
    assert driver.execute_script("return sessionStorage.getItem('fleetgate.adminToken')") is None
    assert not driver.find_elements(By.CSS_SELECTOR, "#rows button.remove")

    # The admin token: entered once, kept for the session only, never in the URL.
    page.enter_token(fleet.admin)
    eventually("admin actions", lambda: driver.find_elements(By.CSS_SELECTOR, "#rows button.remove"))
    assert fleet.admin not in driver.current_url
    assert not driver.find_element(By.ID, "admin-form").is_displayed()
    assert driver.find_element(By.ID, "admin-on").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('fleetgate.adminToken')") == fleet.admin
    assert driver.execute_script("return localStorage.length") == 0
    rows = page.rows()
    assert rows["sim-cpu-01"]["rejection"].startswith("400"), rows["sim-cpu-01"]
    assert rows["sim-cpu-04"]["ratio"] == "0%", rows["sim-cpu-04"]  # text pushes are full pushes
    assert "sim_value is counter here but gauge" in rows["sim-odd"]["rejection"], rows["sim-odd"]
    assert re.fullmatch(r"\d+%", rows["real-agent"]["ratio"]), rows["real-agent"]
    page.open()  # a reload keeps the session's token
    eventually("admin actions after a reload",
               lambda: driver.find_elements(By.CSS_SELECTOR, "#rows button.remove"))

    # Removing a simulated node through the page takes its series off /metrics.
    assert series_on_metrics(fleet.metrics(), "sim-gpu-06") == 61
    page.click_action("sim-gpu-06", "remove")
    eventually("sim-gpu-06 removed on screen", lambda: page.state("sim-gpu-06") == "removed")
    assert series_on_metrics(fleet.metrics(), "sim-gpu-06") == 0
    assert page.summary("removed") == "1"
    log("sim-gpu-06 removed through the page; its series left /metrics")

    # The real agent: removed through the page, re-admitted, restarted: back up.
    page.click_action("real-agent", "remove")
    eventually("real-agent removed on screen", lambda: page.state("real-agent") == "removed")
    assert series_on_metrics(fleet.metrics(), "real-agent") == 0
    eventually("the agent to notice", lambda: "pushing stopped" in fleet.tail("agent", 50))
    page.click_action("real-agent", "readmit")
    eventually("real-agent re-admitted (stale until it enrolls)",
               lambda: page.state("real-agent") == "stale")
    fleet.kill("agent")
    fleet.start_agent()
    eventually("the restarted agent up on screen", lambda: page.state("real-agent") == "up")
    assert series_on_metrics(fleet.metrics(), "real-agent") > 0
    log("real-agent removed, re-admitted and back after its agent restarted")
    if args.screenshots:
        page.screenshot(pathlib.Path(args.screenshots) / "fleet-page-admin.png")

    # Forgetting the token goes back to the public view, where removed nodes are not listed.
    driver.find_element(By.ID, "admin-logout").click()
    eventually("the public view", lambda: "sim-gpu-06" not in page.rows() and page.rows())
    assert driver.execute_script("return sessionStorage.getItem('fleetgate.adminToken')") is None

    # Pages of 100 rows: 110 more nodes (enrolled, never pushed) make two pages.
    for i in range(110):
        fleet.enroll(f"bulk-{i:03d}", {"node_type": "cpu", "rack": "r8"})
    total = len(fleet.api("/api/nodes", admin=False)["nodes"])
    eventually("the first of two pages",
               lambda: driver.find_element(By.ID, "page-info").text == f"1–100 of {total}")
    assert len(page.rows()) == 100
    assert not driver.find_element(By.ID, "next").get_attribute("disabled")
    driver.find_element(By.ID, "next").click()
    assert driver.find_element(By.ID, "page-info").text == f"101–{total} of {total}"
    assert len(page.rows()) == total - 100
    assert driver.find_element(By.ID, "next").get_attribute("disabled")
    page.filter("r8")
    assert driver.find_element(By.ID, "page-info").text == f"1–100 of 110 ({total} in all)"
    log(f"paged: {total} nodes in pages of 100")

    for name, proc in fleet.procs.items():
        assert proc.poll() is None, f"{name} exited: {fleet.tail(name)}"
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
