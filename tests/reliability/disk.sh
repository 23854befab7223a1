#!/usr/bin/env bash
# Disk trouble: the hub's data directory on a 4 MiB tmpfs this script mounts, first filled up,
# then made read-only. Meanwhile /add_node and /remove_node must answer 503 naming the
# cause, nodes.json must stay whole and unchanged, an enrolled node must keep pushing and being
# served on /metrics; once space (or write access) is back, enrolling and removing work again.
# Needs root (mount); FLEETGATE_CAMPAIGN_HUB_BIN is the hub binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

HUB=${FLEETGATE_CAMPAIGN_HUB_BIN:-target/release/fleetgate-hub}
[ -x "$HUB" ] || { echo "FAIL: $HUB not built" >&2; exit 1; }
require "root (to mount a small tmpfs)" test "$(id -u)" = 0 || exit 0
require_cmd curl

WORK=$(mktemp -d /tmp/fleetgate-disk.XXXXXX)
DATA=$WORK/data
HUB_PID=
cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  while mountpoint -q "$DATA"; do umount "$DATA" || break; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$DATA"
mount -t tmpfs -o size=4m tmpfs "$DATA"

"$HUB" --listen 127.0.0.1:0 --data-dir "$DATA" 2>"$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 1 100); do [ -s "$DATA/listen.addr" ] && break; sleep 0.1; done
[ -s "$DATA/listen.addr" ] || { cat "$WORK/hub.log" >&2; echo "FAIL: the hub did not start" >&2; exit 1; }
URL=http://$(cat "$DATA/listen.addr")
ADMIN=$(cat "$DATA/admin.token")
ENROLL=$(cat "$DATA/enroll.token")

fails=0
check() { # WHAT COMMAND...: runs COMMAND, counts a failure naming WHAT
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; fails=$((fails + 1)); fi
}
# call METHOD PATH TOKEN [JSON]: the status on the first line of $WORK/answer, the body after.
call() {
  curl -s -o "$WORK/body" -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $3" \
    ${4:+-H 'Content-Type: application/json' --data "$4"} >"$WORK/status" || echo 000 >"$WORK/status"
}
status_is() { [ "$(cat "$WORK/status")" = "$1" ] || { echo "  got $(cat "$WORK/status"): $(cat "$WORK/body")" >&2; return 1; }; }
body_has() { grep -q -- "$1" "$WORK/body" || { echo "  body: $(cat "$WORK/body")" >&2; return 1; }; }
nodes_json_is() { cmp -s "$DATA/nodes.json" "$1" || { echo "  nodes.json changed" >&2; return 1; }; }
nodes_json_whole() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$DATA/nodes.json"; }
# push_served N: node "steady" pushes value N and /metrics shows it.
push_served() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/push" -H "Authorization: Bearer $STEADY" \
         -H 'Content-Type: text/plain' --data-binary "disk_check_value $1"$'\n')
  [ "$code" = 200 ] || [ "$code" = 204 ] || { echo "  push answered $code" >&2; return 1; }
  curl -sf "$URL/metrics" | grep -Eq "^disk_check_value\{[^}]*node=\"steady\"[^}]*\} $1\$" \
    || { echo "  value $1 of node steady not on /metrics" >&2; return 1; }
}

call POST /add_node "$ENROLL" '{"node":"steady"}'
status_is 200 || { echo "FAIL: cannot enroll on an empty tmpfs" >&2; exit 1; }
STEADY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/body")
check "an enrolled node pushes" push_served 1
cp "$DATA/nodes.json" "$WORK/nodes.before"

# --- full -----------------------------------------------------------------------------------
dd if=/dev/zero of="$DATA/filler" bs=64k 2>/dev/null || true
call POST /add_node "$ENROLL" '{"node":"late"}'
check "full: /add_node answers 503" status_is 503
check "full: the answer names the cause" body_has "data directory is full"
call POST /remove_node "$ADMIN" '{"node":"steady"}'
check "full: /remove_node answers 503" status_is 503
check "full: nodes.json unchanged" nodes_json_is "$WORK/nodes.before"
check "full: nodes.json whole" nodes_json_whole
check "full: the enrolled node keeps pushing and being served" push_served 2
rm -f "$DATA/filler"
call POST /add_node "$ENROLL" '{"node":"late"}'
check "space back: /add_node works" status_is 200
call POST /remove_node "$ADMIN" '{"node":"late"}'
check "space back: /remove_node works" status_is 200
cp "$DATA/nodes.json" "$WORK/nodes.before"

# --- read-only ------------------------------------------------------------------------------
# The hub keeps files open for writing there, so the tmpfs itself cannot be remounted read-only:
# a read-only bind mount over it makes every new write fail the same way (EROFS).
mount --bind "$DATA" "$DATA"
mount -o remount,bind,ro "$DATA"
call POST /add_node "$ENROLL" '{"node":"late2"}'
check "read-only: /add_node answers 503" status_is 503
check "read-only: the answer names the cause" body_has "read-only"
call POST /remove_node "$ADMIN" '{"node":"steady"}'
check "read-only: /remove_node answers 503" status_is 503
check "read-only: nodes.json unchanged" nodes_json_is "$WORK/nodes.before"
check "read-only: the enrolled node keeps pushing and being served" push_served 3
umount "$DATA"
call POST /add_node "$ENROLL" '{"node":"late2"}'
check "writable again: /add_node works" status_is 200
check "writable again: the node pushes" push_served 4
check "no token in the hub's log" bash -c '! grep -qF -e "$1" -e "$2" -e "$3" "$4"' _ "$ADMIN" "$ENROLL" "$STEADY" "$WORK/hub.log"

if [ "$fails" -gt 0 ]; then
  echo "disk: $fails check(s) failed; hub log:" >&2
  tail -n 30 "$WORK/hub.log" >&2
  exit 1
fi
echo "disk: every check passed"
