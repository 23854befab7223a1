#!/usr/bin/env bash
# Upgrade compatibility, with real binaries of three wire generations:
#   previous — the last release before values pushes (its agent sends only full FGSN v1
#              snapshots; its hub reads FGSN v1 and text), built from git;
#   current  — this tree;
#   future   — this tree with the snapshot encoding one version ahead (FGSN v2), as the next
#              release's agent will speak.
# Checks: previous agent → current hub; current agent → previous hub (a 415 to its values
# pushes, full snapshots instead, no failed push); future agent → current hub (a clear 415
# naming the version, then the text format). Builds are cached under $TARGET/compat/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. scripts/lib.sh

# The last revision before the agent started sending values pushes.
PREVIOUS=54d6e1a
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
COMPAT=$TARGET/compat
CURRENT_HUB=$TARGET/release/fleetgate-hub
CURRENT_AGENT=$TARGET/release/fleetgate-agent
INTERVAL=${FLEETGATE_COMPAT_INTERVAL:-1s}

require_cmd git
require_cmd curl
for b in "$CURRENT_HUB" "$CURRENT_AGENT"; do
  [ -x "$b" ] || { echo "FAIL: $b not built (cargo build --release -p fleetgate-hub -p fleetgate-agent)" >&2; exit 1; }
done

# build_tree NAME DIR: builds fleetgate-hub and fleetgate-agent of the source tree DIR into
# $COMPAT/NAME/. Not in the workspace's target directory: cargo names the outputs of path
# packages by their place in the workspace, so another tree with the same layout would
# overwrite this tree's build (and be taken for it). The trees built here share one target
# directory of their own; their sources are touched so none is taken for another.
build_tree() {
  local name=$1 src=$2
  log "compat: building the $name binaries (the first time builds the dependencies too)"
  find "$src" -type f -exec touch {} +
  (cd "$src" && CARGO_TARGET_DIR=$COMPAT/target nice -n 10 cargo build -q -p fleetgate-hub -p fleetgate-agent)
  mkdir -p "$COMPAT/$name"
  cp "$COMPAT/target/debug/fleetgate-hub" "$COMPAT/target/debug/fleetgate-agent" "$COMPAT/$name/"
}

if [ ! -x "$COMPAT/previous-$PREVIOUS/fleetgate-agent" ]; then
  src=$COMPAT/src-previous
  rm -rf "$src" && mkdir -p "$src"
  git -C "$ROOT" archive "$PREVIOUS" | tar -x -C "$src"
  build_tree "previous-$PREVIOUS" "$src"
fi
# The future agent is this tree's, so its cache key is what its build reads, edits included.
future_key=$( { git -C "$ROOT" ls-files -s shared daemon agent Cargo.lock
                git -C "$ROOT" diff HEAD -- shared daemon agent Cargo.lock; } \
              | git hash-object --stdin | cut -c1-12)
if [ ! -x "$COMPAT/future-$future_key/fleetgate-agent" ]; then
  src=$COMPAT/src-future
  rm -rf "$src" && mkdir -p "$src"
  git -C "$ROOT" ls-files -z | tar --null -T - -cf - | tar -x -C "$src"
  sed -i 's/^pub const VERSION: u8 = 1;/pub const VERSION: u8 = 2;/' "$src/shared/src/codec.rs"
  grep -q '^pub const VERSION: u8 = 2;' "$src/shared/src/codec.rs" \
    || { echo "FAIL: could not make the future wire version (shared/src/codec.rs changed?)" >&2; exit 1; }
  build_tree "future-$future_key" "$src"
fi
PREV=$COMPAT/previous-$PREVIOUS
FUTURE=$COMPAT/future-$future_key

WORK=$(mktemp -d /tmp/fleetgate-compat.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# start_hub BIN NAME: starts a hub on a free loopback port; sets HUB_URL and HUB_DIR.
start_hub() {
  HUB_DIR=$WORK/$2
  mkdir -p "$HUB_DIR"
  "$1" --listen 127.0.0.1:0 --data-dir "$HUB_DIR/data" >"$HUB_DIR/hub.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do [ -s "$HUB_DIR/data/listen.addr" ] && break; sleep 0.1; done
  [ -s "$HUB_DIR/data/listen.addr" ] || { cat "$HUB_DIR/hub.log" >&2; echo "hub $2 did not start" >&2; exit 1; }
  HUB_URL=http://$(cat "$HUB_DIR/data/listen.addr")
}

# start_agent BIN NODE: an agent pushing the host collector to HUB_URL every INTERVAL.
start_agent() {
  "$1" --hub "$HUB_URL" --node "$2" --collectors host --interval "$INTERVAL" \
    --state-dir "$WORK/$2-state" --enroll-token-file "$HUB_DIR/data/enroll.token" \
    >"$WORK/$2.log" 2>&1 &
  PIDS+=($!)
}

# metric_sum TEXT_FILE PATTERN: the sum of the values of lines matching PATTERN (grep -E).
metric_sum() { { grep -E "$2" "$1" || true; } | awk '{s += $NF} END {print s + 0}'; }

# wait_pushes NODE N: waits (at most 60 s) until NODE is up on the hub and the hub has
# accepted N pushes (one agent per hub, so they are NODE's); leaves the exposition in
# $WORK/metrics.txt.
wait_pushes() {
  local node=$1 want=$2
  for _ in $(seq 1 120); do
    curl -fsS "$HUB_URL/metrics" >"$WORK/metrics.txt" || true
    if grep -qE "^fleetgate_node_up\{.*node=\"$node\".*\} 1$" "$WORK/metrics.txt"; then
      local n
      n=$(metric_sum "$WORK/metrics.txt" '^fleetgate_hub_pushes_total\{result="ok"\}')
      [ "${n%.*}" -ge "$want" ] && return 0
    fi
    sleep 0.5
  done
  return 1
}

log "compat: previous agent → current hub"
start_hub "$CURRENT_HUB" current-hub
start_agent "$PREV/fleetgate-agent" prev-agent
if wait_pushes prev-agent 5; then
  failed=$(metric_sum "$WORK/metrics.txt" "^fleetgate_agent_push_failures_total\{.*node=\"prev-agent\"")
  [ "${failed%.*}" -eq 0 ] && pass "previous agent pushes to the current hub, no failure" \
    || fail "previous agent had $failed failed pushes: $(tail -5 "$WORK/prev-agent.log")"
else
  fail "previous agent never got 5 pushes into the current hub: $(tail -5 "$WORK/prev-agent.log")"
fi

log "compat: current agent → previous hub"
start_hub "$PREV/fleetgate-hub" prev-hub
start_agent "$CURRENT_AGENT" current-agent
if wait_pushes current-agent 8; then
  failed=$(metric_sum "$WORK/metrics.txt" "^fleetgate_agent_push_failures_total\{.*node=\"current-agent\"")
  values=$(metric_sum "$WORK/metrics.txt" "^fleetgate_agent_pushes_total\{.*kind=\"values\".*node=\"current-agent\"|^fleetgate_agent_pushes_total\{.*node=\"current-agent\".*kind=\"values\"")
  if [ "${failed%.*}" -eq 0 ] && [ "${values%.*}" -eq 0 ] && grep -q "does not read values pushes" "$WORK/current-agent.log"; then
    pass "current agent falls back to full snapshots on the previous hub, no failed push"
  else
    fail "current agent on the previous hub: $failed failed, $values values pushes accepted: $(tail -5 "$WORK/current-agent.log")"
  fi
else
  fail "current agent never got 8 pushes into the previous hub: $(tail -5 "$WORK/current-agent.log")"
fi

log "compat: future agent (snapshot version 2) → current hub"
start_hub "$CURRENT_HUB" current-hub-2
# A push needs a node's token: enroll one to ask with.
token=$(curl -fsS -X POST -H "Authorization: Bearer $(cat "$HUB_DIR/data/enroll.token")" \
  -H 'Content-Type: application/json' -d '{"node":"probe"}' "$HUB_URL/add_node" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
code=$(printf 'FGSN\002junk' | curl -s -o "$WORK/future-answer.txt" -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/vnd.fleetgate.snapshot' \
  --data-binary @- "$HUB_URL/push")
if [ "$code" = 415 ] && grep -q "unsupported snapshot version 2" "$WORK/future-answer.txt"; then
  pass "a version-2 snapshot is answered 415: $(cat "$WORK/future-answer.txt")"
else
  fail "a version-2 snapshot got $code: $(cat "$WORK/future-answer.txt")"
fi
start_agent "$FUTURE/fleetgate-agent" future-agent
if wait_pushes future-agent 5; then
  text=$(metric_sum "$WORK/metrics.txt" "^fleetgate_agent_pushes_total\{.*kind=\"text\".*node=\"future-agent\"|^fleetgate_agent_pushes_total\{.*node=\"future-agent\".*kind=\"text\"")
  series=$(grep -cE "^node_load1\{.*node=\"future-agent\"" "$WORK/metrics.txt" || true)
  # Each snapshot counts the pushes accepted before it was sent: the fifth says four.
  if [ "${text%.*}" -ge 4 ] && [ "$series" -ge 1 ] && grep -q "pushing the text format instead" "$WORK/future-agent.log"; then
    pass "the future agent falls back to the text format: $text text pushes, node_load1 served"
  else
    fail "future agent: $text text pushes, $series node_load1 lines: $(tail -5 "$WORK/future-agent.log")"
  fi
else
  fail "future agent never got 5 pushes in: $(tail -5 "$WORK/future-agent.log")"
fi

[ "$failures" -eq 0 ] || { echo "compat: $failures check(s) failed" >&2; exit 1; }
echo "compat: every check passed"
