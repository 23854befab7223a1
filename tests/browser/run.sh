#!/usr/bin/env bash
# The fleet page in a real browser (see fleet_page.py): a real hub, a real agent and simulated
# nodes on loopback, Debian's chromium driven through chromium-driver by selenium.
# Needs: built debug binaries (cargo build -p fleetgate-hub -p fleetgate-agent), /usr/bin/chromium,
# /usr/bin/chromedriver, and .venv with selenium and requests (scripts/requirements-test.txt).
# FLEETGATE_BIN_DIR overrides where the binaries are (default: $CARGO_TARGET_DIR/debug or
# target/debug). A missing component fails the suite unless FLEETGATE_ALLOW_SKIP=1.
# Arguments go to fleet_page.py (e.g. --screenshots docs to refresh the README's pictures).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
bin_dir=${FLEETGATE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python

missing=()
for f in "$bin_dir/fleetgate-hub" "$bin_dir/fleetgate-agent" /usr/bin/chromium /usr/bin/chromedriver "$python"; do
  [ -x "$f" ] || missing+=("$f")
done
if [ -x "$python" ] && ! "$python" -c 'import selenium, requests' 2>/dev/null; then
  missing+=("selenium/requests in $venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  if skipping_allowed; then
    echo "tests/browser: SKIPPED, missing: ${missing[*]}" >&2
    exit 0
  fi
  echo "tests/browser: FAIL, missing: ${missing[*]} (FLEETGATE_ALLOW_SKIP=1 skips)" >&2
  exit 1
fi
# Selenium must not look for drivers on the internet: the driver is given.
export SE_OFFLINE=true
exec timeout 600 "$python" "$root/tests/browser/fleet_page.py" --bin-dir "$bin_dir" "$@"
