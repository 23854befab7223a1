# Shell functions shared by scripts/test.sh and the suite scripts it runs. Source it:
#   . "$(dirname "$0")/../scripts/lib.sh"      (adjust the path to the script's place)
#
# Missing real components fail by default. FLEETGATE_ALLOW_SKIP=1 (scripts/test.sh --allow-skip)
# lets a machine without them skip what needs them, saying so; CI=true keeps it strict.

# log MESSAGE: a heading line on stdout.
log() { printf '\n==> %s\n' "$*"; }

# skipping_allowed: whether a missing component may be skipped instead of failing.
skipping_allowed() {
  [ "${FLEETGATE_ALLOW_SKIP:-0}" = 1 ] && [ "${CI:-}" != true ]
}

# require WHAT COMMAND...: runs COMMAND quietly; returns 0 when it succeeds. Otherwise WHAT is
# missing: exits the calling script with status 1, or, when skipping is allowed, prints
# "SKIPPED: WHAT" on stderr and returns 1 so the caller can leave that part out:
#   require "a running Docker engine" docker info || exit 0       # the whole suite needs it
#   if require "systemd-analyze" command -v systemd-analyze; then ...; fi   # one part needs it
require() {
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then
    return 0
  fi
  if skipping_allowed; then
    echo "SKIPPED: $what is not available (FLEETGATE_ALLOW_SKIP=1)" >&2
    return 1
  fi
  echo "FAIL: $what is required but not available; scripts/test.sh installs it (or set FLEETGATE_ALLOW_SKIP=1 to skip what needs it)" >&2
  exit 1
}

# require_cmd NAME [WHY]: require an executable in PATH (or an absolute path).
require_cmd() {
  require "$1${2:+ ($2)}" command -v "$1"
}

# free_port: prints a TCP port free on 127.0.0.1 right now (the kernel's choice). Another
# process may take it before the caller binds it; prefer letting the program bind port 0.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# suite NAME COMMAND...: runs one suite of scripts/test.sh and records whether it passed and how
# long it took. A suite whose program or script does not exist fails.
_suite_results=()
_suites_failed=0
suite() {
  local name=$1; shift
  log "suite: $name"
  local start=$SECONDS rc=0 target=$1
  case $1 in bash | sh | python3) target=${2:-} ;; esac
  if [ -z "$target" ] || { [ ! -e "$target" ] && ! command -v "$target" >/dev/null 2>&1; }; then
    echo "FAIL: suite $name: $target does not exist" >&2
    rc=127
  else
    "$@" || rc=$?
  fi
  local took=$((SECONDS - start)) verdict=passed
  if [ "$rc" -ne 0 ]; then
    verdict="FAILED (exit $rc)"
    _suites_failed=$((_suites_failed + 1))
  fi
  _suite_results+=("$(printf '%-22s %-16s %4d s' "$name" "$verdict" "$took")")
  echo "suite $name: $verdict in ${took} s"
}

# suite_summary: prints every suite's result and duration; returns 1 when any failed.
suite_summary() {
  log "summary"
  printf '%s\n' "${_suite_results[@]}"
  echo "suites: $((${#_suite_results[@]} - _suites_failed)) passed, ${_suites_failed} failed"
  [ "$_suites_failed" -eq 0 ]
}
