#!/usr/bin/env bash
# The scale-out suite: one hub's fleet scraped in shards by the shipped
# compose/prometheus/prometheus-sharded.yml, through two vmagents in cluster mode and through
# Prometheus in agent mode, into VictoriaMetrics, which must hold every node's series exactly once
# (e2e.py says what it checks). Under a minute.
# Needs: vmagent and victoria-metrics (Debian victoria-metrics), prometheus (Debian prometheus),
# the release hub (cargo build --release -p fleetgate-hub; FLEETGATE_RELEASE_BIN_DIR overrides
# where), .venv with requests (FLEETGATE_VENV). A missing one fails the suite; with
# FLEETGATE_ALLOW_SKIP=1 the suite is skipped instead, saying what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${FLEETGATE_RELEASE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python

missing=()
for tool in vmagent victoria-metrics prometheus promtool; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for f in "$python" "$bin_dir/fleetgate-hub"; do [ -x "$f" ] || missing+=("$f"); done
if [ -x "$python" ] && ! "$python" -c 'import requests' 2>/dev/null; then
  missing+=("requests in $venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${FLEETGATE_ALLOW_SKIP:-0}" = 1 ]; then
    echo "tests/scale: SKIPPED, missing: ${missing[*]}" >&2
    exit 0
  fi
  echo "tests/scale: FAIL, missing: ${missing[*]} (FLEETGATE_ALLOW_SKIP=1 skips instead)" >&2
  exit 1
fi

promtool check config "$root/compose/prometheus/prometheus-sharded.yml"
vmagent -promscrape.config="$root/compose/prometheus/prometheus-sharded.yml" -dryRun >/dev/null 2>&1 \
  || { echo "FAIL: vmagent refuses compose/prometheus/prometheus-sharded.yml" >&2; exit 1; }
echo "ok:   prometheus-sharded.yml passes promtool check config and vmagent -dryRun"
exec "$python" "$root/tests/scale/e2e.py" --bin-dir "$bin_dir"
