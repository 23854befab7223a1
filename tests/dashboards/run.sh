#!/usr/bin/env bash
# Proof that every Grafana dashboard panel returns data: real hub + agent (host, Docker, Triton on
# CPU) + modelled GPU series pushed through /push, scraped by a real Prometheus (see prove.py).
# Needs: built debug binaries (cargo build -p fleetgate-hub -p fleetgate-agent), prometheus,
# a running dockerd, /bin/busybox (static), and a venv with nvidia-pytriton, requests and PyYAML.
# FLEETGATE_BIN_DIR overrides where the binaries are (default: $CARGO_TARGET_DIR/debug or
# target/debug). A missing component fails the suite; with FLEETGATE_ALLOW_SKIP=1 it is skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
bin_dir=${FLEETGATE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python

require "$bin_dir/fleetgate-hub (cargo build -p fleetgate-hub)" test -x "$bin_dir/fleetgate-hub" || exit 0
require "$bin_dir/fleetgate-agent (cargo build -p fleetgate-agent)" test -x "$bin_dir/fleetgate-agent" || exit 0
require_cmd prometheus || exit 0
require "/bin/busybox (static, Debian busybox-static)" test -x /bin/busybox || exit 0
require "a running Docker engine" docker info || exit 0
# --store victoria-metrics: the HA layout's store behind two Prometheus replicas.
case " $* " in *" victoria-metrics "*) require_cmd victoria-metrics || exit 0 ;; esac
require "$python with pytriton, requests and PyYAML (scripts/requirements-test.txt)" \
  "$python" -c 'import pytriton, requests, yaml' || exit 0

cd "$root/tests/dashboards"
exec "$python" prove.py --bin-dir "$bin_dir" --python "$python" "$@"
