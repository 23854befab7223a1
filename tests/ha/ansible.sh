#!/usr/bin/env bash
# The app-side playbook with a list of hubs (fleetgate_hub_urls), for real: two hubs on 127.0.0.1
# (one enrollment and one admin token), the run play installs the real agent binary (binary mode,
# start-stop-daemon: systemd is not PID 1 here) and waits until both hubs list the node as up;
# both serve its series. The stop play deregisters it from both. (Re-admission after a stop runs
# the same loop over the hubs; ansible/tests/run.sh covers it.) Everything it starts is stopped on
# exit.
#   tests/ha/ansible.sh        (FLEETGATE_VENV, FLEETGATE_HUB_BIN, FLEETGATE_AGENT_BIN as in
#                               ansible/tests/run.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/ansible"
VENV=${FLEETGATE_VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH"
PYTHON="$VENV/bin/python"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HUB_BIN=${FLEETGATE_HUB_BIN:-$TARGET_DIR/debug/fleetgate-hub}
AGENT_BIN=${FLEETGATE_AGENT_BIN:-$TARGET_DIR/debug/fleetgate-agent}

fail() { echo "FAIL (ansible, two hubs): $*" >&2; exit 1; }
ok() { echo "ok:   $*"; }
for f in "$HUB_BIN" "$AGENT_BIN"; do [ -x "$f" ] || fail "no binary at $f"; done
command -v ansible-playbook >/dev/null || fail "ansible-playbook not found in $VENV"
command -v start-stop-daemon >/dev/null || fail "start-stop-daemon not found"

TMP=$(mktemp -d /tmp/fleetgate-ha-ansible.XXXXXX)
HUB_PIDS=()
cleanup() {
  if [ -f "$TMP/root/run/fleetgate-agent.pid" ]; then
    start-stop-daemon --stop --quiet --oknodo --pidfile "$TMP/root/run/fleetgate-agent.pid" \
      --name fleetgate-agent --retry TERM/5/KILL/2 || true
  fi
  for pid in "${HUB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
export ANSIBLE_HOME="$TMP/ansible-home" ANSIBLE_LOCAL_TEMP="$TMP/ansible-tmp"
export ANSIBLE_REMOTE_TEMP="$TMP/ansible-remote-tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0

ADMIN="ha-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ENROLL="ha-enroll-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
URLS=()
for name in a b; do
  mkdir -p "$TMP/hub-$name"
  FLEETGATE_ADMIN_TOKEN=$ADMIN FLEETGATE_ENROLL_TOKEN=$ENROLL \
    "$HUB_BIN" --listen 127.0.0.1:0 --data-dir "$TMP/hub-$name" >"$TMP/hub-$name.log" 2>&1 &
  HUB_PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$TMP/hub-$name/listen.addr" ] && break; sleep 0.1; done
  [ -s "$TMP/hub-$name/listen.addr" ] || fail "hub $name did not start: $(tail -5 "$TMP/hub-$name.log")"
  URLS+=("http://$(cat "$TMP/hub-$name/listen.addr")")
done
ok "hubs at ${URLS[*]}"

NODE="ha-ansible-$$"
mkdir -p "$TMP/root/usr/local/bin" "$TMP/root/run" "$TMP/root/var/log"
cat >"$TMP/inventory" <<EOF
[app_servers]
server-local ansible_connection=local ansible_python_interpreter=$PYTHON ansible_become=false
EOF
"$PYTHON" "$ROOT/ansible/tests/local_agent_vars.py" "$TMP/vars.json" "$TMP/root" "$AGENT_BIN" "$(cat <<EOF
{
    "fleetgate_hub_urls": ["${URLS[0]}", "${URLS[1]}/"],
    "fleetgate_agent_enroll_token": "$ENROLL",
    "fleetgate_agent_admin_token": "$ADMIN",
    "fleetgate_agent_node": "$NODE"
}
EOF
)"
play() {
  local log=$1; shift
  ansible-playbook -i "$TMP/inventory" app-side/playbook.yaml -l server-local -e "@$TMP/vars.json" "$@" \
    >"$log" 2>&1 || { cat "$log"; tail -20 "$TMP/root/var/log/fleetgate-agent.log" 2>/dev/null || true; fail "play $*"; }
}
# Whole bodies, so that grep never cuts a pipe short.
serves() { local body; body=$(curl -fsS --max-time 5 "$1/metrics"); grep -q "^node_uname_info{.*node=\"$NODE\"" <<<"$body"; }
state() {
  curl -fsS --max-time 5 -H "Authorization: Bearer $ADMIN" "$1/nodes" \
    | "$PYTHON" -c "import json,sys; print(next((n['state'] for n in json.load(sys.stdin) if n['node']=='$NODE'), 'unknown'))"
}

play "$TMP/run1.log" --tags run-agent
grep -qx "hub = \"${URLS[0]},${URLS[1]}/\"" "$TMP/root/etc/fleetgate-agent/agent.toml" \
  || fail "agent.toml does not carry both hubs: $(grep '^hub' "$TMP/root/etc/fleetgate-agent/agent.toml")"
for url in "${URLS[@]}"; do
  [ "$(state "$url")" = up ] || fail "$url lists $NODE as $(state "$url")"
  found=
  for _ in $(seq 1 20); do serves "$url" && { found=1; break; }; sleep 0.5; done
  [ -n "$found" ] || fail "$url serves no node_uname_info of $NODE"
done
ok "run play: the agent gets both hubs, and both list $NODE as up and serve its series"

play "$TMP/stop1.log" --tags stop-agent
for url in "${URLS[@]}"; do
  [ "$(state "$url")" = removed ] || fail "after the stop play $url lists $NODE as $(state "$url")"
  serves "$url" && fail "$url still serves $NODE after the stop play"
done
ok "stop play: $NODE removed at both hubs, its series gone from both"

# The monitoring side's HA mode, in --check mode (its images come from a registry this machine
# cannot reach): it must deploy monitoring-ha.yml with VictoriaMetrics' relabeling and the HA
# datasource, and wait for both replicas and VictoriaMetrics rather than a single Prometheus.
cat >"$TMP/mon-inventory" <<EOF2
[monitoring]
monitoring-local ansible_connection=local ansible_python_interpreter=$PYTHON ansible_become=false
EOF2
ansible-playbook -i "$TMP/mon-inventory" monitoring-side/playbook.yaml --check --diff \
  --skip-tags stop-service -l monitoring-local -e "@tests/monitoring-check-vars.yml" \
  -e fleetgate_ha=true -e "fleetgate_monitoring_dir=$TMP/opt/fleetgate" >"$TMP/mon.log" 2>&1 \
  || { cat "$TMP/mon.log"; fail "monitoring side --check with fleetgate_ha"; }
grep -Eq '^monitoring-local +: .*failed=0' "$TMP/mon.log" || { cat "$TMP/mon.log"; fail "monitoring side --check failed"; }
task="Copy the HA layout's VictoriaMetrics relabeling and Grafana datasource"
awk -v t="TASK [$task" 'index($0, t) == 1 {f = 1; next} /^TASK / {f = 0} f' "$TMP/mon.log" | grep -q '^changed:' \
  || fail "HA mode did not copy VictoriaMetrics' relabeling and the HA datasource"
grep -q "compose/monitoring-ha.yml" "$TMP/mon.log" || fail "HA mode does not deploy monitoring-ha.yml"
grep -q "compose/monitoring.yml" "$TMP/mon.log" && fail "HA mode deploys the single layout's monitoring.yml"
ok "monitoring side, fleetgate_ha: deploys monitoring-ha.yml, VictoriaMetrics' relabeling and the HA datasource (--check)"
