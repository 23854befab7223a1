#!/usr/bin/env bash
# Proof for the Ansible deployment: lint (production profile) and yamllint for both playbooks,
# --syntax-check for both, then a real run of the app side against this machine: a real hub on
# 127.0.0.1, the real fleetgate-agent binary installed by the run play (binary mode, started with
# start-stop-daemon because systemd is not PID 1 here), the node's series checked on /metrics, a
# second run that must change nothing, the stop play that must remove the node and its series, and
# the monitoring side in --check mode. Exits non-zero on the first failure.
#
# Env: FLEETGATE_VENV (venv with ansible-core, ansible-lint, yamllint; default ./.venv),
#      FLEETGATE_HUB_BIN / FLEETGATE_AGENT_BIN (default: $CARGO_TARGET_DIR or ./target, debug build;
#      built with cargo when missing). A missing tool fails the run; with FLEETGATE_ALLOW_SKIP=1
#      the suite (or, for Docker and systemd-analyze, the part that needs it) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ANSIBLE_DIR=$PWD
ROOT=$(cd .. && pwd)
. "$ROOT/scripts/lib.sh"

VENV=${FLEETGATE_VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH"
PYTHON="$VENV/bin/python"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HUB_BIN=${FLEETGATE_HUB_BIN:-$TARGET_DIR/debug/fleetgate-hub}
AGENT_BIN=${FLEETGATE_AGENT_BIN:-$TARGET_DIR/debug/fleetgate-agent}

passed=0
step() { printf '\n--- ansible test (%ss): %s\n' "$SECONDS" "$*"; }
ok() { passed=$((passed + 1)); printf 'ok: %s\n' "$*"; }
fail() {
  printf 'FAILED: %s\n' "$*" >&2
  echo "ansible: ${passed} passed, 1 failed"
  exit 1
}

for tool in ansible-playbook ansible-lint yamllint; do
  require_cmd "$tool" "scripts/requirements-test.txt in $VENV" || exit 0
done
require_cmd start-stop-daemon "Debian package dpkg" || exit 0
require_cmd curl || exit 0

TMP=$(mktemp -d /tmp/fleetgate-ansible-test.XXXXXX)
HUB_PID=
cleanup() {
  # The agent the play started, if the stop play did not get to it.
  if [ -f "$TMP/root/run/fleetgate-agent.pid" ]; then
    start-stop-daemon --stop --quiet --oknodo --pidfile "$TMP/root/run/fleetgate-agent.pid" \
      --name fleetgate-agent --retry TERM/5/KILL/2 || true
  fi
  if [ -n "${COMPOSE_PROJECT:-}" ] && [ -f "$TMP/compose-agent/.env" ]; then
    (cd "$TMP/compose-agent" && docker-compose down -v --remove-orphans >/dev/null 2>&1) || true
  fi
  if [ -n "${COMPOSE_IMAGE:-}" ]; then docker image rm -f "$COMPOSE_IMAGE" >/dev/null 2>&1 || true; fi
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# Ansible keeps its temporary and cache files inside the test directory.
export ANSIBLE_HOME="$TMP/ansible-home"
export ANSIBLE_LOCAL_TEMP="$TMP/ansible-tmp"
export ANSIBLE_REMOTE_TEMP="$TMP/ansible-remote-tmp"
export ANSIBLE_NOCOLOR=1
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_STDOUT_CALLBACK=default

# --- static checks ---------------------------------------------------------------------------
step "yamllint (strict)"
yamllint -s -c .yamllint . || fail "yamllint"
ok "yamllint clean"

step "ansible-lint --profile production"
ansible-lint -c .ansible-lint --profile production --offline app-side monitoring-side tests \
  || fail "ansible-lint"
ok "ansible-lint production profile clean"

step "--syntax-check"
ansible-playbook -i app-side/inventory.example app-side/playbook.yaml --syntax-check || fail "app-side syntax"
ansible-playbook -i monitoring-side/inventory.example monitoring-side/playbook.yaml --syntax-check \
  || fail "monitoring-side syntax"
ok "both playbooks pass --syntax-check"

step "tags select the plays"
list_tasks() { ansible-playbook -i "$1/inventory.example" "$1/playbook.yaml" --list-tasks "${@:2}"; }
has() { grep -q -- "$2" <<<"$1"; }
out=$(list_tasks app-side --tags run-agent) || fail "--list-tasks"
has "$out" 'List GPUs with nvidia-smi' || fail "--tags run-agent selects Run agent"
has "$out" 'Stop the agent and deregister' && fail "--tags run-agent must not select Stop agent"
out=$(list_tasks app-side --tags run-node-registry) || fail "--list-tasks"
has "$out" 'List GPUs with nvidia-smi' || fail "--tags run-node-registry selects Run agent"
out=$(list_tasks app-side --tags stop-node-registry) || fail "--list-tasks"
has "$out" 'Stop the agent and deregister' || fail "--tags stop-node-registry selects Stop agent"
has "$out" 'List GPUs with nvidia-smi' && fail "--tags stop-node-registry must not run the run play"
out=$(list_tasks app-side) || fail "--list-tasks"
has "$out" 'Stop the agent and deregister' && fail "a run without tags must not stop the agent"
out=$(list_tasks monitoring-side --skip-tags stop-service) || fail "--list-tasks"
has "$out" 'Install Docker and docker-compose' || fail "--skip-tags stop-service installs Docker"
has "$out" 'compose up' || fail "--skip-tags stop-service runs the services"
has "$out" 'compose down' && fail "--skip-tags stop-service must leave the stop play out"
out=$(list_tasks monitoring-side --tags run-service) || fail "--list-tasks"
has "$out" 'compose up' || fail "--tags run-service runs the services"
has "$out" 'Install Docker and docker-compose' && fail "--tags run-service installs nothing"
out=$(list_tasks monitoring-side --tags stop-service) || fail "--list-tasks"
has "$out" 'compose down' || fail "--tags stop-service stops the services"
has "$out" 'compose up' && fail "--tags stop-service must not start anything"
ok "run/stop plays and their aliases are selected by tags"

# --- a real app-side run against this machine ------------------------------------------------
if [ ! -x "$HUB_BIN" ] || [ ! -x "$AGENT_BIN" ]; then
  step "building fleetgate-hub and fleetgate-agent"
  (cd "$ROOT" && cargo build -q -p fleetgate-hub -p fleetgate-agent) || fail "cargo build"
fi
[ -x "$HUB_BIN" ] || fail "no hub binary at $HUB_BIN"
[ -x "$AGENT_BIN" ] || fail "no agent binary at $AGENT_BIN"

step "starting a hub on 127.0.0.1"
mkdir -p "$TMP/hub"
"$HUB_BIN" --listen 127.0.0.1:0 --data-dir "$TMP/hub" >"$TMP/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 1 100); do [ -s "$TMP/hub/listen.addr" ] && break; sleep 0.1; done
[ -s "$TMP/hub/listen.addr" ] || { cat "$TMP/hub.log" >&2; fail "hub did not write listen.addr"; }
HUB_URL="http://$(cat "$TMP/hub/listen.addr")"
ADMIN_TOKEN=$(cat "$TMP/hub/admin.token")
ENROLL_TOKEN=$(cat "$TMP/hub/enroll.token")
ok "hub listening at $HUB_URL"

NODE="ansible-test-$$"
mkdir -p "$TMP/root"
# Two hosts; -l picks the local one, the other is never contacted.
cat >"$TMP/inventory" <<EOF
[app_servers]
server-local ansible_connection=local ansible_python_interpreter=$PYTHON ansible_become=false
server-other ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh
EOF
# Everything the play writes goes under $TMP/root; the agent runs as the current user.
"$PYTHON" "$ANSIBLE_DIR/tests/local_agent_vars.py" "$TMP/vars.json" "$TMP/root" "$AGENT_BIN" "$(cat <<EOF
{
    "fleetgate_agent_hub_url": "$HUB_URL",
    "fleetgate_agent_enroll_token": "$ENROLL_TOKEN",
    "fleetgate_agent_admin_token": "$ADMIN_TOKEN",
    "fleetgate_agent_node": "$NODE",
    "fleetgate_agent_labels": {"rollout": "ansible-test"}
}
EOF
)"
mkdir -p "$TMP/root/usr/local/bin" "$TMP/root/run" "$TMP/root/var/log"

play() {
  local log=$1; shift
  local rc=0
  ansible-playbook -i "$TMP/inventory" app-side/playbook.yaml -l server-local -e "@$TMP/vars.json" "$@" \
    >"$log" 2>&1 || rc=$?
  grep -E '^\[(WARNING|DEPRECATION WARNING)\]' "$log" || true
  return "$rc"
}
recap() { grep -E '^server-local +: ' "$1" || true; }
# Whole bodies: a pipeline into grep -q would stop reading early, and with pipefail the
# writer's SIGPIPE would turn a match into a failure.
metrics() { curl -fsS --max-time 5 "$HUB_URL/metrics"; }
nodes() { curl -fsS --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" "$HUB_URL/nodes"; }

step "run play (--tags run-agent -l server-local)"
if ! play "$TMP/run1.log" --tags run-agent; then
  cat "$TMP/run1.log"; cat "$TMP/root/var/log/fleetgate-agent.log" 2>/dev/null || true
  fail "run play"
fi
recap "$TMP/run1.log"
grep -q 'server-other' "$TMP/run1.log" && fail "-l server-local must leave server-other alone"
grep -Eq 'changed=[1-9]' <(recap "$TMP/run1.log") || fail "first run must report changes"
ok "run play installed and started the agent; the hub lists $NODE as up"

step "/metrics carries the node"
# Series the agent pushed (everything but the hub's own fleetgate_node_* about it), carrying the
# node's labels, including the enrollment label the play configured.
agent_series() {
  metrics | grep -E '^[a-zA-Z_:][a-zA-Z0-9_:]*\{' | grep -v '^fleetgate_node_' | grep "node=\"$NODE\"" || true
}
found=
for _ in $(seq 1 30); do
  if agent_series | grep 'rollout="ansible-test"' >/dev/null; then found=1; break; fi
  sleep 1
done
[ -n "$found" ] || { metrics | head -50; fail "/metrics has no series pushed by $NODE"; }
echo "$(agent_series | wc -l) series from $NODE, e.g.: $(agent_series | head -1)"
metrics | grep -E "^fleetgate_node_up\{" | grep "node=\"$NODE\"" | grep -E ' 1$' >/dev/null \
  || fail "fleetgate_node_up is not 1 for $NODE"
ok "/metrics carries the series $NODE pushed and fleetgate_node_up 1"

step "second run changes nothing (alias tag run-node-registry)"
play "$TMP/run2.log" --tags run-node-registry || { cat "$TMP/run2.log"; fail "second run play"; }
recap "$TMP/run2.log"
recap "$TMP/run2.log" | grep -Eq 'changed=0 +unreachable=0 +failed=0' \
  || { cat "$TMP/run2.log"; fail "second run must report changed=0"; }
ok "second run: changed=0"

step "stop play (--tags stop-agent)"
play "$TMP/stop1.log" --tags stop-agent || { cat "$TMP/stop1.log"; fail "stop play"; }
recap "$TMP/stop1.log"
grep -Eq 'changed=[1-9]' <(recap "$TMP/stop1.log") || fail "stop play must report changes"
start-stop-daemon --status --pidfile "$TMP/root/run/fleetgate-agent.pid" --name fleetgate-agent \
  && fail "the agent still runs after the stop play"
if metrics | grep "node=\"$NODE\"" >/dev/null; then
  metrics | grep "node=\"$NODE\"" | head -5
  fail "$NODE's series are still on /metrics"
fi
nodes >"$TMP/nodes.json" || fail "GET /nodes"
"$PYTHON" - "$TMP/nodes.json" "$NODE" <<'EOF' || fail "/nodes must show the node removed"
import json, sys
doc = json.load(open(sys.argv[1]))
nodes = doc
states = [n.get("state") for n in nodes if n.get("node") == sys.argv[2]]
print(f"/nodes: {sys.argv[2]} -> {states}")
sys.exit(0 if states in ([], ["removed"]) else 1)
EOF
ok "stop play stopped the agent, deregistered $NODE, and its series are gone"

step "run after stop: the play re-admits the removed node"
play "$TMP/run3.log" --tags run-agent || { cat "$TMP/run3.log"; fail "run play after stop"; }
recap "$TMP/run3.log"
grep -A1 'Re-admit the node removed by an earlier stop' "$TMP/run3.log" | grep -q '^changed:' \
  || fail "the run after the stop did not re-admit the node"
metrics | grep -E "^fleetgate_node_up\{" | grep "node=\"$NODE\"" | grep -E ' 1$' >/dev/null \
  || fail "$NODE is not up again after the re-run"
ok "a run after a stop re-admits $NODE and it is up again"

step "stop again, then a further stop changes nothing (alias tag stop-node-registry)"
play "$TMP/stop2.log" --tags stop-agent || { cat "$TMP/stop2.log"; fail "stop play after re-run"; }
metrics | grep "node=\"$NODE\"" >/dev/null && fail "$NODE's series are still on /metrics after the second stop"
play "$TMP/stop3.log" --tags stop-node-registry || { cat "$TMP/stop3.log"; fail "third stop play"; }
recap "$TMP/stop3.log" | grep -Eq 'changed=0 +unreachable=0 +failed=0' \
  || { cat "$TMP/stop3.log"; fail "a stop of a stopped agent must report changed=0"; }
ok "stop removed it again; a further stop: changed=0"

# --- compose mode: the same cycle with compose/app-cpu.yml and a locally built image ----------
step "compose mode (compose/app-cpu.yml, docker-compose, host network)"
if require "a running Docker engine (compose mode)" docker info \
   && require_cmd docker-compose "compose mode"; then
  # No registry: an image like compose/build-images.sh makes, from the agent binary already built
  # (dynamically linked, so with the libraries ldd names) and the static busybox.
  COMPOSE_TAG="ansible-test-$$"
  COMPOSE_IMAGE="fleetgate-agent:$COMPOSE_TAG"
  COMPOSE_PROJECT="fleetgate-ansible-test-$$"
  ctx="$TMP/image"
  mkdir -p "$ctx/root/bin" "$ctx/root/var/lib/fleetgate-agent" "$ctx/root/tmp"
  install -m 0755 "$AGENT_BIN" "$ctx/root/fleetgate-agent"
  install -m 0755 /bin/busybox "$ctx/root/bin/busybox"
  for lib in $(ldd "$AGENT_BIN" | grep -o '/[^ ]*'); do install -D "$(readlink -f "$lib")" "$ctx/root$lib"; done
  tar -C "$ctx/root" --owner=0 --group=0 --numeric-owner -cf "$ctx/rootfs.tar" .
  cp "$ROOT/docker/agent.Dockerfile" "$ctx/Dockerfile"
  docker build -q -t "$COMPOSE_IMAGE" "$ctx" >/dev/null 2>"$TMP/build.log" || { cat "$TMP/build.log"; fail "agent image"; }
  CNODE="$NODE-compose"
  cat >"$TMP/compose-vars.json" <<EOF
{"fleetgate_agent_install_mode": "compose", "fleetgate_agent_node": "$CNODE",
 "fleetgate_agent_compose_dir": "$TMP/compose-agent", "fleetgate_agent_compose_project": "$COMPOSE_PROJECT",
 "fleetgate_agent_image_tag": "$COMPOSE_TAG", "fleetgate_agent_compose_env": {"FLEETGATE_LOG": "info"},
 "fleetgate_agent_compose_extra_files": ["$ANSIBLE_DIR/tests/compose-private-root.yml"]}
EOF
  play "$TMP/crun1.log" --tags run-agent -e "@$TMP/compose-vars.json" \
    || { cat "$TMP/crun1.log"; (cd "$TMP/compose-agent" && docker-compose logs --tail 30) || true; fail "compose run play"; }
  recap "$TMP/crun1.log"
  found=
  for _ in $(seq 1 30); do
    if NODE=$CNODE agent_series | grep 'rollout="ansible-test"' >/dev/null; then found=1; break; fi
    sleep 1
  done
  [ -n "$found" ] || fail "/metrics has no series pushed by $CNODE"
  play "$TMP/crun2.log" --tags run-agent -e "@$TMP/compose-vars.json" || { cat "$TMP/crun2.log"; fail "compose re-run"; }
  recap "$TMP/crun2.log" | grep -Eq 'changed=0 +unreachable=0 +failed=0' \
    || { cat "$TMP/crun2.log"; fail "compose mode: second run must report changed=0"; }
  play "$TMP/cstop.log" --tags stop-agent -e "@$TMP/compose-vars.json" || { cat "$TMP/cstop.log"; fail "compose stop play"; }
  recap "$TMP/cstop.log"
  grep -A1 'Deregister the node from the hub' "$TMP/cstop.log" | grep -q '^changed:' || fail "compose stop did not deregister"
  metrics | grep "node=\"$CNODE\"" >/dev/null && fail "$CNODE's series are still on /metrics"
  [ -z "$(docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT")" ] || fail "compose agent still runs"
  ok "compose mode: up on the hub, second run changed=0, stop deregistered $CNODE and removed the container"
fi

# --- the systemd unit, rendered by the role and checked by systemd itself --------------------
step "the packaged unit with the role's drop-in passes systemd-analyze verify"
if require_cmd systemd-analyze "Debian package systemd"; then
  mkdir -p "$TMP/unit"
  ansible-playbook -i "$TMP/inventory" tests/render-unit.yaml -l server-local -e "@$TMP/vars.json" \
    -e "fleetgate_agent_unit_dir=$TMP/unit" -e fleetgate_agent_state_dir=/var/lib/fleetgate-agent-test >"$TMP/unit.log" 2>&1 || { cat "$TMP/unit.log"; fail "render unit"; }
  for kind in cpu gpu; do
    unit="$TMP/unit/$kind/fleetgate-agent.service"
    dropin="$TMP/unit/$kind/fleetgate-agent.service.d/site.conf"
    [ -s "$unit" ] && [ -s "$dropin" ] || fail "no unit and drop-in for a $kind node"
    # The drop-in points ExecStart at the binary this test installs; verify reads it from the
    # unit's directory and checks that the binary is there.
    grep -qx "ExecStart=$TMP/root/usr/local/bin/fleetgate-agent --config $TMP/root/etc/fleetgate-agent/agent.toml" "$dropin" \
      || { cat "$dropin"; fail "the $kind drop-in does not run the installed binary with its agent.toml"; }
    if [ "$kind" = cpu ]; then
      grep -qx 'PrivateDevices=yes' "$dropin" || fail "the CPU drop-in must close the device nodes"
    else
      grep -q 'PrivateDevices' "$dropin" && fail "the GPU drop-in must leave the NVIDIA devices reachable"
    fi
    # systemd-analyze exits 0 on unknown keys and bad values, so any output counts as a problem.
    systemd-analyze verify --man=no "$unit" >"$TMP/verify.log" 2>&1 || { cat "$TMP/verify.log"; fail "verify $kind unit"; }
    if [ -s "$TMP/verify.log" ]; then cat "$TMP/verify.log"; fail "systemd-analyze reports problems in the $kind unit"; fi
  done
  ok "the packaged unit with the CPU and GPU drop-ins passes systemd-analyze verify"
fi

# --- monitoring side: --check against this machine -------------------------------------------
step "monitoring side in --check mode (-l monitoring-local)"
cat >"$TMP/mon-inventory" <<EOF
[monitoring]
monitoring-local ansible_connection=local ansible_python_interpreter=$PYTHON ansible_become=false
EOF
ansible-playbook -i "$TMP/mon-inventory" monitoring-side/playbook.yaml --check --diff \
  --skip-tags stop-service -l monitoring-local -e "@tests/monitoring-check-vars.yml" \
  -e "fleetgate_monitoring_dir=$TMP/opt/fleetgate" >"$TMP/mon.log" 2>&1 \
  || { cat "$TMP/mon.log"; fail "monitoring side --check"; }
recap_mon=$(grep -E '^monitoring-local +: ' "$TMP/mon.log" || true)
echo "$recap_mon"
echo "$recap_mon" | grep -q 'failed=0' || fail "monitoring side --check failed tasks"
ok "monitoring side runs in --check mode"

echo
echo "ansible: ${passed} passed, 0 failed"
