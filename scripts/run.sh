#!/usr/bin/env bash
# Fleetgate's main job on one machine, zero configuration: a hub on :8000 (data in ./data) and a
# local agent pushing this machine's metrics to it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p fleetgate-hub -p fleetgate-agent
TARGET=${CARGO_TARGET_DIR:-target}
HUB=$TARGET/release/fleetgate-hub
AGENT=$TARGET/release/fleetgate-agent
DATA=${FLEETGATE_DATA_DIR:-./data}
mkdir -p "$DATA"
rm -f "$DATA/listen.addr"

pids=()
cleanup() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$HUB" --data-dir "$DATA" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$DATA/listen.addr" ] && break; sleep 0.1; done
[ -s "$DATA/listen.addr" ] || { echo "hub did not start" >&2; exit 1; }
port=$(sed 's/.*://' "$DATA/listen.addr")

# The agent enrolls with the hub's generated enrollment token and keeps its push token in
# $DATA/agent. Docker, GPU and Triton collectors switch themselves off when absent.
"$AGENT" --hub "http://127.0.0.1:${port}" --enroll-token-file "$DATA/enroll.token" \
  --state-dir "$DATA/agent" &
pids+=($!)

cat <<MSG

Fleetgate is running.
  federated metrics:  http://127.0.0.1:${port}/metrics
  enrolled nodes:     curl -H "Authorization: Bearer \$(cat $DATA/admin.token)" http://127.0.0.1:${port}/nodes
  admin token:        $DATA/admin.token     enrollment token: $DATA/enroll.token
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
