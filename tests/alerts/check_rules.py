#!/usr/bin/env python3
"""Keeps the alert rules, their unit tests and docs/ALERTS.md from drifting apart.

For every alerting rule in compose/prometheus/rules/*.yml:
  - severity is critical, warning or info; summary and description are set; the description
    names the node (and the GPU, container or model in those files) and shows the value;
  - a promtool test case expects it firing (with that severity), and another case for the same
    alert expects it silent at that severity (a near miss);
  - docs/ALERTS.md has a section for it listing the same severities, with what it means, the
    threshold and why, the likely causes and what to do first; and no section documents an
    alert that does not exist;
  - every metric its expression reads is one the agent or the hub emits (or Prometheus itself, or
    Triton through the agent), unless it is listed below as not emitted yet, and then the docs say
    so.
Also: every input series of every test has values, so no test passes on an empty input.

Exit status 0 when all holds, 1 otherwise (each problem printed).
Usage: check_rules.py [--root DIR]
"""

import argparse
import pathlib
import re
import sys

import yaml

SEVERITIES = {"critical", "warning", "info"}

# Alerts about the hub or the alerting path itself: no node to name.
NOT_PER_NODE = {"Watchdog", "FleetgateHubDown", "FleetgateHubScrapeSlow",
                "FleetgateHubRejectingPushes"}
# Alerts whose expression is a yes/no condition: the value is the condition itself (1, or the
# 0 of an `up`), so the description states the fact instead of printing it.
BOOLEAN = {"Watchdog", "FleetgateHubDown", "FleetgateAgentCollectorFailing",
           "FleetgateGPUCollectorDown", "NodeFilesystemReadOnly", "NodeFilesystemDeviceError",
           "NodeClockNotSynchronising", "GPURowRemapFailure"}
# Alerts that cannot have a silent case.
ALWAYS_FIRING = {"Watchdog": "the dead man's switch fires by definition"}
# What the description must name besides the node, per rule file.
MUST_NAME = {
    "gpu.yml": ["$labels.gpu", "$labels.UUID"],
    "containers.yml": ["$labels.name"],
    "triton.yml": ["$labels.model"],
}

# Metrics that appear literally in no source file of the agent or the hub, and why they exist.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_timeout_seconds"}
# Built from a template in a collector: file, and strings that file must contain.
TEMPLATED = {
    "node_vmstat_oom_kill": ("agent/src/collectors/host/vmstat.rs",
                             ['"node_vmstat_{field}"', '"oom_kill"']),
    "node_vmstat_pgmajfault": ("agent/src/collectors/host/vmstat.rs",
                               ['"node_vmstat_{field}"', '"fault"']),
    "node_memory_MemAvailable_bytes": ("agent/src/collectors/host/meminfo.rs",
                                       ['"node_memory_"', '"_bytes"']),
    "node_network_receive_errs_total": ("agent/src/collectors/host/netdev.rs",
                                        ['"node_network_{c}_total"', '"receive_errs"']),
    "node_network_receive_packets_total": ("agent/src/collectors/host/netdev.rs",
                                           ['"node_network_{c}_total"', '"receive_packets"']),
    "node_network_transmit_errs_total": ("agent/src/collectors/host/netdev.rs",
                                         ['"node_network_{c}_total"', '"transmit_errs"']),
    "node_network_transmit_packets_total": ("agent/src/collectors/host/netdev.rs",
                                            ['"node_network_{c}_total"', '"transmit_packets"']),
    # node_hwmon_<type>_<property>_celsius for every temp*_<property> file of a chip.
    "node_hwmon_temp_celsius": ("agent/src/collectors/host/hwmon.rs",
                                ['"node_hwmon_{kind}"', '"_celsius"']),
    "node_hwmon_temp_max_celsius": ("agent/src/collectors/host/hwmon.rs",
                                    ['"node_hwmon_{kind}"', '"_celsius"']),
    "node_hwmon_temp_crit_celsius": ("agent/src/collectors/host/hwmon.rs",
                                     ['"node_hwmon_{kind}"', '"_celsius"']),
    "node_hwmon_temp_crit_alarm_celsius": ("agent/src/collectors/host/hwmon.rs",
                                           ['"node_hwmon_{kind}"', '"_celsius"', '"crit_alarm"']),
}
# Triton's own families, forwarded unchanged by the agent: they must be ones the Triton dashboard
# queries, which tests/dashboards proves against a real Triton through a real agent.
FORWARDED_PREFIX = "nv_"
# Read by a rule, emitted by the real exporter, but not (yet) by the agent's own collectors: metric
# name to the reason. It arrives only when that exporter's endpoint is forwarded with
# --scrape-url, and docs/ALERTS.md must say so in the alert's section. Empty: the agent emits
# every metric the rules read. When a rule needs one it does not, list it here.
NOT_EMITTED_YET = {}

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}
DOC_FIELDS = ["Fires when", "Threshold, and why", "Likely causes", "First"]


def metric_names(expr):
    """Metric names an expression selects (label matchers, ranges, grouping and functions
    removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        token = m.group(0)
        if token.lower() in KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue
        if re.fullmatch(r"[0-9.e]+", token):
            continue
        names.add(token)
    return names


def load_rules(root, errors):
    rules = []
    files = sorted((root / "compose/prometheus/rules").glob("*.yml"))
    if not files:
        errors.append("no rule files in compose/prometheus/rules")
    for path in files:
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rules.append((path.name, rule))
    return rules


def check_rule_text(rules, errors):
    for file, rule in rules:
        name = rule["alert"]
        sev = rule.get("labels", {}).get("severity")
        if sev not in SEVERITIES:
            errors.append(f"{name}: severity {sev!r} is not one of {sorted(SEVERITIES)}")
        ann = rule.get("annotations", {})
        summary, desc = ann.get("summary", ""), ann.get("description", "")
        if not summary.strip() or not desc.strip():
            errors.append(f"{name}: summary and description annotations are required")
        if name not in NOT_PER_NODE and "$labels.node" not in desc:
            errors.append(f"{name}: description does not name the node ($labels.node)")
        for needed in MUST_NAME.get(file, []):
            if needed not in desc:
                errors.append(f"{name}: description does not name {needed}")
        if name not in BOOLEAN and "$value" not in desc and "| value" not in desc:
            errors.append(f"{name}: description does not show the value ($value)")


def load_tests(root, errors):
    """(alertname, exp_alerts) for every alert_rule_test of every test file."""
    cases = []
    for path in sorted((root / "tests/alerts").glob("*_test.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("tests", []):
            gname = group.get("name", "?")
            for series in group.get("input_series", []):
                if not str(series.get("values", "")).strip():
                    errors.append(f"{path.name} / {gname}: input series without values: "
                                  f"{series.get('series')}")
            for case in group.get("alert_rule_test", []):
                cases.append((case["alertname"], case.get("exp_alerts") or []))
    return cases


def check_coverage(rules, cases, errors):
    for _, rule in rules:
        name, sev = rule["alert"], rule["labels"]["severity"]
        fires = any(a == name and any(e.get("exp_labels", {}).get("severity") == sev for e in exp)
                    for a, exp in cases)
        silent = any(a == name and all(e.get("exp_labels", {}).get("severity") != sev for e in exp)
                     for a, exp in cases)
        if not fires:
            errors.append(f"{name} ({sev}): no test case expects it firing")
        if not silent and name not in ALWAYS_FIRING:
            errors.append(f"{name} ({sev}): no test case expects it silent (a near miss)")
    known = {r["alert"] for _, r in rules}
    for a, _ in cases:
        if a not in known:
            errors.append(f"a test evaluates {a}, which no rule file defines")


def doc_sections(text):
    """{alertname: section text} for every '### Name' heading."""
    sections = {}
    parts = re.split(r"^### ", text, flags=re.M)
    for part in parts[1:]:
        head, _, body = part.partition("\n")
        sections[head.strip()] = body
    return sections


def check_docs(root, rules, errors):
    path = root / "docs/ALERTS.md"
    if not path.exists():
        errors.append("docs/ALERTS.md is missing")
        return
    sections = doc_sections(path.read_text(encoding="utf-8"))
    by_name = {}
    for _, rule in rules:
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for name, sevs in sorted(by_name.items()):
        body = sections.get(name)
        if body is None:
            errors.append(f"docs/ALERTS.md has no section '### {name}'")
            continue
        m = re.search(r"^Severity: (.+)$", body, flags=re.M)
        listed = {s.strip(" `") for s in m.group(1).split(",")} if m else set()
        if listed != sevs:
            errors.append(f"docs/ALERTS.md {name}: severity line {sorted(listed)} but the rules "
                          f"say {sorted(sevs)}")
        for field in DOC_FIELDS:
            if not re.search(rf"^- \*\*{re.escape(field)}:\*\* \S", body, flags=re.M):
                errors.append(f"docs/ALERTS.md {name}: no '- **{field}:**' line")
    for name in sections:
        if name not in by_name:
            errors.append(f"docs/ALERTS.md documents {name}, which no rule file defines")
    for _, rule in rules:
        for metric in metric_names(rule["expr"]) & NOT_EMITTED_YET.keys():
            body = sections.get(rule["alert"], "")
            if metric not in body or "not emit" not in body:
                errors.append(f"docs/ALERTS.md {rule['alert']}: must say that the agent does not "
                              f"emit {metric} yet")


def source_texts(root):
    texts = {}
    for sub in ("agent/src", "hub/src"):
        for p in (root / sub).rglob("*.rs"):
            texts[p] = p.read_text(encoding="utf-8")
    return texts


def check_metric_names(root, rules, errors):
    sources = source_texts(root)
    dashboards = "".join(p.read_text(encoding="utf-8")
                         for p in (root / "grafana/dashboards").glob("*.json"))
    literal = lambda n: any(re.search(rf"\b{re.escape(n)}\b", t) for t in sources.values())
    used = set()
    for _, rule in rules:
        for name in metric_names(rule["expr"]):
            used.add(name)
            where = f"{rule['alert']}: metric {name}"
            if name in NOT_EMITTED_YET:
                if literal(name):
                    errors.append(f"{where} is listed as not emitted yet, but the agent or hub "
                                  "source names it: remove it from NOT_EMITTED_YET and the docs")
            elif name in PROMETHEUS_OWN or literal(name):
                continue
            elif name in TEMPLATED:
                file, needles = TEMPLATED[name]
                text = (root / file).read_text(encoding="utf-8") if (root / file).exists() else ""
                missing = [s for s in needles if s not in text]
                if missing:
                    errors.append(f"{where}: {file} no longer contains {missing}")
            elif name.startswith(FORWARDED_PREFIX):
                if not re.search(rf"\b{re.escape(name)}\b", dashboards):
                    errors.append(f"{where}: a Triton family no dashboard (and so no real-Triton "
                                  "proof) uses")
            else:
                errors.append(f"{where}: neither the agent nor the hub emits it")
    for name in NOT_EMITTED_YET:
        if name not in used:
            errors.append(f"NOT_EMITTED_YET lists {name}, which no rule reads")
    return used


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=pathlib.Path,
                    default=pathlib.Path(__file__).resolve().parents[2])
    args = ap.parse_args()
    errors = []
    rules = load_rules(args.root, errors)
    check_rule_text(rules, errors)
    cases = load_tests(args.root, errors)
    check_coverage(rules, cases, errors)
    check_docs(args.root, rules, errors)
    used = check_metric_names(args.root, rules, errors)
    for e in errors:
        print("FAIL:", e)
    names = {r["alert"] for _, r in rules}
    waiting = (f"{len(NOT_EMITTED_YET)} read but not emitted by the agent yet: "
               f"{', '.join(sorted(NOT_EMITTED_YET))}" if NOT_EMITTED_YET
               else "all emitted by the agent or the hub")
    print(f"check_rules: {len(rules)} rules ({len(names)} alerts), {len(cases)} test cases, "
          f"{len(used)} metrics, {waiting}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
