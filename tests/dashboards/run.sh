#!/usr/bin/env bash
# Proof that every Grafana dashboard panel returns data: real hub + agent (host, Docker, Triton on
# CPU) + recorded GPU series pushed through /push, scraped by a real Prometheus (see prove.py).
# Needs: built debug binaries (cargo build -p fleetgate-hub -p fleetgate-agent), /usr/bin/prometheus,
# a running dockerd, /bin/busybox (static), and .venv with nvidia-pytriton, requests and PyYAML.
# FLEETGATE_BIN_DIR overrides where the binaries are (default: $CARGO_TARGET_DIR/debug or
# target/debug). With CI=true a missing component fails; otherwise the suite skips loudly.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${FLEETGATE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
venv=${FLEETGATE_VENV:-$root/.venv}
python=$venv/bin/python

missing=()
for f in "$bin_dir/fleetgate-hub" "$bin_dir/fleetgate-agent" /usr/bin/prometheus /bin/busybox "$python"; do
  [ -x "$f" ] || missing+=("$f")
done
docker info >/dev/null 2>&1 || missing+=("a running Docker engine")
# --store victoria-metrics: the HA layout's store behind two Prometheus replicas.
case " $* " in *" victoria-metrics "*) [ -x /usr/bin/victoria-metrics ] || missing+=(/usr/bin/victoria-metrics) ;; esac
if [ -x "$python" ] && ! "$python" -c 'import pytriton, requests, yaml' 2>/dev/null; then
  missing+=("pytriton/requests/PyYAML in $venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "tests/dashboards: FAIL, missing: ${missing[*]}" >&2
    exit 1
  fi
  echo "tests/dashboards: SKIPPED, missing: ${missing[*]}" >&2
  exit 0
fi

# PyTriton's tritonserver links against the interpreter's libpython; a pyenv interpreter keeps it
# outside the default library path.
libdir=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
export LD_LIBRARY_PATH="${libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$root/tests/dashboards"
exec "$python" prove.py --bin-dir "$bin_dir" --python "$python" "$@"
