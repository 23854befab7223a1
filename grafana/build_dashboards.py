#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json, the six Fleetgate dashboards.

The JSON files are committed (Grafana provisions them as they are); this script is their source so
that every panel shares one datasource reference, one legend style and one layout. Edit here, run
`python3 grafana/build_dashboards.py`, commit both. tests/dashboards/ checks that the committed JSON
matches this script's output and that every query returns data from a real hub.

Metric names are the exporters' own (node_exporter, dcgm-exporter, cAdvisor, Triton) plus the
hub's fleetgate_* families; every series the hub serves carries node="<identity>", and dashboards
select and label by that identity only, never by hostname or address.
"""

import json
import pathlib
import sys

DATASOURCE_UID = "fleetgate-prometheus"
DS = {"type": "prometheus", "uid": DATASOURCE_UID}
OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
RATE = "$__rate_interval"


def thresholds(*steps):
    """steps: (value, color) pairs after the green base."""
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


WARN_PCT = thresholds((80, "orange"), (90, "red"))
WARN_RATIO = thresholds((0.8, "orange"), (0.9, "red"))
NO_THRESHOLDS = thresholds()


def target(expr, legend="", instant=False, table=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "range": not instant}
    if instant:
        t["instant"] = True
    if table:
        t["format"] = "table"
    return t


class Board:
    """Collects panels left to right, top to bottom on Grafana's 24-column grid."""

    def __init__(self, uid, title, description, tags, variables):
        self.uid, self.title, self.description = uid, title, description
        self.tags, self.variables = tags, variables
        self.panels, self.x, self.y, self.row_h = [], 0, 0, 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "gridPos": self._place(24, 1), "panels": []})
        self.x, self.y, self.row_h = 0, self.y + 1, 0

    def panel(self, kind, title, targets, unit, w=12, h=8, description="",
              steps=NO_THRESHOLDS, minimum=None, maximum=None, stack=False, options=None,
              mappings=None, transformations=None, decimals=None):
        defaults = {"unit": unit, "thresholds": steps, "color": {"mode": "palette-classic"}}
        if kind in ("stat", "gauge", "bargauge"):
            defaults["color"] = {"mode": "thresholds"}
        if minimum is not None:
            defaults["min"] = minimum
        if maximum is not None:
            defaults["max"] = maximum
        if decimals is not None:
            defaults["decimals"] = decimals
        if mappings:
            defaults["mappings"] = mappings
        if kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
                "showPoints": "never", "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                "thresholdsStyle": {"mode": "off" if steps is NO_THRESHOLDS else "dashed"},
            }
        panel_options = {
            "timeseries": {"legend": {"displayMode": "table", "placement": "bottom",
                                      "calcs": ["mean", "max", "lastNotNull"], "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}},
            "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value", "graphMode": "area", "textMode": "auto",
                     "justifyMode": "auto", "orientation": "auto"},
            "gauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                      "showThresholdMarkers": True, "showThresholdLabels": False},
            "bargauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                         "displayMode": "gradient", "orientation": "horizontal",
                         "showUnfilled": True},
            "table": {"showHeader": True, "cellHeight": "sm",
                      "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
        }[kind]
        panel_options.update(options or {})
        refs = iter("ABCDEFGHIJKLMNOP")
        for t in targets:
            t["refId"] = next(refs)
        panel = {
            "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": self._place(w, h), "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": panel_options,
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)

    def json(self):
        for i, p in enumerate(self.panels, start=1):
            p["id"] = i
        links = [{"title": "Fleetgate", "type": "dashboards", "tags": ["fleetgate"],
                  "asDropdown": True, "includeVars": False, "keepTime": True}]
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["fleetgate"] + self.tags, "timezone": "", "editable": True,
            "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39, "version": 1,
            "time": {"from": "now-3h", "to": "now"}, "fiscalYearStartMonth": 0,
            "links": links, "annotations": {"list": []}, "liveNow": False,
            "templating": {"list": self.variables}, "panels": self.panels,
        }


def variable(name, label, query, multi=False, include_all=False):
    return {
        "type": "query", "name": name, "label": label, "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery",
                  "qryType": 1},
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": include_all,
        "current": {}, "options": [], "hide": 0, "regex": "", "skipUrlSync": False,
    }


def node_overview():
    n = 'node=~"$node"'
    b = Board("fleetgate-node-overview", "Fleetgate / Node overview",
              "RAM, CPU, swap and VRAM of every server in one view. Servers appear by their "
              "Fleetgate node identity only; no hostnames or addresses are shown.",
              ["overview"],
              [variable("node", "Node", "label_values(fleetgate_node_up, node)", True, True)])
    ram = (f"100 * (1 - sum by (node) (node_memory_MemAvailable_bytes{{{n}}})"
           f" / sum by (node) (node_memory_MemTotal_bytes{{{n}}}))")
    cpu = f'100 * (1 - avg by (node) (rate(node_cpu_seconds_total{{mode="idle", {n}}}[{RATE}])))'
    swap = (f"sum by (node) (node_memory_SwapTotal_bytes{{{n}}})"
            f" - sum by (node) (node_memory_SwapFree_bytes{{{n}}})")
    vram = (f"100 * sum by (node) (DCGM_FI_DEV_FB_USED{{{n}}})"
            f" / sum by (node) (DCGM_FI_DEV_FB_USED{{{n}}} + DCGM_FI_DEV_FB_FREE{{{n}}})")
    b.row("Now")
    b.panel("bargauge", "RAM used", [target(ram, "{{node}}", instant=True)], "percent", w=6,
            steps=WARN_PCT, minimum=0, maximum=100,
            description="(MemTotal - MemAvailable) / MemTotal per node.")
    b.panel("bargauge", "CPU busy", [target(cpu, "{{node}}", instant=True)], "percent", w=6,
            steps=WARN_PCT, minimum=0, maximum=100,
            description="Share of all cores not idle, per node.")
    b.panel("bargauge", "Swap used", [target(swap, "{{node}}", instant=True)], "bytes", w=6,
            steps=thresholds((1 << 30, "orange"), (4 << 30, "red")), minimum=0)
    b.panel("bargauge", "VRAM used", [target(vram, "{{node}}", instant=True)], "percent", w=6,
            steps=WARN_PCT, minimum=0, maximum=100,
            description="Framebuffer used over used + free, summed over a node's GPUs.")
    b.row("Every node")
    b.panel("table", "Per node", [
        target(ram, "RAM used %", instant=True, table=True),
        target(cpu, "CPU busy %", instant=True, table=True),
        target(swap, "Swap used", instant=True, table=True),
        target(vram, "VRAM used %", instant=True, table=True),
        target(f"sum by (node) (fleetgate_node_up{{{n}}})", "Up", instant=True, table=True),
    ], "percent", w=24, h=8, steps=WARN_PCT, transformations=[
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {"Time": True},
            "renameByName": {"node": "Node", "Value #A": "RAM used %", "Value #B": "CPU busy %",
                             "Value #C": "Swap used", "Value #D": "VRAM used %",
                             "Value #E": "Up"}}},
    ], options={"sortBy": [{"displayName": "RAM used %", "desc": True}]})
    b.panels[-1]["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": "Swap used"},
         "properties": [{"id": "unit", "value": "bytes"}]},
        {"matcher": {"id": "byName", "options": "Up"},
         "properties": [{"id": "unit", "value": "none"},
                        {"id": "mappings", "value": [{"type": "value", "options": {
                            "0": {"text": "stale", "color": "red"},
                            "1": {"text": "up", "color": "green"}}}]}]},
    ]
    b.row("Over time")
    b.panel("timeseries", "RAM used", [target(ram, "{{node}}")], "percent", steps=WARN_PCT,
            minimum=0, maximum=100)
    b.panel("timeseries", "CPU busy", [target(cpu, "{{node}}")], "percent", steps=WARN_PCT,
            minimum=0, maximum=100)
    b.panel("timeseries", "Swap used", [target(swap, "{{node}}")], "bytes", minimum=0)
    b.panel("timeseries", "VRAM used", [
        target(f"sum by (node) (DCGM_FI_DEV_FB_USED{{{n}}}) * 1048576", "{{node}}")],
        "bytes", minimum=0, description="Framebuffer in use, summed over a node's GPUs.")
    return b


def cpu_node():
    n = 'node="$node"'
    b = Board("fleetgate-cpu-node", "Fleetgate / CPU node",
              "One server in detail (node_exporter metrics pushed by the agent).", ["node"],
              [variable("node", "Node", "label_values(node_uname_info, node)")])
    cores = f'count(node_cpu_seconds_total{{mode="idle", {n}}})'
    b.row("Summary")
    b.panel("stat", "Uptime", [target(f"time() - node_boot_time_seconds{{{n}}}", "uptime",
                                      instant=True)], "s", w=4, h=4)
    b.panel("stat", "CPU cores", [target(cores, "cores", instant=True)], "short", w=4, h=4)
    b.panel("stat", "RAM total", [target(f"node_memory_MemTotal_bytes{{{n}}}", "RAM",
                                         instant=True)], "bytes", w=4, h=4)
    b.panel("gauge", "CPU busy", [target(
        f'1 - avg(rate(node_cpu_seconds_total{{mode="idle", {n}}}[{RATE}]))', "busy")],
        "percentunit", w=4, h=4, steps=WARN_RATIO, minimum=0, maximum=1)
    b.panel("gauge", "RAM used", [target(
        f"1 - node_memory_MemAvailable_bytes{{{n}}} / node_memory_MemTotal_bytes{{{n}}}",
        "used")], "percentunit", w=4, h=4, steps=WARN_RATIO, minimum=0, maximum=1)
    b.panel("gauge", "Fullest filesystem", [target(
        f'max(1 - node_filesystem_avail_bytes{{fstype!~"tmpfs|ramfs", {n}}}'
        f' / node_filesystem_size_bytes{{fstype!~"tmpfs|ramfs", {n}}})', "used")],
        "percentunit", w=4, h=4, steps=WARN_RATIO, minimum=0, maximum=1)
    b.row("CPU")
    b.panel("timeseries", "CPU by mode", [target(
        f'sum by (mode) (rate(node_cpu_seconds_total{{mode!="idle", {n}}}[{RATE}]))'
        f" / scalar({cores})", "{{mode}}")], "percentunit", stack=True, minimum=0,
        description="Time per mode over all cores; idle left out, so the stack is the busy share.")
    b.panel("timeseries", "Load", [
        target(f"node_load1{{{n}}}", "1m"), target(f"node_load5{{{n}}}", "5m"),
        target(f"node_load15{{{n}}}", "15m"), target(cores, "cores")], "short", minimum=0)
    b.panel("timeseries", "CPU busy per core", [target(
        f'1 - rate(node_cpu_seconds_total{{mode="idle", {n}}}[{RATE}])', "cpu {{cpu}}")],
        "percentunit", minimum=0, maximum=1, steps=WARN_RATIO)
    b.panel("timeseries", "Context switches and interrupts", [
        target(f"rate(node_context_switches_total{{{n}}}[{RATE}])", "context switches"),
        target(f"rate(node_intr_total{{{n}}}[{RATE}])", "interrupts")], "ops", minimum=0)
    b.row("Memory")
    b.panel("timeseries", "Memory breakdown", [
        target(f"node_memory_MemTotal_bytes{{{n}}} - node_memory_MemFree_bytes{{{n}}}"
               f" - node_memory_Buffers_bytes{{{n}}} - node_memory_Cached_bytes{{{n}}}"
               f" - node_memory_SReclaimable_bytes{{{n}}}", "used"),
        target(f"node_memory_Buffers_bytes{{{n}}}", "buffers"),
        target(f"node_memory_Cached_bytes{{{n}}} + node_memory_SReclaimable_bytes{{{n}}}",
               "cache + reclaimable slab"),
        target(f"node_memory_MemFree_bytes{{{n}}}", "free")], "bytes", stack=True, minimum=0)
    b.panel("timeseries", "Swap and page faults", [
        target(f"node_memory_SwapTotal_bytes{{{n}}} - node_memory_SwapFree_bytes{{{n}}}",
               "swap used"),
        target(f"rate(node_vmstat_pgmajfault{{{n}}}[{RATE}])", "major faults/s")], "bytes",
        minimum=0)
    b.panels[-1]["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": "major faults/s"},
         "properties": [{"id": "unit", "value": "ops"},
                        {"id": "custom.axisPlacement", "value": "right"}]}]
    b.row("Disk")
    dev = f'device!~"z?ram.*|loop.*", {n}'
    b.panel("timeseries", "Disk throughput", [
        target(f"rate(node_disk_read_bytes_total{{{dev}}}[{RATE}])", "{{device}} read"),
        target(f"-rate(node_disk_written_bytes_total{{{dev}}}[{RATE}])", "{{device}} write")],
        "Bps", w=8, description="Reads up, writes down.")
    b.panel("timeseries", "Disk IOPS", [
        target(f"rate(node_disk_reads_completed_total{{{dev}}}[{RATE}])", "{{device}} read"),
        target(f"-rate(node_disk_writes_completed_total{{{dev}}}[{RATE}])", "{{device}} write")],
        "iops", w=8)
    b.panel("timeseries", "Disk busy", [target(
        f"rate(node_disk_io_time_seconds_total{{{dev}}}[{RATE}])", "{{device}}")],
        "percentunit", w=8, minimum=0, maximum=1, steps=WARN_RATIO)
    fs = f'fstype!~"tmpfs|ramfs", {n}'
    b.panel("bargauge", "Filesystem used", [target(
        f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
        "{{mountpoint}}", instant=True)], "percentunit", steps=WARN_RATIO, minimum=0, maximum=1)
    b.panel("timeseries", "Filesystem available", [target(
        f"node_filesystem_avail_bytes{{{fs}}}", "{{mountpoint}}")], "bytes", minimum=0)
    b.row("Network")
    net = f'device!="lo", {n}'
    b.panel("timeseries", "Network traffic", [
        target(f"rate(node_network_receive_bytes_total{{{net}}}[{RATE}])", "{{device}} in"),
        target(f"-rate(node_network_transmit_bytes_total{{{net}}}[{RATE}])", "{{device}} out")],
        "Bps", w=8, description="Received up, transmitted down.")
    b.panel("timeseries", "Network errors and drops", [
        target(f"rate(node_network_receive_errs_total{{{net}}}[{RATE}])"
               f" + rate(node_network_transmit_errs_total{{{net}}}[{RATE}])", "{{device}} errors"),
        target(f"rate(node_network_receive_drop_total{{{net}}}[{RATE}])"
               f" + rate(node_network_transmit_drop_total{{{net}}}[{RATE}])", "{{device}} drops")],
        "pps", w=8, minimum=0)
    b.panel("timeseries", "TCP", [
        target(f"node_netstat_Tcp_CurrEstab{{{n}}}", "established"),
        target(f"rate(node_netstat_Tcp_RetransSegs{{{n}}}[{RATE}])", "retransmits/s")],
        "short", w=8, minimum=0)
    b.row("Pressure")
    b.panel("timeseries", "Pressure stall (some tasks waiting)", [
        target(f"rate(node_pressure_cpu_waiting_seconds_total{{{n}}}[{RATE}])", "cpu"),
        target(f"rate(node_pressure_memory_waiting_seconds_total{{{n}}}[{RATE}])", "memory"),
        target(f"rate(node_pressure_io_waiting_seconds_total{{{n}}}[{RATE}])", "io")],
        "percentunit", w=24, minimum=0, steps=thresholds((0.1, "orange"), (0.25, "red")),
        description="Share of wall time some task waited for the resource (/proc/pressure).")
    return b


def gpu_node():
    g = 'node="$node", gpu=~"$gpu"'
    b = Board("fleetgate-gpu-node", "Fleetgate / GPU node",
              "One GPU server in detail (dcgm-exporter metrics pushed by the agent via NVML).",
              ["gpu"],
              [variable("node", "Node", "label_values(DCGM_FI_DEV_GPU_TEMP, node)"),
               variable("gpu", "GPU", 'label_values(DCGM_FI_DEV_GPU_TEMP{node="$node"}, gpu)',
                        True, True)])
    b.row("Summary")
    b.panel("stat", "GPUs", [target(f"count by (modelName) (DCGM_FI_DEV_GPU_TEMP{{{g}}})",
                                    "{{modelName}}", instant=True)], "short", w=6, h=4)
    b.panel("stat", "Average utilization", [target(
        f"avg(DCGM_FI_DEV_GPU_UTIL{{{g}}})", "utilization")], "percent", w=6, h=4,
        steps=WARN_PCT, minimum=0, maximum=100)
    b.panel("stat", "Total power", [target(f"sum(DCGM_FI_DEV_POWER_USAGE{{{g}}})", "power")],
            "watt", w=6, h=4)
    b.panel("stat", "Hottest GPU", [target(f"max(DCGM_FI_DEV_GPU_TEMP{{{g}}})", "temperature")],
            "celsius", w=6, h=4, steps=thresholds((80, "orange"), (88, "red")))
    b.row("Utilization")
    b.panel("timeseries", "GPU utilization", [target(
        f"DCGM_FI_DEV_GPU_UTIL{{{g}}}", "GPU {{gpu}}")], "percent", minimum=0, maximum=100)
    b.panel("timeseries", "Memory copy utilization", [target(
        f"DCGM_FI_DEV_MEM_COPY_UTIL{{{g}}}", "GPU {{gpu}}")], "percent", minimum=0, maximum=100)
    b.panel("timeseries", "Engine activity", [
        target(f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{g}}}", "GPU {{gpu}} graphics/compute"),
        target(f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{g}}}", "GPU {{gpu}} tensor"),
        target(f"DCGM_FI_PROF_DRAM_ACTIVE{{{g}}}", "GPU {{gpu}} DRAM")], "percentunit",
        minimum=0, maximum=1, description="Profiling ratios (Hopper GPM), 0-1.")
    b.panel("timeseries", "Encoder / decoder utilization", [
        target(f"DCGM_FI_DEV_ENC_UTIL{{{g}}}", "GPU {{gpu}} encoder"),
        target(f"DCGM_FI_DEV_DEC_UTIL{{{g}}}", "GPU {{gpu}} decoder")], "percent",
        minimum=0, maximum=100)
    b.row("Memory")
    b.panel("timeseries", "VRAM used", [target(
        f"DCGM_FI_DEV_FB_USED{{{g}}} * 1048576", "GPU {{gpu}}")], "bytes", minimum=0)
    b.panel("bargauge", "VRAM used share", [target(
        f"DCGM_FI_DEV_FB_USED{{{g}}} / (DCGM_FI_DEV_FB_USED{{{g}}} + DCGM_FI_DEV_FB_FREE{{{g}}})",
        "GPU {{gpu}}", instant=True)], "percentunit", steps=WARN_RATIO, minimum=0, maximum=1)
    b.row("Thermals and power")
    b.panel("timeseries", "Temperature", [
        target(f"DCGM_FI_DEV_GPU_TEMP{{{g}}}", "GPU {{gpu}} core"),
        target(f"DCGM_FI_DEV_MEMORY_TEMP{{{g}}}", "GPU {{gpu}} memory")], "celsius", w=8,
        steps=thresholds((80, "orange"), (88, "red")))
    b.panel("timeseries", "Power", [target(
        f"DCGM_FI_DEV_POWER_USAGE{{{g}}}", "GPU {{gpu}}")], "watt", w=8, minimum=0)
    b.panel("bargauge", "Energy used in range", [target(
        f"increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{g}}}[$__range]) / 3.6e9",
        "GPU {{gpu}}", instant=True)], "kwatth", w=8, minimum=0,
        description="Energy over the selected time range (the counter is in mJ).")
    b.panel("timeseries", "Clocks", [
        target(f"DCGM_FI_DEV_SM_CLOCK{{{g}}} * 1000000", "GPU {{gpu}} SM"),
        target(f"DCGM_FI_DEV_MEM_CLOCK{{{g}}} * 1000000", "GPU {{gpu}} memory")], "hertz",
        description="DCGM reports MHz; scaled to Hz for Grafana's unit.")
    b.panel("timeseries", "PCIe throughput", [
        target(f"DCGM_FI_PROF_PCIE_RX_BYTES{{{g}}}", "GPU {{gpu}} rx"),
        target(f"-DCGM_FI_PROF_PCIE_TX_BYTES{{{g}}}", "GPU {{gpu}} tx")], "Bps",
        description="Host to GPU up, GPU to host down.")
    b.row("Errors")
    b.panel("stat", "Last XID error", [target(
        f"DCGM_FI_DEV_XID_ERRORS{{{g}}}", "GPU {{gpu}}")], "none", w=8,
        steps=thresholds((1, "red")),
        description="Last XID reported per GPU; 0 = none since the agent started.")
    b.panel("timeseries", "PCIe replays", [target(
        f"increase(DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{{g}}}[{RATE}])", "GPU {{gpu}}")], "short",
        w=8, minimum=0, steps=thresholds((1, "orange")))
    b.panel("stat", "Remapped rows", [
        target(f"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{g}}}", "GPU {{gpu}} uncorrectable"),
        target(f"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{{{g}}}", "GPU {{gpu}} correctable"),
        target(f"DCGM_FI_DEV_ROW_REMAP_FAILURE{{{g}}}", "GPU {{gpu}} remap failure")], "short",
        w=8, steps=thresholds((1, "orange"), (8, "red")))
    return b


def containers():
    c = 'node="$node", name=~"$container", name!=""'
    b = Board("fleetgate-containers", "Fleetgate / Containers",
              "Every container on a server (cAdvisor metrics from the agent's Docker collector).",
              ["containers"],
              [variable("node", "Node", "label_values(container_last_seen, node)"),
               variable("container", "Container",
                        'label_values(container_last_seen{node="$node"}, name)', True, True)])
    b.row("Overview")
    b.panel("stat", "Containers", [target(f"count(container_last_seen{{{c}}})", "containers",
                                          instant=True)], "short", w=6, h=4)
    b.panel("stat", "CPU used", [target(
        f"sum(rate(container_cpu_usage_seconds_total{{{c}}}[{RATE}]))", "cores")], "short",
        w=6, h=4, decimals=2)
    b.panel("stat", "Memory working set", [target(
        f"sum(container_memory_working_set_bytes{{{c}}})", "memory")], "bytes", w=6, h=4)
    b.panel("stat", "Restarts in range", [target(
        f"sum(changes(container_start_time_seconds{{{c}}}[$__range]))", "restarts",
        instant=True)], "short", w=6, h=4, steps=thresholds((1, "orange"), (5, "red")))
    b.row("CPU")
    b.panel("timeseries", "CPU", [target(
        f"sum by (name) (rate(container_cpu_usage_seconds_total{{{c}}}[{RATE}]))", "{{name}}")],
        "short", minimum=0, description="Cores used (1 = one full core).")
    b.panel("timeseries", "CPU throttled", [target(
        f"sum by (name) (rate(container_cpu_cfs_throttled_periods_total{{{c}}}[{RATE}]))"
        f" / sum by (name) (rate(container_cpu_cfs_periods_total{{{c}}}[{RATE}]))", "{{name}}")],
        "percentunit", minimum=0, maximum=1, steps=thresholds((0.25, "orange"), (0.5, "red")),
        description="Share of CFS periods throttled; only containers with a CPU limit.")
    b.row("Memory")
    b.panel("timeseries", "Working set", [target(
        f"sum by (name) (container_memory_working_set_bytes{{{c}}})", "{{name}}")], "bytes",
        w=8, minimum=0)
    b.panel("timeseries", "RSS", [target(
        f"sum by (name) (container_memory_rss{{{c}}})", "{{name}}")], "bytes", w=8, minimum=0)
    b.panel("timeseries", "Cache", [target(
        f"sum by (name) (container_memory_cache{{{c}}})", "{{name}}")], "bytes", w=8, minimum=0)
    b.row("Network and block I/O")
    b.panel("timeseries", "Network", [
        target(f"sum by (name) (rate(container_network_receive_bytes_total{{{c}}}[{RATE}]))",
               "{{name}} in"),
        target(f"-sum by (name) (rate(container_network_transmit_bytes_total{{{c}}}[{RATE}]))",
               "{{name}} out")], "Bps", description="Received up, transmitted down.")
    b.panel("timeseries", "Block I/O", [
        target(f"sum by (name) (rate(container_fs_reads_bytes_total{{{c}}}[{RATE}]))",
               "{{name}} read"),
        target(f"-sum by (name) (rate(container_fs_writes_bytes_total{{{c}}}[{RATE}]))",
               "{{name}} write")], "Bps", description="Reads up, writes down.")
    b.row("Limits and lifetime")
    b.panel("bargauge", "Memory used of limit", [target(
        f"sum by (name) (container_memory_working_set_bytes{{{c}}})"
        f" / sum by (name) (container_spec_memory_limit_bytes{{{c}}} > 0)", "{{name}}",
        instant=True)], "percentunit", w=8, steps=WARN_RATIO, minimum=0, maximum=1,
        description="Only containers with a memory limit.")
    b.panel("bargauge", "CPU limit", [target(
        f"sum by (name) (container_spec_cpu_quota{{{c}}} > 0)"
        f" / sum by (name) (container_spec_cpu_period{{{c}}})", "{{name}}", instant=True)],
        "short", w=8, description="Cores allowed by the CFS quota; only limited containers.")
    b.panel("table", "Containers", [
        target(f"sum by (name, image) (time() - container_start_time_seconds{{{c}}})", "",
               instant=True, table=True),
        target(f"sum by (name, image) (container_spec_memory_limit_bytes{{{c}}})", "",
               instant=True, table=True)], "s", w=8, transformations=[
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {"Time": True},
            "renameByName": {"name": "Name", "image": "Image", "Value #A": "Age",
                             "Value #B": "Memory limit (0 = none)"}}}])
    b.panels[-1]["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": "Memory limit (0 = none)"},
         "properties": [{"id": "unit", "value": "bytes"}]}]
    return b


def triton():
    m = 'node="$node", model=~"$model"'
    n = 'node="$node"'
    b = Board("fleetgate-triton", "Fleetgate / Triton",
              "Triton Inference Server metrics proxied by the agent, by model and version.",
              ["triton"],
              [variable("node", "Node", "label_values(nv_inference_count, node)"),
               variable("model", "Model", 'label_values(nv_inference_count{node="$node"}, model)',
                        True, True)])

    def per_request(family):
        return (f"sum by (model, version) (rate({family}{{{m}}}[{RATE}]))"
                f" / sum by (model, version) (rate(nv_inference_request_success{{{m}}}[{RATE}]))")

    b.row("Requests")
    b.panel("stat", "Success ratio", [target(
        f"sum(rate(nv_inference_request_success{{{m}}}[{RATE}]))"
        f" / (sum(rate(nv_inference_request_success{{{m}}}[{RATE}]))"
        f" + sum(rate(nv_inference_request_failure{{{m}}}[{RATE}])))", "success")],
        "percentunit", w=6, h=8, steps={"mode": "absolute", "steps": [
            {"color": "red", "value": None}, {"color": "orange", "value": 0.95},
            {"color": "green", "value": 0.99}]}, minimum=0, maximum=1)
    b.panel("timeseries", "Successful requests", [target(
        f"sum by (model, version) (rate(nv_inference_request_success{{{m}}}[{RATE}]))",
        "{{model}} v{{version}}")], "reqps", w=9, minimum=0)
    b.panel("timeseries", "Failed requests by reason", [target(
        f"sum by (model, reason) (rate(nv_inference_request_failure{{{m}}}[{RATE}]))",
        "{{model}} {{reason}}")], "reqps", w=9, minimum=0, steps=thresholds((0.01, "red")))
    b.panel("timeseries", "Inferences and executions", [
        target(f"sum by (model, version) (rate(nv_inference_count{{{m}}}[{RATE}]))",
               "{{model}} v{{version}} inferences"),
        target(f"sum by (model, version) (rate(nv_inference_exec_count{{{m}}}[{RATE}]))",
               "{{model}} v{{version}} executions")], "ops", minimum=0,
        description="Inferences count every batch element; executions count model runs.")
    b.panel("timeseries", "Pending requests", [target(
        f"sum by (model, version) (nv_inference_pending_request_count{{{m}}})",
        "{{model}} v{{version}}")], "short", minimum=0, steps=thresholds((10, "orange")))
    b.row("Latency per request")
    b.panel("timeseries", "Queue time", [target(
        per_request("nv_inference_queue_duration_us"), "{{model}} v{{version}}")], "µs", w=8,
        minimum=0)
    b.panel("timeseries", "Compute time", [
        target(per_request("nv_inference_compute_input_duration_us"),
               "{{model}} v{{version}} input"),
        target(per_request("nv_inference_compute_infer_duration_us"),
               "{{model}} v{{version}} infer"),
        target(per_request("nv_inference_compute_output_duration_us"),
               "{{model}} v{{version}} output")], "µs", w=8, minimum=0, stack=True)
    b.panel("timeseries", "End-to-end request time", [target(
        per_request("nv_inference_request_duration_us"), "{{model}} v{{version}}")], "µs", w=8,
        minimum=0)
    b.row("Server resources")
    b.panel("timeseries", "Server CPU", [target(
        f"nv_cpu_utilization{{{n}}}", "CPU utilization")], "percentunit", w=8, minimum=0,
        maximum=1, steps=WARN_RATIO)
    b.panel("timeseries", "Server memory", [
        target(f"nv_cpu_memory_used_bytes{{{n}}}", "CPU memory used"),
        target(f"nv_cpu_memory_total_bytes{{{n}}}", "CPU memory total"),
        target(f"nv_pinned_memory_pool_used_bytes{{{n}}}", "pinned pool used")], "bytes", w=8,
        minimum=0)
    b.panel("timeseries", "Server GPU", [
        target(f"nv_gpu_utilization{{{n}}}", "GPU {{gpu_uuid}} utilization")],
        "percentunit", w=8, minimum=0, maximum=1, steps=WARN_RATIO)
    b.panel("timeseries", "Server GPU memory", [
        target(f"nv_gpu_memory_used_bytes{{{n}}}", "GPU {{gpu_uuid}} used"),
        target(f"nv_gpu_memory_total_bytes{{{n}}}", "GPU {{gpu_uuid}} total")], "bytes",
        minimum=0)
    b.panel("timeseries", "Server GPU power", [
        target(f"nv_gpu_power_usage{{{n}}}", "GPU {{gpu_uuid}} power"),
        target(f"nv_gpu_power_limit{{{n}}}", "GPU {{gpu_uuid}} limit")], "watt", minimum=0)
    return b


def fleet_health():
    n = 'node=~"$node"'
    b = Board("fleetgate-fleet-health", "Fleetgate / Fleet health",
              "What is alerting, is every agent pushing, and how is the hub coping.", ["hub"],
              [variable("node", "Node", "label_values(fleetgate_node_up, node)", True, True)])
    # Alerts of the selected nodes, plus those about no node (the hub, the Watchdog).
    firing = f'ALERTS{{alertstate="firing", {n}}} or ALERTS{{alertstate="firing", node=""}}'
    b.row("Alerts")
    b.panel("stat", "Firing alerts", [target(
        f"count by (severity) ({firing})", "{{severity}}", instant=True)], "short", w=6,
        steps=thresholds((1, "red")), options={"colorMode": "value", "graphMode": "none"},
        description="Alerts firing now, by severity. The Watchdog (info) always fires while "
                    "Prometheus evaluates the rules; docs/ALERTS.md explains every alert.")
    b.panel("table", "Firing alerts", [target(firing, "{{alertname}}", instant=True, table=True)],
            "none", w=18, h=8,
            description="One row per firing alert and what it is about (node, GPU, container, "
                        "model, mountpoint), critical first.",
            transformations=[
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True,
                                      "alertstate": True, "job": True},
                    "indexByName": {"severity": 0, "alertname": 1, "node": 2},
                    "renameByName": {"alertname": "Alert", "severity": "Severity",
                                     "node": "Node"}}},
            ], options={"sortBy": [{"displayName": "Severity", "desc": False}]})
    b.row("Nodes")
    b.panel("stat", "Nodes by state", [target(
        "max by (state) (fleetgate_hub_nodes)", "{{state}}", instant=True)], "short", w=8,
        options={"colorMode": "background", "graphMode": "none"})
    b.panel("stat", "Node up", [target(f"fleetgate_node_up{{{n}}}", "{{node}}",
                                       instant=True)], "none", w=16,
            steps={"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                  {"color": "green", "value": 1}]},
            mappings=[{"type": "value", "options": {"0": {"text": "STALE", "color": "red"},
                                                    "1": {"text": "UP", "color": "green"}}}],
            options={"colorMode": "background", "graphMode": "none"})
    b.panel("timeseries", "Last push age", [target(
        f"time() - fleetgate_node_last_push_timestamp_seconds{{{n}}}", "{{node}}")], "s",
        minimum=0, steps=thresholds((60, "orange"), (120, "red")),
        description="Seconds since the node's last accepted push; agents push every 15s by "
                    "default.")
    b.panel("timeseries", "Series per node", [target(
        f"fleetgate_node_series{{{n}}}", "{{node}}")], "short", minimum=0)
    b.row("Pushes")
    b.panel("timeseries", "Pushes by result", [target(
        f"sum by (result) (rate(fleetgate_hub_pushes_total[{RATE}]))", "{{result}}")], "reqps",
        w=8, minimum=0)
    b.panel("timeseries", "Push errors", [target(
        f'sum by (result) (rate(fleetgate_hub_pushes_total{{result!="ok"}}[{RATE}]))',
        "{{result}}")], "reqps", w=8, minimum=0, steps=thresholds((0.01, "red")))
    b.panel("timeseries", "Push bytes", [target(
        f"sum by (result) (rate(fleetgate_hub_push_bytes_total[{RATE}]))", "{{result}}")],
        "Bps", w=8, minimum=0)
    b.panel("timeseries", "Agent push failures", [target(
        f"sum by (node, hub, reason) (rate(fleetgate_agent_push_failures_total{{{n}}}[{RATE}]))",
        "{{node}} → {{hub}} {{reason}}")], "reqps", w=8, minimum=0, steps=thresholds((0.01, "red")))
    b.panel("timeseries", "Rejected series", [target(
        f"sum by (reason) (rate(fleetgate_hub_rejected_series_total[{RATE}]))", "{{reason}}")],
        "ops", w=8, minimum=0)
    b.panel("bargauge", "Quarantined families", [target(
        f"fleetgate_hub_quarantined_families{{{n}}}", "{{node}}", instant=True)], "short", w=8,
        steps=thresholds((1, "orange")),
        description="Families the hub refused for a node (e.g. type clashes), per node.")
    b.row("Hub")
    b.panel("timeseries", "Ingested samples", [target(
        f"rate(fleetgate_hub_ingested_samples_total[{RATE}])", "samples/s")], "ops", w=8,
        minimum=0)
    b.panel("timeseries", "Render time of /metrics", [
        target(f"histogram_quantile(0.5, sum by (le) (rate("
               f"fleetgate_hub_render_duration_seconds_bucket[{RATE}])))", "p50"),
        target(f"histogram_quantile(0.99, sum by (le) (rate("
               f"fleetgate_hub_render_duration_seconds_bucket[{RATE}])))", "p99")], "s", w=8,
        minimum=0, steps=thresholds((1, "orange"), (5, "red")))
    b.panel("timeseries", "Nodes over time", [target(
        "max by (state) (fleetgate_hub_nodes)", "{{state}}")], "short", w=8, minimum=0)
    b.row("Agents")
    b.panel("timeseries", "Collectors up", [target(
        f"fleetgate_agent_collector_up{{{n}}}", "{{node}} {{collector}}")], "none", w=8,
        minimum=0, maximum=1)
    b.panel("timeseries", "Collector duration", [target(
        f"fleetgate_agent_collector_duration_seconds{{{n}}}", "{{node}} {{collector}}")], "s",
        w=8, minimum=0)
    b.panel("timeseries", "Push duration", [target(
        f"fleetgate_agent_push_duration_seconds{{{n}}}", "{{node}} → {{hub}}")], "s", w=8, minimum=0)
    b.panel("timeseries", "Agent memory", [target(
        f"process_resident_memory_bytes{{{n}}}", "{{node}}")], "bytes", w=8, minimum=0)
    b.panel("timeseries", "Agent CPU", [target(
        f"rate(process_cpu_seconds_total{{{n}}}[{RATE}])", "{{node}}")], "percentunit", w=8,
        minimum=0)
    b.panel("timeseries", "Agent sent bytes", [target(
        f"rate(fleetgate_agent_sent_bytes_total{{{n}}}[{RATE}])", "{{node}} → {{hub}}")], "Bps", w=8,
        minimum=0)
    return b


DASHBOARDS = {
    "01-node-overview.json": node_overview,
    "02-cpu-node.json": cpu_node,
    "03-gpu-node.json": gpu_node,
    "04-containers.json": containers,
    "05-triton.json": triton,
    "06-fleet-health.json": fleet_health,
}


def render():
    return {name: json.dumps(build().json(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main():
    check = "--check" in sys.argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date, run grafana/build_dashboards.py: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
