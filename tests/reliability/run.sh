#!/usr/bin/env bash
# The reliability suite of the test command: the short version of every part of the campaign
# (docs/RELIABILITY.md has the full runs and their figures) — soak with SIGKILL, SIGSTOP and
# graceful restarts; abusive clients; overload; a full and a read-only data directory (root);
# network faults in a network namespace (root, iproute2, iptables); upgrade compatibility with the previous release's binaries. Each part
# exits non-zero when one of its checks fails; the JSON reports land in $TARGET/reliability/.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. scripts/lib.sh

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
CAMPAIGN=$TARGET/release/fleetgate-campaign
export FLEETGATE_CAMPAIGN_HUB_BIN=$TARGET/release/fleetgate-hub
export FLEETGATE_CAMPAIGN_AGENT_BIN=$TARGET/release/fleetgate-agent
for b in "$CAMPAIGN" "$FLEETGATE_CAMPAIGN_HUB_BIN" "$FLEETGATE_CAMPAIGN_AGENT_BIN"; do
  [ -x "$b" ] || { echo "FAIL: $b not built (cargo build --release -p fleetgate-hub -p fleetgate-agent -p fleetgate-loadtest)" >&2; exit 1; }
done
OUT=$TARGET/reliability
mkdir -p "$OUT"

failed=()
part() {
  local name=$1; shift
  log "reliability: $name"
  local start=$SECONDS
  if "$@"; then
    echo "reliability: $name passed in $((SECONDS - start)) s"
  else
    echo "reliability: $name FAILED after $((SECONDS - start)) s" >&2
    failed+=("$name")
  fi
}

for p in soak abuse overload; do
  part "$p" "$CAMPAIGN" --quick --json "$OUT/$p.json" "$p"
done
if require "root, ip, tc and iptables (network namespaces for the fault injection)" \
    bash -c '[ "$(id -u)" = 0 ] && command -v ip && command -v tc && command -v iptables'; then
  part faults "$CAMPAIGN" --quick --json "$OUT/faults.json" faults
fi
part disk bash tests/reliability/disk.sh
part compat bash tests/reliability/compat.sh

if [ ${#failed[@]} -gt 0 ]; then
  echo "reliability: failed: ${failed[*]}" >&2
  exit 1
fi
echo "reliability: every part passed"
