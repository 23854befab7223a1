#!/usr/bin/env bash
# The alerting suite: the rule files pass `promtool check rules`; every alert fires and stays
# silent in its unit tests (`promtool test rules`); rules, tests and docs/ALERTS.md agree
# (check_rules.py); the Alertmanager config, filled in by its entrypoint exactly as in the
# container (busybox sh and awk), passes `amtool check-config` and routes as intended; the
# compose file renders with Alertmanager and refuses to without a webhook URL; then the
# end-to-end run with real parts (e2e.py, about 90 s).
#   tests/alerts/run.sh [--no-e2e]
# Needs: promtool, prometheus, prometheus-alertmanager and amtool (Debian prometheus and
# prometheus-alertmanager), docker-compose, /bin/busybox (static), the release binaries
# (cargo build --release -p fleetgate-hub -p fleetgate-agent; FLEETGATE_RELEASE_BIN_DIR overrides
# where), .venv with requests and PyYAML (FLEETGATE_VENV), and a Docker engine for the
# container part of e2e.py. A missing one fails the suite; with FLEETGATE_ALLOW_SKIP=1 the suite
# is skipped instead, saying what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
here=$root/tests/alerts
bin_dir=${FLEETGATE_RELEASE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python
run_e2e=true
[ "${1:-}" = "--no-e2e" ] && run_e2e=false

missing=()
for tool in promtool amtool prometheus prometheus-alertmanager docker-compose; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for f in /bin/busybox "$python"; do [ -x "$f" ] || missing+=("$f"); done
if $run_e2e; then
  for f in "$bin_dir/fleetgate-hub" "$bin_dir/fleetgate-agent"; do [ -x "$f" ] || missing+=("$f"); done
  docker info >/dev/null 2>&1 || missing+=("a running Docker engine")
fi
if [ -x "$python" ] && ! "$python" -c 'import requests, yaml' 2>/dev/null; then
  missing+=("requests/PyYAML in $venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  if skipping_allowed; then
    echo "tests/alerts: SKIPPED, missing: ${missing[*]}" >&2
    exit 0
  fi
  echo "tests/alerts: FAIL, missing: ${missing[*]} (FLEETGATE_ALLOW_SKIP=1 skips instead)" >&2
  exit 1
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }
tmp=$(mktemp -d /tmp/fleetgate-alerts-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- rules and their unit tests ----------------------------------------------------------------
if promtool check rules "$root"/compose/prometheus/rules/*.yml >"$tmp/check.log" 2>&1; then
  pass "promtool check rules: $(grep -c 'SUCCESS' "$tmp/check.log") rule files"
else
  cat "$tmp/check.log"; fail "promtool check rules"
fi
if promtool check config "$root/compose/prometheus/prometheus.yml" >"$tmp/config.log" 2>&1; then
  pass "promtool check config prometheus.yml (its rule_files are the rule files)"
else
  cat "$tmp/config.log"; fail "promtool check config prometheus.yml"
fi
for t in "$here"/*_test.yml; do
  if promtool test rules "$t" >"$tmp/unit.log" 2>&1; then
    pass "promtool test rules $(basename "$t")"
  else
    cat "$tmp/unit.log"; fail "promtool test rules $(basename "$t")"
  fi
done
if "$python" "$here/check_rules.py" --root "$root"; then
  pass "every alert: severity, annotations, a firing and a silent test, a docs/ALERTS.md entry"
else
  fail "check_rules.py"
fi

# --- Alertmanager: the entrypoint as the image runs it (busybox sh, awk, grep, mv) -------------
mkdir -p "$tmp/bin"
for applet in sh awk grep mv; do ln -s /bin/busybox "$tmp/bin/$applet"; done
render() {  # render OUT [VAR=value...]: runs the entrypoint with /bin/true as Alertmanager
  local out=$1; shift
  env -i PATH="$tmp/bin" ALERTMANAGER_TEMPLATE="$root/compose/alertmanager/alertmanager.yml" \
    ALERTMANAGER_RENDERED="$out" ALERTMANAGER_BIN=/bin/true "$@" \
    "$tmp/bin/sh" "$root/compose/alertmanager/entrypoint.sh" --storage.path=/nonexistent
}
hook='https://hooks.example.org/services/T0/B0/x?a=1&b=\2'
if render "$tmp/am.yml" ALERTMANAGER_WEBHOOK_URL="$hook" 2>"$tmp/render.log"; then
  if [ "$(grep -cF "url: '$hook'" "$tmp/am.yml")" = 2 ] && ! grep -qF '${' "$tmp/am.yml"; then
    pass "entrypoint fills the webhook URL into both receivers (& and \\ kept as they are)"
  else
    fail "entrypoint output: $(grep -n 'url:' "$tmp/am.yml")"
  fi
  if [ "$(stat -c %a "$tmp/am.yml")" = 600 ]; then
    pass "the rendered config is readable by its owner only"
  else
    fail "rendered config has mode $(stat -c %a "$tmp/am.yml")"
  fi
  if amtool check-config "$tmp/am.yml" >"$tmp/amtool.log" 2>&1; then
    pass "amtool check-config on the rendered alertmanager.yml"
  else
    cat "$tmp/amtool.log"; fail "amtool check-config"
  fi
  routes() { amtool config routes test --config.file="$tmp/am.yml" "$@" 2>/dev/null; }
  got=$(routes alertname=Watchdog severity=info)
  [ "$got" = watchdog ] && pass "Watchdog routes to the watchdog receiver" || fail "Watchdog routes to $got"
  got=$(routes alertname=FleetgateNodeDown node=gpu-01 severity=critical)
  [ "$got" = default ] && pass "FleetgateNodeDown routes to the default receiver" \
    || fail "FleetgateNodeDown routes to $got"
else
  cat "$tmp/render.log"; fail "entrypoint did not render the config"
fi
if render "$tmp/am2.yml" ALERTMANAGER_WEBHOOK_URL="$hook" \
    ALERTMANAGER_WATCHDOG_URL=https://deadman.example.org/ping/abc 2>/dev/null \
    && grep -qF "url: 'https://deadman.example.org/ping/abc'" "$tmp/am2.yml"; then
  pass "ALERTMANAGER_WATCHDOG_URL goes to the watchdog receiver"
else
  fail "ALERTMANAGER_WATCHDOG_URL is not used"
fi
for bad in "" "hooks.example.org/x" "https://x.example/a'b" "https://x.example/a b"; do
  rc=0
  render "$tmp/bad.yml" ALERTMANAGER_WEBHOOK_URL="$bad" 2>"$tmp/bad.log" || rc=$?
  if [ "$rc" = 64 ] && grep -q ALERTMANAGER_WEBHOOK_URL "$tmp/bad.log" \
      && { [ -z "$bad" ] || ! grep -qF -- "$bad" "$tmp/bad.log"; }; then
    pass "entrypoint refuses the webhook URL '$bad', naming the variable but not the value"
  else
    fail "entrypoint with the webhook URL '$bad': exit $rc, $(cat "$tmp/bad.log")"
  fi
done

# --- compose -----------------------------------------------------------------------------------
env_ok=$root/compose/.env.example
if rendered=$(docker-compose --env-file "$env_ok" -f "$root/compose/monitoring.yml" config 2>"$tmp/compose.log"); then
  ok=true
  for want in "image: prom/alertmanager:" "/etc/alertmanager/entrypoint.sh" \
      "ALERTMANAGER_WEBHOOK_URL: https://alerts.example.internal/fleetgate" \
      "--enable-feature=extra-scrape-metrics" "/etc/prometheus/rules"; do
    grep -qF -- "$want" <<<"$rendered" || { fail "monitoring.yml renders without '$want'"; ok=false; }
  done
  $ok && pass "monitoring.yml renders with Alertmanager, the rules mounted, extra scrape metrics on"
else
  cat "$tmp/compose.log"; fail "docker-compose config monitoring.yml"
fi
grep -v '^ALERTMANAGER_WEBHOOK_URL=' "$env_ok" >"$tmp/no-webhook.env"
if docker-compose --env-file "$tmp/no-webhook.env" -f "$root/compose/monitoring.yml" config -q 2>"$tmp/compose.log"; then
  fail "monitoring.yml renders without ALERTMANAGER_WEBHOOK_URL"
elif grep -q ALERTMANAGER_WEBHOOK_URL "$tmp/compose.log"; then
  pass "monitoring.yml refuses to render without ALERTMANAGER_WEBHOOK_URL, naming it"
else
  cat "$tmp/compose.log"; fail "monitoring.yml without a webhook URL: unexpected error"
fi

# --- end to end --------------------------------------------------------------------------------
if $run_e2e; then
  if "$python" "$here/e2e.py" --bin-dir "$bin_dir"; then
    pass "end to end: hub, agents, Prometheus, Alertmanager and a webhook"
  else
    fail "end to end (e2e.py)"
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "alerts: $failures failure(s) in ${SECONDS}s" >&2
  exit 1
fi
echo "alerts: all passed in ${SECONDS}s"
