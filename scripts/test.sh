#!/usr/bin/env bash
# Fleetgate's one test command: installs what the tests need on a fresh Debian machine (as root),
# starts the Docker engine, then runs every suite. With CI=true a missing real component fails
# the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CI="${CI:-false}"
log() { printf '\n==> %s\n' "$*"; }

# --- Debian packages -----------------------------------------------------------------------
PACKAGES=(prometheus prometheus-alertmanager prometheus-pushgateway prometheus-node-exporter
          docker.io docker-compose zstd busybox-static curl iproute2 fonts-dejavu-core procps
          systemd file openssl libc6-dev chromium chromium-driver tinyproxy victoria-metrics
          debootstrap dpkg-dev binutils help2man lintian)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Python venv (Triton on CPU, Ansible tooling) -------------------------------------------
if ! .venv/bin/python -c 'import pytriton, ansible, ansible_collections.community.docker, requests, selenium' >/dev/null 2>&1 \
   || ! [ -x .venv/bin/ansible-lint ] || ! [ -x .venv/bin/yamllint ]; then
  log "creating .venv with scripts/requirements-test.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
export FLEETGATE_VENV="$ROOT/.venv"

# --- Docker engine ---------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >/tmp/fleetgate-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/fleetgate-dockerd.log" >&2; tail -20 /tmp/fleetgate-dockerd.log >&2; exit 1; }
fi

# --- Rust: format, lints, build --------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo build (debug, all targets) and release binaries"
cargo build --workspace --all-targets
cargo build --release -p fleetgate-hub -p fleetgate-agent -p fleetgate-loadtest

suites_passed=0
suites_failed=0
failed_names=()
suite() {
  local name=$1; shift
  log "suite: $name"
  if "$@"; then
    suites_passed=$((suites_passed + 1))
  else
    suites_failed=$((suites_failed + 1))
    failed_names+=("$name")
  fi
}

suite "cargo test" cargo test --workspace --no-fail-fast
[ -f compose/tests/run.sh ] && suite "compose" bash compose/tests/run.sh
[ -f tests/dashboards/run.sh ] && suite "dashboards" bash tests/dashboards/run.sh
suite "alerts" bash tests/alerts/run.sh
[ -f ansible/tests/run.sh ] && suite "ansible" bash ansible/tests/run.sh
suite "fleet page" bash tests/browser/run.sh
suite "ha" bash tests/ha/run.sh
suite "dashboards on VictoriaMetrics" bash tests/dashboards/run.sh --store victoria-metrics
suite "packages" bash tests/packages/run.sh
suite "loadtest --quick" target/release/fleetgate-loadtest --quick \
  --hub-bin target/release/fleetgate-hub --json target/loadtest-quick.json

echo
if [ ${#failed_names[@]} -gt 0 ]; then echo "failed suites: ${failed_names[*]}"; fi
echo "suites: ${suites_passed} passed, ${suites_failed} failed"
[ "$suites_failed" -eq 0 ]
