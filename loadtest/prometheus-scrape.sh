#!/bin/bash
# Measures what a real Prometheus pays to scrape one hub: starts a hub on 127.0.0.1:18000, has
# the load rig push NODES simulated nodes (values pushes, 15 s) into it, and runs Prometheus
# (15 s scrape interval and timeout) for WINDOW seconds against it as one unsharded target or
# as 8 shard targets (the relabelling of compose/prometheus/prometheus-sharded.yml). Prints
# Prometheus' RSS every 15 s, its peak RSS and CPU time, and each target's scrape duration.
#
#   loadtest/prometheus-scrape.sh unsharded|sharded [NODES=1000] [WINDOW=180]
#
# Needs `prometheus` and `curl`, release builds of fleetgate-hub and fleetgate-loadtest
# (cargo build --release -p fleetgate-hub -p fleetgate-loadtest), and ports 18000 and 19090.
set -euo pipefail
MODE=${1:?usage: $0 unsharded|sharded [NODES] [WINDOW]}
NODES=${2:-1000}
WINDOW=${3:-180}
case "$MODE" in unsharded | sharded) ;; *) echo "mode must be unsharded or sharded" >&2; exit 2 ;; esac
BIN=${BIN:-target/release}
D=$(mktemp -d /tmp/fleetgate-prometheus-scrape.XXXXXX)
mkdir -p "$D/data" "$D/prom"
echo "scratch directory: $D"
echo prometheus-scrape-enroll-token-0123456789 >"$D/token"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
"$BIN/fleetgate-hub" --listen 127.0.0.1:18000 --data-dir "$D/data" \
  --enroll-token-file "$D/token" >"$D/hub.log" 2>&1 &
HUB=$!
pids+=("$HUB")
sleep 1
{
  echo "global: {scrape_interval: 15s, scrape_timeout: 15s}"
  echo "scrape_configs:"
  echo "  - job_name: fleetgate"
  echo "    honor_labels: true"
  if [ "$MODE" = unsharded ]; then
    echo '    static_configs: [{targets: ["127.0.0.1:18000"]}]'
  else
    echo "    static_configs:"
    for i in 0 1 2 3 4 5 6 7; do
      echo '      - targets: ["127.0.0.1:18000"]'
      echo "        labels: {shard: \"$i\", of: \"8\"}"
    done
    cat <<'Y'
    relabel_configs:
      - source_labels: [shard]
        target_label: __param_shard
      - source_labels: [of]
        target_label: __param_of
      - source_labels: [__address__, shard, of]
        separator: ";"
        regex: "(.+);(.+);(.+)"
        target_label: instance
        replacement: "${1}/shard-${2}-of-${3}"
      - action: labeldrop
        regex: "shard|of"
Y
  fi
} >"$D/prometheus.yml"
"$BIN/fleetgate-loadtest" --hub-url http://127.0.0.1:18000 --enroll-token-file "$D/token" \
  --hub-pid "$HUB" --nodes "$NODES" --systems fleetgate --push values --ramp 30s \
  --duration "$((WINDOW + 60))s" --saturate 0s --scrape-interval 1000s --progress 60s \
  >"$D/loadtest.log" 2>&1 &
pids+=("$!")
echo "waiting 45 s for $NODES nodes to enroll and push"
sleep 45
prometheus --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/prom" \
  --web.listen-address=127.0.0.1:19090 >"$D/prometheus.log" 2>&1 &
PROM=$!
pids+=("$PROM")
rss() { awk '/VmRSS/ { printf "%.0f MB", $2 / 1024 }' "/proc/$1/status"; }
for i in $(seq 1 $((WINDOW / 15))); do
  sleep 15
  echo "$((i * 15)) s: prometheus RSS $(rss "$PROM"), hub RSS $(rss "$HUB")"
done
query() {
  curl -sf -G http://127.0.0.1:19090/api/v1/query --data-urlencode "query=$1" |
    python3 -c 'import json,sys; [print("  ", r["metric"].get("instance", ""), r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]]'
}
echo "scrape_duration_seconds, last:"
query scrape_duration_seconds
echo "scrape_duration_seconds, max over the window:"
query "max_over_time(scrape_duration_seconds[${WINDOW}s])"
echo "samples scraped per target:"
query scrape_samples_scraped
awk '/VmHWM/ { printf "prometheus peak RSS %.0f MB\n", $2 / 1024 }' "/proc/$PROM/status"
echo "prometheus CPU time $(ps -o times= -p "$PROM" | tr -d ' ') s over $((WINDOW + 15)) s"
