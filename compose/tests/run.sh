#!/usr/bin/env bash
# Tests of the deployment files: every compose file is valid for docker-compose (and refuses to
# start without its secrets), the Prometheus config passes promtool, and the hub and agent images
# build from scratch and work together: an agent container, configured like compose/app-cpu.yml,
# enrolls with a hub container and its node appears on the hub's /metrics.
#   compose/tests/run.sh            (FLEETGATE_IMAGE_PROFILE=dev for a faster, larger build)
# Needs: docker-compose, a running dockerd, cargo, curl, /bin/busybox (static), promtool. A
# missing one fails the run; with FLEETGATE_ALLOW_SKIP=1 the parts that need it are skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
compose=$root/compose
id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

tmp=$(mktemp -d)
net=fleetgate-test-$id
hub=fleetgate-test-hub-$id
agent=fleetgate-test-agent-$id
tag=test-$id
mon_project=fleetgate-test-mon-$id
cleanup() {
  if [ -f "$tmp/mon.env" ]; then
    docker-compose -p "$mon_project" --env-file "$tmp/mon.env" -f "$compose/monitoring.yml" down -v >/dev/null 2>&1 || true
  fi
  docker rm -f "$agent" "$hub" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  docker rmi -f "fleetgate-hub:$tag" "fleetgate-agent:$tag" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- compose files -----------------------------------------------------------------------------
require_cmd docker-compose "compose file checks" && {
  : >"$tmp/empty.env"
  for f in monitoring.yml app-cpu.yml app-gpu.yml; do
    if docker-compose --env-file "$compose/.env.example" -f "$compose/$f" config -q; then
      pass "docker-compose config $f"
    else
      fail "docker-compose config $f"
    fi
    # Secrets and the hub address are required: without an .env the file must not render.
    if docker-compose --env-file "$tmp/empty.env" -f "$compose/$f" config -q 2>/dev/null; then
      fail "$f renders without compose/.env (secrets must be required)"
    else
      pass "$f refuses to render without its .env values"
    fi
  done
  rendered=$(docker-compose --env-file "$compose/.env.example" -f "$compose/monitoring.yml" config)
  published=$(printf '%s\n' "$rendered" | sed -n 's/^ *- published: \([0-9]*\)$/\1/p' | sort -n | tr '\n' ' ')
  if [ "$published" = "3000 8000 " ]; then
    pass "monitoring.yml publishes only 3000 and 8000"
  else
    fail "monitoring.yml publishes: $published (want only 3000 and 8000)"
  fi
  for f in app-cpu.yml app-gpu.yml; do
    out=$(docker-compose --env-file "$compose/.env.example" -f "$compose/$f" config)
    for want in "/var/run/docker.sock:/var/run/docker.sock:ro" "/proc:/host/proc:ro" \
        "/sys:/host/sys:ro" "/:/host/root:ro,rslave" "FLEETGATE_PROC_PATH: /host/proc" \
        "network_mode: host" "pid: host"; do
      grep -qF -- "$want" <<<"$out" || fail "$f lacks $want"
    done
  done
  if grep -q 'driver: nvidia' <<<"$out"; then
    pass "app-gpu.yml reserves NVIDIA devices"
  else
    fail "app-gpu.yml has no NVIDIA device reservation"
  fi
}
require_cmd docker-compose "monitoring.yml's own agent" && {
  # The monitoring server's agent: like app-cpu.yml's, enrolled with the hub's token as "monitoring".
  out=$(docker-compose --env-file "$compose/.env.example" -f "$compose/monitoring.yml" config)
  agent_service=$(sed -n '/^  agent:$/,/^  [a-z]/p' <<<"$out")
  for want in "/proc:/host/proc:ro" "/sys:/host/sys:ro" "/:/host/root:ro,rslave" \
      "/var/run/docker.sock:/var/run/docker.sock:ro" "network_mode: host" "pid: host" \
      "FLEETGATE_NODE: monitoring" "FLEETGATE_ENROLL_TOKEN: change-me-enroll-token" \
      "FLEETGATE_HUB: http://127.0.0.1:8000"; do
    grep -qF -- "$want" <<<"$agent_service" || fail "monitoring.yml's agent lacks $want"
  done
  pass "monitoring.yml runs an agent for the monitoring server (node monitoring, the hub's token)"
}
require_cmd promtool "Prometheus config check" && {
  if promtool check config "$compose/prometheus/prometheus.yml" >/dev/null; then
    pass "promtool check config prometheus.yml"
  else
    fail "promtool check config prometheus.yml"
  fi
}

# --- images: build and run against each other ---------------------------------------------------
images_ok=true
for tool in docker cargo curl; do require_cmd "$tool" "image build and run" || images_ok=false; done
require "/bin/busybox (static, Debian busybox-static)" test -x /bin/busybox || images_ok=false
if $images_ok; then require "a running Docker engine" docker info || images_ok=false; fi
if $images_ok; then
  "$compose/build-images.sh" --tag "$tag" --profile "${FLEETGATE_IMAGE_PROFILE:-release}" \
    || { fail "build-images.sh"; exit 1; }
  admin=admin-$id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  enroll=enroll-$id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  docker network create "$net" >/dev/null
  docker run -d --name "$hub" --network "$net" -p 127.0.0.1::8000 \
    -e FLEETGATE_ADMIN_TOKEN="$admin" -e FLEETGATE_ENROLL_TOKEN="$enroll" \
    "fleetgate-hub:$tag" >/dev/null || { fail "hub container did not start"; exit 1; }
  port=$(docker port "$hub" 8000/tcp | head -n1 | sed 's/.*://')
  hub_url=http://127.0.0.1:$port
  up=false
  for _ in $(seq 1 60); do
    curl -fsS "$hub_url/healthz" >/dev/null 2>&1 && { up=true; break; }
    sleep 0.5
  done
  $up && pass "hub container answers /healthz on $hub_url" || fail "hub container not healthy: $(docker logs --tail 20 "$hub" 2>&1)"

  # Configured as in app-cpu.yml, but on a private network instead of the host's, and / without
  # rslave: build machines that are themselves containers have no shared root mount.
  node=compose-test-$id
  docker run -d --name "$agent" --network "$net" \
    -e FLEETGATE_HUB="http://$hub:8000" -e FLEETGATE_ENROLL_TOKEN="$enroll" \
    -e FLEETGATE_NODE="$node" -e FLEETGATE_INTERVAL=2s \
    -e FLEETGATE_COLLECTORS=host,containers,triton \
    -e FLEETGATE_PROC_PATH=/host/proc -e FLEETGATE_SYS_PATH=/host/sys \
    -e FLEETGATE_ROOTFS_PATH=/host/root -e FLEETGATE_DOCKER_SOCKET=/var/run/docker.sock \
    -v /proc:/host/proc:ro -v /sys:/host/sys:ro -v /:/host/root:ro \
    -v /var/run/docker.sock:/var/run/docker.sock:ro \
    "fleetgate-agent:$tag" >/dev/null || { fail "agent container did not start"; exit 1; }
  # The node is listed once enrolled; its host metrics arrive with the first push.
  seen=false
  host_seen=false
  for _ in $(seq 1 90); do
    metrics=$(curl -fsS "$hub_url/metrics" 2>/dev/null || true)
    grep -q "node=\"$node\"" <<<"$metrics" && seen=true
    if grep -q "^node_uname_info{.*node=\"$node\"" <<<"$metrics"; then host_seen=true; break; fi
    sleep 1
  done
  if $seen; then
    pass "agent container's node $node appears on the hub container's /metrics"
  else
    fail "node $node never appeared on $hub_url/metrics; agent log: $(docker logs --tail 20 "$agent" 2>&1)"
  fi
  if $host_seen; then
    pass "host metrics of the agent container (node_uname_info) reach the hub"
  else
    fail "no node_uname_info from the agent container; agent log: $(docker logs --tail 20 "$agent" 2>&1)"
  fi
  # The image's own HEALTHCHECK (busybox wget) must pass.
  health=unknown
  for _ in $(seq 1 45); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$hub")
    [ "$health" = healthy ] && break
    sleep 1
  done
  [ "$health" = healthy ] && pass "hub image HEALTHCHECK reports healthy" || fail "hub health: $health"
  [ "$(docker inspect -f '{{.State.Running}}' "$agent")" = true ] \
    && pass "agent container still running" || fail "agent container exited"
fi

# --- the monitoring side's own agent, from monitoring.yml --------------------------------------------
if $images_ok; then
  # hub and agent of monitoring.yml with the images built above (Prometheus and Grafana are not
  # started: no registry to pull them from). The hub's port is published on the host, where the
  # agent (host network) pushes to it.
  mon_port=
  for _ in $(seq 1 20); do
    candidate=$((22000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 1000))
    if ! ss -Htln "sport = :$candidate" | grep -q .; then mon_port=$candidate; break; fi
  done
  [ -n "$mon_port" ] || { fail "no free port in 22000-22999 for monitoring.yml's hub"; exit 1; }
  cat >"$tmp/mon.env" <<EOF
FLEETGATE_ADMIN_TOKEN=admin-$id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
FLEETGATE_ENROLL_TOKEN=enroll-$id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
GRAFANA_ADMIN_USER=admin
GRAFANA_ADMIN_PASSWORD=unused-$id
FLEETGATE_VERSION=$tag
FLEETGATE_HUB_PORT=$mon_port
FLEETGATE_INTERVAL=2s
ALERTMANAGER_WEBHOOK_URL=http://127.0.0.1:9/unused-$id
EOF
  # This machine's / is a private mount: no rslave (the same override the Ansible test uses).
  mon_compose=(docker-compose -p "$mon_project" --env-file "$tmp/mon.env" -f "$compose/monitoring.yml"
               -f "$root/ansible/tests/compose-private-root.yml")
  if "${mon_compose[@]}" up -d hub agent >"$tmp/mon-up.log" 2>&1; then
    mon_seen=false
    for _ in $(seq 1 60); do
      metrics=$(curl -fsS "http://127.0.0.1:$mon_port/metrics" 2>/dev/null || true)
      if grep -q '^node_uname_info{.*node="monitoring"' <<<"$metrics"; then mon_seen=true; break; fi
      sleep 1
    done
    if $mon_seen; then
      pass "monitoring.yml's agent enrolls as node monitoring and its host metrics reach the hub"
    else
      fail "node monitoring never reached the hub; agent log: $("${mon_compose[@]}" logs --tail 20 agent 2>&1)"
    fi
    if grep -q '^container_last_seen{.*node="monitoring"' <<<"$metrics"; then
      pass "the monitoring server's containers are reported too"
    else
      fail "no container metrics from node monitoring"
    fi
  else
    cat "$tmp/mon-up.log" >&2
    fail "docker-compose up hub agent (monitoring.yml)"
  fi
  "${mon_compose[@]}" down -v >/dev/null 2>&1 || fail "docker-compose down (monitoring.yml)"
fi

if [ "$failures" -gt 0 ]; then
  echo "compose tests: $failures failure(s)" >&2
  exit 1
fi
echo "compose tests: all passed"
