#!/usr/bin/env bash
# The HA layout's proof: compose/monitoring-ha.yml renders (and refuses to without its secrets),
# promtool accepts both replica configs and they differ only in replica and hub; the Ansible app
# side with two hubs for real and the monitoring side's HA mode in --check mode (ansible.sh); and
# the end-to-end test (ha_e2e.py): two hubs, two Prometheus replicas and VictoriaMetrics
# configured from compose/, one real agent and 50 simulated nodes pushing to both hubs, hub A
# killed for 60 s and back.
# Needs the release binaries (cargo build --release -p fleetgate-hub -p fleetgate-agent
# -p fleetgate-loadtest) and the debug hub and agent (for ansible.sh), /usr/bin/prometheus,
# promtool, /usr/bin/victoria-metrics, docker-compose, start-stop-daemon and .venv with requests,
# PyYAML and ansible-core. FLEETGATE_BIN_DIR overrides where the release binaries are (default:
# $CARGO_TARGET_DIR/release or target/release). Arguments go to ha_e2e.py (--outage, --keep).
# A missing component fails the suite; with FLEETGATE_ALLOW_SKIP=1 it is skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
bin_dir=${FLEETGATE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python

for b in fleetgate-hub fleetgate-agent fleetgate-loadtest; do
  require "$bin_dir/$b (cargo build --release -p $b)" test -x "$bin_dir/$b" || exit 0
done
for tool in prometheus promtool victoria-metrics docker-compose start-stop-daemon; do
  require_cmd "$tool" || exit 0
done
require "$venv/bin/ansible-playbook (ansible-core in $venv)" test -x "$venv/bin/ansible-playbook" || exit 0
require "$python with requests and PyYAML (scripts/requirements-test.txt)" \
  "$python" -c 'import requests, yaml' || exit 0

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }
compose=$root/compose
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The compose file renders with the example settings, and refuses to without its secrets.
if rendered=$(docker-compose --env-file "$compose/.env.example" -f "$compose/monitoring-ha.yml" config); then
  pass "docker-compose config monitoring-ha.yml"
  published=$(printf '%s\n' "$rendered" | sed -n 's/^ *- published: \([0-9]*\)$/\1/p' | sort -n | tr '\n' ' ')
  [ "$published" = "3000 8000 8001 " ] && pass "monitoring-ha.yml publishes only 3000, 8000 and 8001" \
    || fail "monitoring-ha.yml publishes: $published (want 3000 8000 8001)"
  grep -q -- "-dedup.minScrapeInterval=15s" <<<"$rendered" \
    && pass "VictoriaMetrics deduplicates at the replicas' 15s scrape interval" \
    || fail "VictoriaMetrics runs without -dedup.minScrapeInterval=15s"
else
  fail "docker-compose config monitoring-ha.yml"
fi
: >"$tmp/empty.env"
if docker-compose --env-file "$tmp/empty.env" -f "$compose/monitoring-ha.yml" config -q 2>/dev/null; then
  fail "monitoring-ha.yml renders without compose/.env (secrets must be required)"
else
  pass "monitoring-ha.yml refuses to render without its .env values"
fi
for r in a b; do
  if promtool check config "$compose/prometheus/prometheus-ha-$r.yml" >/dev/null; then
    pass "promtool check config prometheus-ha-$r.yml"
  else
    fail "promtool check config prometheus-ha-$r.yml"
  fi
done
# The two replicas differ only in their replica label and their hub.
if diff <(grep -v '^#' "$compose/prometheus/prometheus-ha-a.yml" | sed 's/replica: a$/replica: R/; s/hub-a:/hub-R:/') \
        <(grep -v '^#' "$compose/prometheus/prometheus-ha-b.yml" | sed 's/replica: b$/replica: R/; s/hub-b:/hub-R:/') >/dev/null; then
  pass "prometheus-ha-a.yml and -b.yml differ only in replica label and hub"
else
  fail "prometheus-ha-a.yml and -b.yml differ in more than replica label and hub"
fi

bash "$root/tests/ha/ansible.sh" || failures=$((failures + 1))

bin_dir=$(cd "$bin_dir" && pwd)
cd "$root/tests/ha"
"$python" ha_e2e.py --bin-dir "$bin_dir" "$@" || failures=$((failures + 1))
if [ "$failures" -gt 0 ]; then
  echo "tests/ha: $failures failure(s)" >&2
  exit 1
fi
echo "tests/ha: all passed"
